"""Source limits (limits.py, "a source"): a hostile source fails its task for good, naming the limit,
before it exhausts memory, /tmp or time; a failing connection is left for SQS to retry.

The bombs are built here, in memory. Where the real limits would need gigabytes, the tests lower the
limit readers.py reads (its module-level names) instead.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import struct
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError, ResponseStreamingError
from busline_core import readers
from busline_core.errors import SourceOverLimit, SourceUnreadable
from busline_core.limits import (
    DECOMPRESSION_RATIO_GRACE_BYTES,
    MAX_RECORD_LENGTH,
    MAX_SOURCE_FIELDS,
    MAX_SOURCE_JSON_DEPTH,
)
from busline_core.readers import iter_records, open_source
from urllib3.exceptions import ProtocolError

MiB = 1024**2
# What a bomb may produce before it is stopped: the grace, plus one read past it.
AT_MOST_DECOMPRESSED = 17 * MiB

SetLimit = Callable[[str, int], None]


@pytest.fixture
def set_limit(monkeypatch: pytest.MonkeyPatch) -> SetLimit:
    """Lower one of the limits readers.py enforces, for this test only."""

    def set_(name: str, value: int) -> None:
        assert hasattr(readers, name), name
        monkeypatch.setattr(readers, name, value)

    return set_


class FakeS3:
    """get_object answering with `body` (and a ContentLength, true or not), or raising `error`."""

    def __init__(self, body: Any = b"", *, content_length: int | None = None, error: Exception | None = None):
        self.body = io.BytesIO(body) if isinstance(body, bytes) else body
        self.content_length = content_length
        self.error = error

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        if self.error is not None:
            raise self.error
        response: dict[str, Any] = {"Body": self.body}
        if self.content_length is not None:
            response["ContentLength"] = self.content_length
        return response


class CountingBody(io.BytesIO):
    """A body that remembers how many bytes were taken from it."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.taken = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.taken += len(data)
        return data

    def read1(self, size: int = -1) -> bytes:
        data = super().read1(size)
        self.taken += len(data)
        return data


class BrokenBody(io.BufferedIOBase):
    """Yields `data`, then fails the way a dropped connection does."""

    def __init__(self, data: bytes, error: BaseException) -> None:
        super().__init__()
        self._data = io.BytesIO(data)
        self._error = error

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        chunk = self._data.read(size if size is not None and size > 0 else 8192)
        if not chunk:
            raise self._error
        return chunk

    def read1(self, size: int = -1) -> bytes:
        return self.read(size)


def _records(data: bytes, fmt: str, **options: Any) -> list[dict[str, str | None]]:
    return list(iter_records(io.BytesIO(data), fmt, name_hint="test", **options))


def _read_s3(key: str, body: Any, fmt: str = "csv", **client: Any) -> list[dict[str, str | None]]:
    uri = f"s3://data/{key}"
    with open_source(uri, FakeS3(body, **client)) as stream:
        return list(iter_records(stream, fmt, name_hint=uri))


def _gzip(parts: Iterator[bytes]) -> bytes:
    """One gzip member of `parts`, compressed as they come (the whole is never held)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: the gzip container
    return b"".join([*(packer.compress(part) for part in parts), packer.flush()])


def _zeros_gzip(size: int, *, members: int = 1) -> bytes:
    """`members` gzip members of `size` zero bytes each."""
    return b"".join(
        _gzip(bytes(min(MiB, size - done)) for done in range(0, size, MiB)) for _ in range(members)
    )


def _deflated(parts: Iterator[bytes]) -> tuple[bytes, int, int]:
    """Raw deflate of `parts` (as a zip holds it): (compressed, crc32, size)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    out, crc, size = [], 0, 0
    for part in parts:
        out.append(packer.compress(part))
        crc, size = zlib.crc32(part, crc), size + len(part)
    out.append(packer.flush())
    return b"".join(out), crc, size


def _zip_with(name: str, data: bytes, *, crc: int, file_size: int, compress_size: int | None = None) -> bytes:
    """A one-member deflate zip whose headers say what they are told (zipfile would write the truth).
    `data` is stored as the member's compressed bytes, padding included."""
    encoded = name.encode()
    declared = len(data) if compress_size is None else compress_size
    local = struct.pack(
        "<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 33, crc, declared, file_size, len(encoded), 0
    )
    central = struct.pack(
        "<4s6H3L5H2L",
        b"PK\x01\x02",
        20,
        20,
        0,
        8,
        0,
        33,
        crc,
        declared,
        file_size,
        len(encoded),
        0,
        0,
        0,
        0,
        0,
        0,
    )
    directory = central + encoded
    offset = len(local) + len(encoded) + len(data)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(directory), offset, 0)
    return local + encoded + data + directory + end


