"""ChunkStore: layout, Arrow IPC round trip (raw chunks that hold text UTF-8 cannot encode too), rejects pagination with opaque tokens (moto S3); presigned
upload URLs, PUT to over real HTTP (a moto server on loopback)."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import boto3
import pyarrow as pa
import pytest
from busline_core.contracts import Reject
from busline_core.errors import ChunkFailed, InvalidTask
from busline_core.storage import ChunkStore, raw_records_of, raw_table_from_records
from moto import mock_aws

from busline.localcloud.moto_patches import keep_put_bodies
from busline.localcloud.testing import moto_server

BUCKET = "data"


@pytest.fixture
def store() -> Iterator[ChunkStore]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield ChunkStore(client, BUCKET)


def test_layout_keys() -> None:
    assert ChunkStore.chunk_key("t1", "extract", 3) == "tasks/t1/extract/000003.arrow"
    assert ChunkStore.chunk_key("t1", "transform", 12) == "tasks/t1/transform/000012.arrow"
    assert ChunkStore.rejects_key("t1", 7) == "tasks/t1/rejects/000007.jsonl"
    assert ChunkStore.rejects_prefix("t1") == "tasks/t1/rejects/"


def test_tables_round_trip_as_compressed_arrow_ipc(store: ChunkStore) -> None:
    # Given a typed table with every column type a chunk carries and non-ASCII text
    table = pa.table({
        "id": pa.array(range(1000), pa.int64()),
        "x": pa.array([1.5] * 1000, pa.float64()),
        "ok": pa.array([True] * 1000),
        "name": pa.array(["Zürich"] * 999 + [None]),
    })  # fmt: skip
    key = ChunkStore.chunk_key("t1", "transform", 0)
    # When written and read back
    store.put_table(key, table)
    # Then the same table comes back, from an Arrow IPC stream smaller than its 21 kB of raw values
    assert store.get_table(key).equals(table)
    raw = store._s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert raw[:4] == b"\xff\xff\xff\xff"  # an IPC stream starts with a continuation marker
    assert len(raw) < 8_000  # compressed: the values alone are 21 kB


def test_raw_records_round_trip_with_ragged_fields_and_lone_surrogates(store: ChunkStore) -> None:
    # Given raw records as readers yield them: a field only some records have, a null, and a JSON
    # source's half surrogate pair (not text Arrow, or Postgres, can hold)
    records = [{"a": "1", "b": None}, {"a": "\ud800x", "c": "only here"}, {"b": "2", "a": "3"}]
    key = ChunkStore.chunk_key("t1", "extract", 0)
    # When stored as a raw chunk and read back
    store.put_table(key, raw_table_from_records(records))
    table = store.get_table(key)
    # Then the columns are in first-named order, the surrogate's column travels as binary, and the
    # records come back with every missing field null
    assert table.column_names == ["a", "b", "c"]
    assert [str(field.type) for field in table.schema] == ["binary", "string", "string"]
    assert raw_records_of(table) == [
        {"a": "1", "b": None, "c": None},
        {"a": "\ud800x", "b": None, "c": "only here"},
        {"a": "3", "b": "2", "c": None},
    ]


def test_empty_chunk_round_trips(store: ChunkStore) -> None:
    store.put_table("tasks/t1/extract/000000.arrow", raw_table_from_records([]))
    assert store.get_table("tasks/t1/extract/000000.arrow").num_rows == 0


def test_missing_chunk_is_a_chunk_failure(store: ChunkStore) -> None:
    with pytest.raises(ChunkFailed, match="tasks/t1/extract/000009.arrow does not exist"):
        store.get_table(ChunkStore.chunk_key("t1", "extract", 9))


def test_corrupt_chunk_is_a_chunk_failure(store: ChunkStore) -> None:
    store._s3.put_object(Bucket=BUCKET, Key="tasks/t1/extract/000001.arrow", Body=b"not arrow")
    with pytest.raises(ChunkFailed, match="tasks/t1/extract/000001.arrow is corrupt"):
        store.get_table("tasks/t1/extract/000001.arrow")


def _put_rejects(store: ChunkStore, task_id: str, per_chunk: dict[int, int]) -> list[int]:
    """Write `count` rejects for each chunk; returns every row number in listing order."""
    rows: list[int] = []
    for chunk, count in per_chunk.items():
        rejects = [
            Reject(row=chunk * 1000 + n, reason=f"reason {n}", data={"n": str(n)}) for n in range(count)
        ]
        store.put_rejects(ChunkStore.rejects_key(task_id, chunk), rejects)
        rows.extend(reject.row for reject in rejects)
    return rows


def test_a_rejects_file_holds_the_json_lines_of_the_rejects_model_dumps(store: ChunkStore) -> None:
    # Given rejects with non-ASCII text, control characters, numbers of every kind, nested values, no row
    # number, and one holding a lone surrogate (which pydantic's serializer refuses)
    rejects = [
        Reject(row=1, reason="join airports: no match for dest \u00e9", data={"dest": "Z\u00fcrich \U0001f600"}),
        Reject(row=2, reason="tab\tnewline\nnul\x00 del\x7f", data={"q": '"quoted" \\ back', "u": "\u2028"}),
        Reject(row=3, reason="numbers", data={"i": 7, "f": 0.1, "big": 1e16, "nan": float("nan"), "none": None}),
        Reject(row=None, reason="nested", data={"list": [1, "a", None], "map": {"k": True}}, at="bytes 0-9, record 2"),
        Reject(row=5, reason="surrogate", data={"s": "\ud800"}),
    ]

    # When they are written
    store.put_rejects("tasks/t1/rejects/000000.jsonl", rejects)

    # Then the file is, byte for byte, one compact JSON line per model_dump(mode="json"), as json.dumps writes it
    body = store._s3.get_object(Bucket=BUCKET, Key="tasks/t1/rejects/000000.jsonl")["Body"].read()
    expected = "".join(
        json.dumps(reject.model_dump(mode="json"), separators=(",", ":"), ensure_ascii=False) + "\n"
        for reject in rejects
    ).encode("utf-8", "surrogatepass")
    assert body == expected
    assert body.count(b"\n") == 5


def _all_pages(store: ChunkStore, task_id: str, limit: int) -> list[list[Reject]]:
    pages = []
    position = None
    while True:
        page, position = store.iter_rejects(task_id, limit, position)
        pages.append(page)
        if position is None:
            return pages
        assert len(pages) < 100, "pagination does not terminate"


def test_rejects_are_paged_across_chunk_files_in_order(store: ChunkStore) -> None:
    # Given rejects in three chunk files (5, 0, 7 and 3 rejects; the empty chunk writes no file)
    expected = _put_rejects(store, "t1", {0: 5, 1: 0, 2: 7, 3: 3})
    _put_rejects(store, "t2", {0: 4})  # another task's rejects must not leak in
    assert len(expected) == 15
    # When listed 4 at a time
    pages = _all_pages(store, "t1", limit=4)
    # Then the pages hold 4, 4, 4, 3 rejects, each once, in chunk then row order, and the last has no position
    assert [len(page) for page in pages] == [4, 4, 4, 3]
    assert [item.row for page in pages for item in page] == expected
    assert pages[0][0] == Reject(row=0, reason="reason 0", data={"n": "0"})


def test_page_ending_exactly_at_the_last_reject_has_no_next_position(store: ChunkStore) -> None:
    _put_rejects(store, "t1", {0: 3, 1: 3})
    pages = _all_pages(store, "t1", limit=3)
    assert [len(page) for page in pages] == [3, 3]


def test_no_rejects_gives_one_empty_page(store: ChunkStore) -> None:
    assert store.iter_rejects("t9", 10) == ([], None)


def test_a_position_of_another_task_is_an_invalid_request(store: ChunkStore) -> None:
    # Given a position within t1's rejects
    _put_rejects(store, "t1", {0: 3})
    page, position = store.iter_rejects("t1", 2)
    assert (len(page), position) == (2, {"k": "tasks/t1/rejects/000000.jsonl", "i": 2})
    # When it is used to list t2's rejects, or is not a position at all / Then InvalidPage names nextToken
    with pytest.raises(InvalidTask, match="nextToken: belongs to another listing"):
        store.iter_rejects("t2", 2, position)
    with pytest.raises(InvalidTask, match="nextToken: belongs to another listing"):
        store.iter_rejects("t1", 2, {"k": "tasks/t1/rejects/000000.jsonl", "i": -1})
    # And the next page from the position holds the last reject
    assert [item.row for item in store.iter_rejects("t1", 2, position)[0]] == [2]


# --- presigned uploads ------------------------------------------------------------------------------


@pytest.fixture
def moto_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A moto server on loopback, patched and reached through AWS_ENDPOINT_URL as the local cloud does."""
    keep_put_bodies()
    with moto_server() as endpoint:
        for name, value in {
            "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
        monkeypatch.delenv("AWS_PROFILE", raising=False)
        yield endpoint


def test_a_presigned_put_stores_the_object_through_plain_http(moto_endpoint: str) -> None:
    # Given the store as the API function builds it (ChunkStore.for_bucket), against a moto server
    store = ChunkStore.for_bucket(BUCKET)
    store.s3_client.create_bucket(Bucket=BUCKET)
    key = "uploads/alice/8d1f/orders.csv"
    # When a URL is presigned for a key and a client PUTs a file to it with urllib (no AWS SDK, no
    # credentials, and urllib's default Content-Type, application/x-www-form-urlencoded)
    url = store.presigned_put(key, 900)
    body = b"id,note\n1,a\n2,b\n"
    request = urllib.request.Request(url, data=body, method="PUT")
    with urllib.request.urlopen(request, timeout=10) as response:
        status = response.status
    # Then the URL is a SigV4 one on the configured endpoint, and the object holds exactly those bytes
    assert status == 200
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == moto_endpoint
    assert parts.path == f"/{BUCKET}/{key}"
    query = parse_qs(parts.query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Expires"] == ["900"]
    assert store.s3_client.get_object(Bucket=BUCKET, Key=key)["Body"].read() == body


def test_a_presigned_put_with_a_content_type_signs_that_header(moto_endpoint: str) -> None:
    # Given a URL presigned for a CSV upload
    store = ChunkStore.for_bucket(BUCKET)
    store.s3_client.create_bucket(Bucket=BUCKET)
    url = store.presigned_put("uploads/alice/2c4e/orders.csv", 60, content_type="text/csv")
    # When the file is PUT with that Content-Type
    request = urllib.request.Request(url, data=b"id\n1\n", method="PUT", headers={"Content-Type": "text/csv"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    # Then the header is among the signed ones, and the object keeps it
    assert "content-type" in parse_qs(urlsplit(url).query)["X-Amz-SignedHeaders"][0].split(";")
    stored = store.s3_client.head_object(Bucket=BUCKET, Key="uploads/alice/2c4e/orders.csv")
    assert stored["ContentType"] == "text/csv"
