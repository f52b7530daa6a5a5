"""Sources: formats, compression, nulls, exact row counts, clear errors (S3 through moto, HTTP on loopback)."""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from busline_core.errors import SourceUnreadable
from busline_core.readers import iter_chunks, iter_records, open_source
from moto import mock_aws

BUCKET = "data"
CSV = b"id,name,score\n1,ann,NA\n2,,7.5\n3,cy,8\n"
EXPECTED = [
    {"id": "1", "name": "ann", "score": None},
    {"id": "2", "name": None, "score": "7.5"},
    {"id": "3", "name": "cy", "score": "8"},
]


def _records(data: bytes, fmt: str, **options: Any) -> list[dict[str, str | None]]:
    return list(iter_records(io.BytesIO(data), fmt, name_hint="test", **options))


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def _read_s3(s3: Any, key: str, body: bytes, fmt: str = "csv") -> list[dict[str, str | None]]:
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    uri = f"s3://{BUCKET}/{key}"
    with open_source(uri, s3) as stream:
        return list(iter_records(stream, fmt, name_hint=uri))


# --- csv ------------------------------------------------------------------------------------------


def test_csv_na_and_empty_become_none() -> None:
    assert _records(CSV, "csv") == EXPECTED


def test_csv_with_bom_delimiter_quotes_and_custom_nulls() -> None:
    # Given a semicolon CSV from a spreadsheet: BOM, a quoted field with a newline, "-" meaning null
    data = '\ufeffid;note\n1;"two\nlines"\n2;-\n3;NA\n'.encode()
    # When read with matching options
    records = _records(data, "csv", delimiter=";", null_values=["-"])
    # Then the BOM is gone from the first column name and only "-" is null
    assert records == [
        {"id": "1", "note": "two\nlines"},
        {"id": "2", "note": None},
        {"id": "3", "note": "NA"},
    ]


def test_csv_header_only_and_empty_file_give_no_rows() -> None:
    assert _records(b"id,name\n", "csv") == []
    assert _records(b"", "csv") == []


def test_csv_skips_blank_lines() -> None:
    assert len(_records(b"id\n1\n\n2\n", "csv")) == 2


def test_csv_wrong_field_count_names_the_line() -> None:
    with pytest.raises(SourceUnreadable) as caught:
        _records(b"id,name\n1,a\n2,b,extra\n", "csv")
    assert caught.value.uri == "test"
    assert "line 3: 3 fields where the header has 2" in caught.value.reason


def test_csv_repeated_header_is_unreadable() -> None:
    with pytest.raises(SourceUnreadable, match="repeated column name id"):
        _records(b"id,id\n1,2\n", "csv")


def test_csv_that_is_not_utf8_is_unreadable() -> None:
    with pytest.raises(SourceUnreadable, match="not UTF-8"):
        _records(b"id,name\n1,\xff\xfe\n", "csv")


# --- ndjson / json --------------------------------------------------------------------------------


def test_ndjson_values_become_text() -> None:
    data = b'{"id": 1, "ok": true, "x": 1.5, "tags": ["a"], "n": null, "s": "NA"}\n\n{"id": 2}\n'
    assert _records(data, "ndjson") == [
        {"id": "1", "ok": "true", "x": "1.5", "tags": '["a"]', "n": None, "s": None},
        {"id": "2"},
    ]


def test_ndjson_malformed_line_is_named() -> None:
    with pytest.raises(SourceUnreadable, match="line 2: invalid JSON"):
        _records(b'{"id": 1}\n{"id": \n{"id": 3}\n', "ndjson")


def test_ndjson_non_object_line_is_named() -> None:
    with pytest.raises(SourceUnreadable, match="line 1: expected a JSON object, got list"):
        _records(b"[1, 2]\n", "ndjson")


def test_json_array_streams_across_read_boundaries() -> None:
    # Given a JSON array much larger than one 64 KiB read, with items split across reads
    items = [{"id": i, "text": "x" * (i % 50 + 1), "none": None} for i in range(5000)]
    data = json.dumps(items, indent=1).encode()
    assert len(data) > 4 * 65536
    # When streamed
    records = _records(data, "json")
    # Then every item arrives, in order, as text
    assert len(records) == 5000
    assert records[0] == {"id": "0", "text": "x", "none": None}
    assert records[4999] == {"id": "4999", "text": "x" * 50, "none": None}


def test_json_empty_array() -> None:
    assert _records(b" [ ] ", "json") == []


def test_json_malformed_item_names_the_line() -> None:
    data = b'[\n{"id": 1},\n{"id": 2,,}\n]'
    with pytest.raises(SourceUnreadable, match="line 3: invalid JSON"):
        _records(data, "json")


def test_json_must_be_an_array() -> None:
    with pytest.raises(SourceUnreadable, match="line 1: expected a JSON array"):
        _records(b'{"id": 1}', "json")


def test_json_truncated_document_is_unreadable() -> None:
    with pytest.raises(SourceUnreadable, match="invalid JSON|unexpected end"):
        _records(b'[{"id": 1}, {"id": 2', "json")