def _zero_lines(size: int) -> Iterator[bytes]:
    """A CSV of one column, `size` bytes, of 1,000-character lines of zeros (a bomb that parses)."""
    yield b"id\n"
    line = b"0" * 999 + b"\n"
    for _ in range((size - 3) // len(line)):
        yield line


def _decompressed_in(error: SourceOverLimit) -> int:
    match = re.search(r"([\d,]+) bytes decompressed from ([\d,]+)", error.reason)
    assert match, error.reason
    return int(match.group(1).replace(",", ""))


# --- bytes as stored: MAX_SOURCE_BYTES ------------------------------------------------------------


def test_an_object_declared_over_the_limit_is_refused_before_a_byte_is_read() -> None:
    # Given an S3 object of 9 GiB by its ContentLength (the limit is 8 GiB)
    body = CountingBody(b"id\n1\n")
    # When it is opened
    with (
        pytest.raises(SourceOverLimit) as caught,
        open_source("s3://data/huge.csv", FakeS3(body, content_length=9 * 1024**3)),
    ):
        pass
    # Then it is refused, naming the size and the limit, and not one byte was read
    assert caught.value.limit == "MAX_SOURCE_BYTES"
    assert (
        caught.value.reason
        == "the object is 9,663,676,416 bytes, more than 8,589,934,592 (limit MAX_SOURCE_BYTES)"
    )
    assert caught.value.retryable is False
    assert body.taken == 0


def test_a_source_longer_than_it_declared_stops_at_the_limit(set_limit: SetLimit) -> None:
    # Given a 100 KiB limit, and a 1,000,018-byte CSV whose ContentLength says 100
    set_limit("MAX_SOURCE_BYTES", 100 * 1024)
    body = CountingBody(b"id,name\n" + b"".join(b"%05d,abcd\n" % i for i in range(90_910)))
    # When it is read
    with pytest.raises(SourceOverLimit) as caught:
        _read_s3("lying.csv", body, content_length=100)
    # Then it fails on the bytes actually read, saying how far the records had got
    assert caught.value.limit == "MAX_SOURCE_BYTES"
    assert re.fullmatch(
        r"after line \d+: more than 102,400 bytes read from the source \(limit MAX_SOURCE_BYTES\)",
        caught.value.reason,
    ), caught.value.reason
    assert body.taken <= 100 * 1024 + 65536  # one read past the limit, never the rest


def test_a_zip_is_spooled_to_tmp_only_up_to_the_limit(
    set_limit: SetLimit, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a 2.5 MiB limit and a 5 MiB .zip (a zip's directory is at its end, so it is spooled first)
    set_limit("MAX_SOURCE_BYTES", 5 * MiB // 2)
    spools: list[SpySpool] = []
    real_temporary_file = tempfile.TemporaryFile

    def spy(*args: Any, **kwargs: Any) -> SpySpool:
        spools.append(SpySpool(real_temporary_file(*args, **kwargs)))
        return spools[-1]

    monkeypatch.setattr(readers.tempfile, "TemporaryFile", spy)
    data = bytes(range(256)) * (5 * MiB // 256)
    body = _zip_with("data.csv", data, crc=zlib.crc32(data), file_size=len(data))
    # When it is opened
    with pytest.raises(SourceOverLimit) as caught, open_source("s3://data/big.csv.zip", FakeS3(body)):
        pass
    # Then it fails at the limit, and /tmp never held more than the limit (whole 1 MiB copies: 2 MiB)
    assert caught.value.reason == "more than 2,621,440 bytes read from the source (limit MAX_SOURCE_BYTES)"
    assert len(spools) == 1
    assert spools[0].written == 2 * MiB


class SpySpool:
    """A temporary file that counts what is written to it."""

    def __init__(self, file: Any) -> None:
        self.file = file
        self.written = 0

    def write(self, data: bytes) -> int:
        self.written += len(data)
        return int(self.file.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.file, name)

    def __enter__(self) -> SpySpool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()


def test_an_http_response_declared_over_the_limit_is_refused(
    loopback_files: tuple[str, Path], set_limit: SetLimit
) -> None:
    # Given a 100-byte limit and a 1,000-byte file served with its Content-Length
    set_limit("MAX_SOURCE_BYTES", 100)
    base, root = loopback_files
    (root / "data.csv").write_bytes(b"id\n" + b"1\n" * 498 + b"x")
    # When it is opened / Then it is refused before its body is read
    with (
        pytest.raises(SourceOverLimit) as caught,
        open_source(f"{base}/data.csv", None, allow_loopback_http=True),
    ):
        pass
    assert caught.value.uri == f"{base}/data.csv"
    assert caught.value.reason == "the response is 1,000 bytes, more than 100 (limit MAX_SOURCE_BYTES)"


# --- decompression: MAX_DECOMPRESSION_RATIO, MAX_DECOMPRESSED_BYTES (.gz) ---------------------------


def test_a_gzip_bomb_stops_just_past_the_grace_at_the_real_limits() -> None:
    # Given 64 MiB of zeros gzipped (about 65 KB: 1,000 times smaller), with the real limits
    bomb = _zeros_gzip(64 * MiB)
    assert len(bomb) < 100_000
    received = 0
    # When the stream is read
    with (
        pytest.raises(SourceOverLimit) as caught,
        open_source("s3://data/bomb.bin.gz", FakeS3(bomb)) as stream,
    ):
        while chunk := stream.read(65536):
            received += len(chunk)
    # Then it fails on the ratio having decompressed just past the 16 MiB grace, not all 64 MiB
    assert caught.value.limit == "MAX_DECOMPRESSION_RATIO"
    assert re.fullmatch(
        r"[\d,]+ bytes decompressed from [\d,]+, more than 200 times as many \(limit MAX_DECOMPRESSION_RATIO\)",
        caught.value.reason,
    ), caught.value.reason
    assert DECOMPRESSION_RATIO_GRACE_BYTES < _decompressed_in(caught.value) <= AT_MOST_DECOMPRESSED
    assert received <= _decompressed_in(caught.value)


def test_a_gzip_bomb_that_parses_as_csv_fails_its_records() -> None:
    # Given 64 MiB of valid CSV (1,000 zeros a line) gzipped, with the real limits
    body = _gzip(_zero_lines(64 * MiB))
    rows = 0
    # When its records are read
    with (
        pytest.raises(SourceOverLimit) as caught,
        open_source("s3://data/bomb.csv.gz", FakeS3(body)) as stream,
    ):
        for _ in iter_records(stream, "csv", name_hint="s3://data/bomb.csv.gz"):
            rows += 1
    # Then the records stop after some 16 MiB of them (about 16,800 lines), the error saying where
    assert caught.value.limit == "MAX_DECOMPRESSION_RATIO"
    assert caught.value.reason.startswith(f"after line {rows + 1}: ")
    assert 16_000 < rows < AT_MOST_DECOMPRESSED // 1000


def _assert_stopped_just_past_the_grace(uri: str, body: bytes) -> None:
    received = 0
    with pytest.raises(SourceOverLimit) as caught, open_source(uri, FakeS3(body)) as stream:
        while chunk := stream.read(65536):
            received += len(chunk)
    assert caught.value.limit == "MAX_DECOMPRESSION_RATIO"
    assert (
        received <= DECOMPRESSION_RATIO_GRACE_BYTES < _decompressed_in(caught.value) <= AT_MOST_DECOMPRESSED
    )


def test_a_multi_member_gzip_bomb_is_judged_across_its_members() -> None:
    # Given 64 gzip members of 1 MiB of zeros each: no member alone is past the grace
    bomb = _zeros_gzip(MiB, members=64)
    # When the stream is read / Then the output of all members counts, and it stops just past the grace
    _assert_stopped_just_past_the_grace("s3://data/bomb.bin.gz", bomb)


def test_a_small_file_of_repeated_values_is_within_the_grace() -> None:
    # Given 8 MiB of CSV (1,000 zeros a line) that gzip shrinks about 1,000 times, under the 16 MiB grace
    data = b"".join(_zero_lines(8 * MiB))
    # When read / Then every row arrives
    assert len(_read_s3("repeated.csv.gz", gzip.compress(data, 9))) == data.count(b"\n") - 1


def test_gzip_output_over_the_decompressed_limit_fails(set_limit: SetLimit) -> None:
    # Given a 1 MiB limit after decompression, and 2 MiB of text that compresses only modestly
    set_limit("MAX_DECOMPRESSED_BYTES", MiB)
    data = b"id\n" + b"".join(b"%d\n" % (i * 7919 % 1_000_003) for i in range(310_000))
    assert len(data) > 2 * MiB
    # When read
    with pytest.raises(SourceOverLimit) as caught:
        _read_s3("big.csv.gz", gzip.compress(data))
    # Then it fails on the decompressed bytes
    assert caught.value.limit == "MAX_DECOMPRESSED_BYTES"
    assert re.fullmatch(
        r"after line \d+: more than 1,048,576 bytes after decompression \(limit MAX_DECOMPRESSED_BYTES\)",
        caught.value.reason,
    ), caught.value.reason


# --- decompression (.zip): the directory's sizes, then the bytes themselves ---------------------------


def test_a_zip_bomb_with_an_honest_directory_is_refused_before_it_is_inflated() -> None:
    # Given a zip whose one member is 64 MiB of zeros, the directory telling the truth about it
    packed, crc, size = _deflated(bytes(MiB) for _ in range(64))
    body = _zip_with("data.csv", packed, crc=crc, file_size=size)
    # When it is opened / Then it is refused on the declared ratio, naming the member and both sizes
    with pytest.raises(SourceOverLimit) as caught, open_source("s3://data/bomb.csv.zip", FakeS3(body)):
        pass
    assert caught.value.limit == "MAX_DECOMPRESSION_RATIO"
    assert caught.value.reason == (
        f"data.csv declares 67,108,864 bytes from {len(packed):,} compressed, more than 200 times as many"
        " (limit MAX_DECOMPRESSION_RATIO)"
    )


def test_a_zip_member_declared_over_the_decompressed_limit_is_refused(set_limit: SetLimit) -> None:
    # Given a 1 MiB limit after decompression, and a zip member that says (truly) it is 2 MiB
    set_limit("MAX_DECOMPRESSED_BYTES", MiB)
    data = bytes(range(256)) * (2 * MiB // 256)
    packed, crc, size = _deflated(iter([data]))
    body = _zip_with("data.csv", packed, crc=crc, file_size=size)
    # When it is opened / Then it is refused before it is inflated
    with pytest.raises(SourceOverLimit) as caught, open_source("s3://data/big.csv.zip", FakeS3(body)):
        pass
    assert caught.value.reason == (
        "data.csv declares 2,097,152 bytes decompressed, more than 1,048,576 (limit MAX_DECOMPRESSED_BYTES)"
    )


def test_a_zip_bomb_behind_a_plausible_directory_is_stopped_while_inflating() -> None:
    # Given 64 MiB of zeros deflated (~65 KB) then padded, the directory claiming 671,089 compressed
    # bytes: a ratio of 100, under the limit of 200
    packed, crc, size = _deflated(bytes(MiB) for _ in range(64))
    claimed = size // 100
    body = _zip_with("data.csv", packed + bytes(claimed - len(packed)), crc=crc, file_size=size)
    # When the member is read / Then the compressed bytes actually read are what count: it stops just past
    # the grace
    _assert_stopped_just_past_the_grace("s3://data/bomb.csv.zip", body)


def test_a_zip_bomb_declaring_a_small_size_yields_no_more_than_that() -> None:
    # Given a 64 MiB CSV-shaped bomb whose directory claims 1,000 bytes decompressed
    packed, crc, _ = _deflated(_zero_lines(64 * MiB))
    body = _zip_with("data.csv", packed, crc=crc, file_size=1000)
    # When read / Then zipfile stops at the declared size, and the checksum then fails it for good
    with pytest.raises(SourceUnreadable) as caught:
        _read_s3("small.csv.zip", body)
    assert not isinstance(caught.value, SourceOverLimit)
    assert caught.value.reason == "cannot read the stream: Bad CRC-32 for file 'data.csv'"


# --- one record: MAX_RECORD_LENGTH -------------------------------------------------------------------


def test_a_csv_record_of_exactly_the_limit_is_read_and_one_more_character_is_not() -> None:
    # Given a CSV whose second line is 1,048,576 characters with its newline (the limit), across reads
    exact = b"x" * (MAX_RECORD_LENGTH - 1) + b"\n"
    # When read / Then it is one whole field
    assert _records(b"id\n" + exact + b"y\n", "csv") == [{"id": "x" * (MAX_RECORD_LENGTH - 1)}, {"id": "y"}]
    # And when the line is one character longer, it is refused, naming line and limit
    with pytest.raises(SourceOverLimit) as caught:
        _records(b"id\n" + b"x" + exact + b"y\n", "csv")
    assert caught.value.limit == "MAX_RECORD_LENGTH"
    assert caught.value.reason == "line 2: a record longer than 1,048,576 characters (limit MAX_RECORD_LENGTH)"


def test_a_huge_csv_line_is_refused_having_read_little_more_than_the_limit() -> None:
    # Given a CSV whose line 3 is 64 MiB with no newline at all
    body = CountingBody(b"id\n1\n" + b"7" * (64 * MiB))
    # When read
    with pytest.raises(SourceOverLimit) as caught:
        list(iter_records(body, "csv", name_hint="test"))
    # Then it fails on line 3, having read about the limit, never the whole line
    assert caught.value.reason == "line 3: a record longer than 1,048,576 characters (limit MAX_RECORD_LENGTH)"
    assert body.taken <= MAX_RECORD_LENGTH + 2 * 65536


def _line_where_record_passes(first_line: int, record: str) -> int:
    total = 0
    for offset, line in enumerate(record.splitlines(keepends=True)):
        total += len(line)
        if total > MAX_RECORD_LENGTH:
            return first_line + offset
    raise AssertionError("the record is within the limit")


@pytest.mark.parametrize("extra", [0, 1])
def test_a_quoted_field_over_many_lines_counts_every_line(extra: int) -> None:
    # Given a header, 100 short records, then a record whose quoted field runs over 1,049 lines (beginning
    # inside a read and ending many reads later) of exactly 1,048,576 characters, or one more
    field = "\n".join(["x" * 999] * 1048) + "\n" + "z" * (MAX_RECORD_LENGTH - 1048 * 1000 - 5 + extra)
    record = f'1,"{field}"\n'
    assert len(record) == MAX_RECORD_LENGTH + extra
    data = ("id,note\n" + "".join(f"{i},short\n" for i in range(100)) + record + "2,after\n").encode()
    if not extra:
        # When read / Then the long record and the one after it arrive whole
        records = _records(data, "csv")
        assert len(records) == 102
        assert records[100] == {"id": "1", "note": field}
        assert records[101] == {"id": "2", "note": "after"}
        return
    # When it is one character longer / Then it is refused on the line where it passed the limit
    with pytest.raises(SourceOverLimit) as caught:
        _records(data, "csv")
    line = _line_where_record_passes(102, record)
    assert line == 1150
    assert (
        caught.value.reason
        == f"line {line}: a record longer than 1,048,576 characters (limit MAX_RECORD_LENGTH)"
    )


def test_a_huge_quoted_multi_line_field_is_refused_having_read_little_more_than_the_limit() -> None:
    # Given a CSV whose second record opens a quoted field and runs on for 32 MiB of short lines
    body = CountingBody(b'id,note\n1,"' + b"0123456789\n" * (32 * MiB // 11))
    # When read
    with pytest.raises(SourceOverLimit) as caught:
        list(iter_records(body, "csv", name_hint="test"))
    # Then it fails on the line where the record passed 1 MiB, not at the end
    line = _line_where_record_passes(2, '1,"' + "0123456789\n" * 100_000)
    assert line == 95326
    assert (
        caught.value.reason
        == f"line {line}: a record longer than 1,048,576 characters (limit MAX_RECORD_LENGTH)"
    )
    assert body.taken <= MAX_RECORD_LENGTH + 2 * 65536


def test_many_fields_of_one_line_count_as_one_record() -> None:
    # Given a two-column CSV whose line 2 has 2,000 fields of 1,000 characters (each fine alone)
    line = ",".join(["y" * 999] * 2000) + "\n"
    # When read / Then the record, not the field, is over the limit
    with pytest.raises(
        SourceOverLimit, match=r"unreadable: line 2: a record longer than 1,048,576 characters"
    ):
        _records(b"a,b\n" + line.encode(), "csv")


def test_a_huge_ndjson_line_is_refused_having_read_little_more_than_the_limit() -> None:
    # Given an ndjson whose second line is a 64 MiB string
    body = CountingBody(b'{"id": 1}\n{"s": "' + b"s" * (64 * MiB) + b'"}\n')
    # When read
    with pytest.raises(SourceOverLimit) as caught:
        list(iter_records(body, "ndjson", name_hint="test"))
    # Then it fails on line 2 after about the limit
    assert caught.value.reason == "line 2: a line longer than 1,048,576 characters (limit MAX_RECORD_LENGTH)"
    assert body.taken <= MAX_RECORD_LENGTH + 2 * 65536


def test_an_ndjson_line_of_exactly_the_limit_is_read() -> None:
    # Given a line of 1,048,576 characters with its newline
    value = "v" * (MAX_RECORD_LENGTH - len('{"s": ""}\n'))
    line = json.dumps({"s": value}).encode() + b"\n"
    assert len(line) == MAX_RECORD_LENGTH
    # When read / Then it arrives
    assert _records(line + line, "ndjson") == [{"s": value}, {"s": value}]


def test_a_huge_json_array_item_is_refused_without_buffering_it() -> None:
    # Given a JSON array whose second item, starting on line 3, holds a 64 MiB string
    body = CountingBody(b'[\n{"id": 1},\n{"id": 2, "s": "' + b"s" * (64 * MiB) + b'"}\n]')
    # When read
    with pytest.raises(SourceOverLimit) as caught:
        list(iter_records(body, "json", name_hint="test"))
    # Then it fails naming the item's line, having held about the limit of it
    assert caught.value.reason == "line 3: an item longer than 1,048,576 characters (limit MAX_RECORD_LENGTH)"
    assert body.taken <= MAX_RECORD_LENGTH + 2 * 65536


def test_a_json_array_item_of_exactly_the_limit_is_read_and_one_more_is_not() -> None:
    # Given array items of 1,048,576 characters, then of 1,048,577
    def item(length: int) -> bytes:
        return json.dumps({"s": "v" * (length - len('{"s": ""}'))}).encode()

    assert len(item(MAX_RECORD_LENGTH)) == MAX_RECORD_LENGTH
    # When read / Then the first is a record and the second is refused
    assert len(_records(b"[" + item(MAX_RECORD_LENGTH) + b"," + item(MAX_RECORD_LENGTH) + b"]", "json")) == 2
    with pytest.raises(
        SourceOverLimit, match=r"unreadable: line 1: an item longer than 1,048,576 characters"
    ):
        _records(b"[" + item(MAX_RECORD_LENGTH + 1) + b"]", "json")


def test_a_malformed_json_item_is_named_at_once_in_a_long_document() -> None:
    # Given a 5 MiB JSON array whose first item is malformed
    body = CountingBody(b'[{"id": 1,, "x": 2},\n' + b'{"id": 2},\n' * (5 * MiB // 11) + b'{"id": 3}]')
    # When read
    with pytest.raises(SourceUnreadable) as caught:
        list(iter_records(body, "json", name_hint="test"))
    # Then it is invalid JSON on line 1, found in the first read, not taken for a long item
    assert not isinstance(caught.value, SourceOverLimit)
    assert caught.value.reason == "line 1: invalid JSON (Expecting property name enclosed in double quotes)"
    assert body.taken <= 2 * 65536


# --- nesting: MAX_SOURCE_JSON_DEPTH -----------------------------------------------------------------


def _nested(depth: int) -> str:
    """A JSON object nested `depth` levels (the object itself is 1)."""
    return '{"a": ' + "[" * (depth - 1) + "]" * (depth - 1) + "}"


@pytest.mark.parametrize("fmt", ["ndjson", "json"])
def test_a_record_nested_33_levels_is_refused_and_32_is_read(fmt: str) -> None:
    def document(line: str) -> bytes:
        return (f'{{"id": 1}}\n{line}\n' if fmt == "ndjson" else f'[{{"id": 1}},\n{line}\n]').encode()

    # Given a record nested to the limit, 32 levels
    # When read / Then its nested value stays JSON text
    assert _records(document(_nested(MAX_SOURCE_JSON_DEPTH)), fmt)[1] == {"a": "[" * 31 + "]" * 31}
    # And given one nested 33 levels / Then it is refused on its line
    with pytest.raises(SourceOverLimit) as caught:
        _records(document(_nested(MAX_SOURCE_JSON_DEPTH + 1)), fmt)
    assert caught.value.limit == "MAX_SOURCE_JSON_DEPTH"
    assert (
        caught.value.reason
        == "line 2: a record nested more than 32 levels deep (limit MAX_SOURCE_JSON_DEPTH)"
    )


@pytest.mark.parametrize("fmt", ["ndjson", "json"])
def test_a_record_nested_100000_levels_is_refused_not_a_recursion_error(fmt: str) -> None:
    # Given a record nested 100,000 levels (past the decoder's recursion limit)
    line = _nested(100_000)
    data = (line + "\n" if fmt == "ndjson" else f"[{line}]").encode()
    # When read / Then the decoder's RecursionError is reported as the depth limit
    with pytest.raises(SourceOverLimit) as caught:
        _records(data, fmt)
    assert (
        caught.value.reason
        == "line 1: a record nested more than 32 levels deep (limit MAX_SOURCE_JSON_DEPTH)"
    )


# --- fields: MAX_SOURCE_FIELDS ----------------------------------------------------------------------


def test_a_csv_header_of_4097_columns_is_refused_and_4096_is_read() -> None:
    def csv_of(width: int) -> bytes:
        return (",".join(f"c{i}" for i in range(width)) + "\n" + ",".join("1" * width) + "\n").encode()

    # Given a header of 4,096 columns / When read / Then its row arrives
    assert len(_records(csv_of(MAX_SOURCE_FIELDS), "csv")[0]) == MAX_SOURCE_FIELDS
    # And given 4,097 columns / Then the header is refused
    with pytest.raises(SourceOverLimit) as caught:
        _records(csv_of(MAX_SOURCE_FIELDS + 1), "csv")
    assert (
        caught.value.reason
        == "line 1: 4,097 columns in the header, more than 4,096 (limit MAX_SOURCE_FIELDS)"
    )


def test_a_csv_record_of_too_many_fields_names_the_limit() -> None:
    # Given a two-column CSV whose line 3 has 5,000 fields
    data = b"a,b\n1,2\n" + b",".join([b"x"] * 5000) + b"\n"
    # When read / Then the field count over the limit is what is reported
    with pytest.raises(SourceOverLimit) as caught:
        _records(data, "csv")
    assert caught.value.reason == "line 3: 5,000 fields, more than 4,096 (limit MAX_SOURCE_FIELDS)"


@pytest.mark.parametrize("fmt", ["ndjson", "json"])
def test_a_json_record_of_4097_keys_is_refused(fmt: str) -> None:
    # Given a record of 4,097 keys on line 1
    line = json.dumps({f"k{i}": i for i in range(MAX_SOURCE_FIELDS + 1)})
    data = (line + "\n" if fmt == "ndjson" else f"[{line}]").encode()
    # When read / Then it is refused, naming the count
    with pytest.raises(SourceOverLimit) as caught:
        _records(data, fmt)
    assert caught.value.reason == "line 1: 4,097 keys, more than 4,096 (limit MAX_SOURCE_FIELDS)"


# --- every parse failure is unreadable (for good) -----------------------------------------------------


def test_a_truncated_gzip_is_unreadable() -> None:
    body = gzip.compress(b"id\n" + b"1\n" * 10_000)
    with pytest.raises(SourceUnreadable, match="cannot read the stream: Compressed file ended"):
        _read_s3("cut.csv.gz", body[: len(body) // 2])


def test_a_gzip_with_garbage_after_it_is_unreadable() -> None:
    with pytest.raises(SourceUnreadable, match="cannot read the stream: Not a gzipped file"):
        _read_s3("trailing.csv.gz", gzip.compress(b"id\n1\n") + b"garbage")


DAMAGES: dict[str, Callable[[bytes], bytes]] = {
    "cut-in-data": lambda body: body[:100],
    "cut-in-directory": lambda body: body[:-30],
    "cut-in-end-record": lambda body: body[:-10],
    "bad-local-header": lambda body: b"XX" + body[2:],
    "directory-offset-past-the-end": lambda body: body[:-6] + struct.pack("<L", 10**6) + body[-2:],
}


@pytest.mark.parametrize("damage", DAMAGES.values(), ids=DAMAGES.keys())
def test_a_damaged_zip_is_unreadable(damage: Callable[[bytes], bytes]) -> None:
    # Given a valid one-member zip, damaged
    packed, crc, size = _deflated(iter([b"id\n" + b"1\n" * 1000]))
    body = damage(_zip_with("data.csv", packed, crc=crc, file_size=size))
    # When read / Then it is unreadable, whatever zipfile raised
    with pytest.raises(SourceUnreadable) as caught:
        _read_s3("bad.csv.zip", body)
    assert not isinstance(caught.value, SourceOverLimit)


def test_a_zip_member_with_a_corrupt_stream_is_unreadable() -> None:
    # Given a zip whose member's deflate data is garbage
    body = _zip_with("data.csv", b"\xff" * 200, crc=0, file_size=1000)
    with pytest.raises(SourceUnreadable, match="cannot read the stream"):
        _read_s3("garbage.csv.zip", body)


def test_invalid_utf8_after_the_first_read_is_unreadable() -> None:
    data = b"id\n" + b"1\n" * 100_000 + b"\xc3\x28\n"
    with pytest.raises(SourceUnreadable, match=r"not UTF-8 text \(invalid continuation byte at byte \d+\)"):
        _records(data, "csv")


def test_a_nul_in_a_csv_is_unreadable_naming_the_line() -> None:
    with pytest.raises(SourceUnreadable) as caught:
        _records(b"id,name\n1,a\n2,b\x00c\n3,d\n", "csv")
    assert caught.value.reason == "line 3: a NUL character (not CSV text)"


def test_a_nul_far_into_a_csv_names_its_line() -> None:
    data = b"id\n" + b"1\n" * 100_000 + b"\r\n".join([b"2", b"3", b"\x00"]) + b"\n"
    with pytest.raises(SourceUnreadable, match=r"unreadable: line 100004: a NUL character"):
        _records(data, "csv")


def test_a_csv_field_over_csvs_own_limit_is_unreadable() -> None:
    # Given csv's process-wide field limit lowered below a field (another module could do that)
    previous = csv.field_size_limit(10)
    try:
        # When read / Then csv's error is unreadable, naming the line
        with pytest.raises(
            SourceUnreadable, match=r"unreadable: line 2: field larger than field limit \(10\)"
        ):
            _records(b"id\n" + b"x" * 100 + b"\n", "csv")
    finally:
        csv.field_size_limit(previous)


def test_readers_lift_csvs_field_limit_to_the_record_limit() -> None:
    assert csv.field_size_limit() >= MAX_RECORD_LENGTH


@pytest.mark.parametrize("fmt", ["ndjson", "json"])
def test_an_integer_of_5000_digits_is_invalid_json_not_a_crash(fmt: str) -> None:
    line = '{"n": ' + "7" * 5000 + "}"
    data = (line + "\n" if fmt == "ndjson" else f"[{line}]").encode()
    with pytest.raises(SourceUnreadable, match=r"unreadable: line 1: invalid JSON \(Exceeds the limit"):
        _records(data, fmt)


# --- a failing connection is not the source's fault: it propagates, for SQS to retry ---------------


TRANSIENT = [
    ProtocolError("Connection broken: IncompleteRead(0 bytes read)"),
    ReadTimeoutError(endpoint_url="https://data.s3.amazonaws.com/data.csv"),
    ResponseStreamingError(error="Connection broken"),
    ConnectionResetError(104, "Connection reset by peer"),
    TimeoutError("The read operation timed out"),
]


@pytest.mark.parametrize("error", TRANSIENT, ids=lambda error: type(error).__name__)
@pytest.mark.parametrize("key", ["plain.csv", "packed.csv.gz", "packed.csv.zip"])
def test_a_connection_failing_mid_read_propagates_as_it_is(error: Exception, key: str) -> None:
    # Given a source whose connection fails after its first 64 KiB
    data = b"id\n" + b"1\n" * 100_000
    if key.endswith(".gz"):
        data = gzip.compress(data)
    elif key.endswith(".zip"):
        packed, crc, size = _deflated(iter([data]))
        data = _zip_with("data.csv", packed, crc=crc, file_size=size)
    body = BrokenBody(data[:65536], error)
    # When it is read / Then the connection's own error comes out, not SourceUnreadable
    with pytest.raises(type(error)) as caught:
        _read_s3(key, body)
    assert caught.value is error
    assert not isinstance(caught.value, SourceUnreadable)


@pytest.mark.parametrize("error", TRANSIENT, ids=lambda error: type(error).__name__)
def test_iter_records_lets_a_failing_stream_propagate(error: Exception) -> None:
    with pytest.raises(type(error)):
        list(iter_records(BrokenBody(b"id\n1\n2\n", error), "csv"))


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (
            ClientError(
                {"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}}, "GetObject"
            ),
            True,
        ),
        (
            ClientError(
                {"Error": {"Code": "InternalError"}, "ResponseMetadata": {"HTTPStatusCode": 500}}, "GetObject"
            ),
            True,
        ),
        (ReadTimeoutError(endpoint_url="https://data.s3.amazonaws.com"), True),
        (
            ClientError(
                {"Error": {"Code": "AccessDenied"}, "ResponseMetadata": {"HTTPStatusCode": 403}}, "GetObject"
            ),
            False,
        ),
        (
            ClientError(
                {"Error": {"Code": "NoSuchKey"}, "ResponseMetadata": {"HTTPStatusCode": 404}}, "GetObject"
            ),
            False,
        ),
    ],
    ids=["503-slow-down", "500", "read-timeout", "403", "404"],
)
def test_get_object_failures_propagate_only_when_a_retry_may_help(error: Exception, transient: bool) -> None:
    opening = open_source("s3://data/data.csv", FakeS3(error=error))
    if transient:
        with pytest.raises(type(error)) as caught, opening:
            pass
        assert not isinstance(caught.value, SourceUnreadable)
    else:
        with pytest.raises(SourceUnreadable), opening:
            pass
