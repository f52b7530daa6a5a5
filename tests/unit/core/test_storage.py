"""ChunkStore: layout, gzip JSONL round trip, rejects pagination with opaque tokens (moto S3)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator

import boto3
import pytest
from busline_core.contracts import Reject
from busline_core.errors import ChunkFailed, InvalidTask
from busline_core.storage import ChunkStore
from moto import mock_aws

BUCKET = "data"


@pytest.fixture
def store() -> Iterator[ChunkStore]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield ChunkStore(client, BUCKET)


def test_layout_keys() -> None:
    assert ChunkStore.chunk_key("t1", "extract", 3) == "tasks/t1/extract/000003.jsonl.gz"
    assert ChunkStore.chunk_key("t1", "transform", 12) == "tasks/t1/transform/000012.jsonl.gz"
    assert ChunkStore.rejects_key("t1", 7) == "tasks/t1/rejects/000007.jsonl"
    assert ChunkStore.rejects_prefix("t1") == "tasks/t1/rejects/"


def test_rows_round_trip_as_gzipped_json_lines(store: ChunkStore) -> None:
    # Given typed rows with every JSON value kind and non-ASCII text
    rows = [{"id": i, "x": 1.5, "d": "0.10", "ok": True, "name": "Zürich", "none": None} for i in range(1000)]
    key = ChunkStore.chunk_key("t1", "transform", 0)
    # When written and read back
    store.put_rows(key, rows)
    # Then the same rows come back, and the object is gzip of one JSON object per line
    assert store.get_rows(key) == rows
    raw = store._s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    lines = gzip.decompress(raw).decode().splitlines()
    assert len(lines) == 1000
    assert json.loads(lines[0]) == rows[0]


def test_empty_chunk_round_trips(store: ChunkStore) -> None:
    store.put_rows("tasks/t1/extract/000000.jsonl.gz", [])
    assert store.get_rows("tasks/t1/extract/000000.jsonl.gz") == []


def test_missing_chunk_is_a_chunk_failure(store: ChunkStore) -> None:
    with pytest.raises(ChunkFailed, match="tasks/t1/extract/000009.jsonl.gz does not exist"):
        store.get_rows(ChunkStore.chunk_key("t1", "extract", 9))


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