def test_abandoning_records_after_the_stream_closed_is_quiet() -> None:
    # Given a reader stopped half way, whose stream the caller then closed
    stream = io.BytesIO(CSV)
    records = iter_records(stream, "csv")
    assert isinstance(records, Generator)
    assert next(records) == EXPECTED[0]
    stream.close()
    # When the generator is closed / Then nothing is raised
    records.close()


def test_unknown_format_is_unreadable() -> None:
    with pytest.raises(SourceUnreadable, match="unknown format 'xml'"):
        _records(b"<a/>", "xml")


# --- S3, compression, HTTP -------------------------------------------------------------------------


def test_csv_from_s3(s3: Any) -> None:
    assert _read_s3(s3, "plain/data.csv", CSV) == EXPECTED


def test_gzip_from_s3(s3: Any) -> None:
    assert _read_s3(s3, "gz/data.csv.gz", gzip.compress(CSV)) == EXPECTED


def test_ndjson_gzip_from_s3(s3: Any) -> None:
    body = gzip.compress(b"".join(json.dumps({"id": i}).encode() + b"\n" for i in range(250)))
    records = _read_s3(s3, "gz/data.ndjson.gz", body, "ndjson")
    assert len(records) == 250
    assert records[-1] == {"id": "249"}


def _zip(path: Path, members: dict[str, bytes]) -> bytes:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path.read_bytes()


def test_zip_with_one_member_from_s3(s3: Any, tmp_path: Path) -> None:
    body = _zip(tmp_path / "a.zip", {"whatever.csv": CSV})
    assert _read_s3(s3, "zip/flights.csv.zip", body) == EXPECTED


def test_zip_picks_the_member_named_like_the_archive(s3: Any, tmp_path: Path) -> None:
    body = _zip(tmp_path / "b.zip", {"README.txt": b"hello", "data/flights.csv": CSV})
    assert _read_s3(s3, "zip/flights.csv.zip", body) == EXPECTED


def test_zip_with_ambiguous_members_is_unreadable(s3: Any, tmp_path: Path) -> None:
    body = _zip(tmp_path / "c.zip", {"one.csv": CSV, "two.csv": CSV})
    with pytest.raises(SourceUnreadable, match=r"one named 'flights.csv' \(it holds: one.csv, two.csv\)"):
        _read_s3(s3, "zip/flights.csv.zip", body)


def test_corrupt_gzip_and_zip_are_unreadable(s3: Any) -> None:
    with pytest.raises(SourceUnreadable, match="cannot read the stream"):
        _read_s3(s3, "bad/data.csv.gz", b"not gzip at all")
    with pytest.raises(SourceUnreadable, match="not a readable zip archive"):
        _read_s3(s3, "bad/data.csv.zip", b"not zip at all")


def test_missing_s3_object_is_unreadable(s3: Any) -> None:
    with pytest.raises(SourceUnreadable) as caught, open_source(f"s3://{BUCKET}/nope.csv", s3):
        pass
    assert caught.value.uri == f"s3://{BUCKET}/nope.csv"
    assert caught.value.reason == "no such key"


def test_gzip_over_http_and_404(loopback_files: tuple[str, Path]) -> None:
    # Given a gzip CSV served on loopback, read as on the local cloud (AllowLoopbackHttpSources true)
    base, root = loopback_files
    (root / "data.csv.gz").write_bytes(gzip.compress(CSV))
    with open_source(f"{base}/data.csv.gz", None, allow_loopback_http=True) as stream:
        assert list(iter_records(stream, "csv")) == EXPECTED
    with pytest.raises(SourceUnreadable) as caught, open_source(f"{base}/missing.csv", None, allow_loopback_http=True):
        pass
    assert caught.value.reason == "HTTP 404 Not Found"


def test_plain_http_is_refused_where_the_stack_does_not_enable_it(loopback_files: tuple[str, Path]) -> None:
    # Given the same server, read as on a deployed stack (the default)
    base, root = loopback_files
    (root / "data.csv").write_bytes(CSV)
    # When it is opened / Then it is refused before any connection, saying why
    with pytest.raises(SourceUnreadable) as caught, open_source(f"{base}/data.csv", None):
        pass
    assert caught.value.reason == "plain http:// is not allowed on this stack; use https://"


# --- chunks ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "size", "expected"),
    [(0, 100, []), (99, 100, [99]), (100, 100, [100]), (250, 100, [100, 100, 50]), (5, 1, [1] * 5)],
)
def test_chunks_have_exact_sizes(count: int, size: int, expected: list[int]) -> None:
    records = ({"id": str(i)} for i in range(count))
    chunks = list(iter_chunks(records, size))
    assert [len(chunk) for chunk in chunks] == expected
    assert [record["id"] for chunk in chunks for record in chunk] == [str(i) for i in range(count)]


def test_chunk_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="chunk_rows must be at least 1"):
        list(iter_chunks([], 0))
