"""A source no byte range can split (a JSON array, CSV with multiline fields, a row `limit`) is read by one
reader, which pauses after a chunk before its invocation runs out of time and goes on in the next from the
byte that chunk ended at; the task ends exactly as when one invocation reads it all."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest
from busline_core import etl_steps, task_api
from busline_core.contracts import TaskStatus, TaskSubmitted

from .conftest import BUCKET, Clock, Cloud, FakeWarehouse, RecordingPusher, Wired, wire
from .test_source_staging import Seconds, _extract_until_planned, _finish, _rejects
from .test_steps import _flights_csv, _of_type, _spec

ROWS = 2_000
CHUNK_ROWS = 300  # 6 full chunks and one of 200
CHUNKS = 7
FILTERED, REJECTED = 200, 80 + 40  # dep_time NA every 10th; carrier ZZ every 25th, amount "oops" every 50th
LOADED = ROWS - FILTERED - REJECTED


def _records() -> list[dict[str, str | None]]:
    lines = _flights_csv(ROWS).splitlines()
    header = lines[0].split(",")
    return [dict(zip(header, line.split(","), strict=True)) for line in lines[1:]]


def _multiline_csv() -> bytes:
    """The same rows as CRLF CSV behind a byte-order mark, every carrier quoted and every 7th one holding a
    line break and a doubled quote (the join still sees the code: a hook-free spec joins on the whole value,
    so the break is put in a column nothing joins on)."""
    out = ["id,carrier,dep_time,amount,note"]
    for record in _records():
        note = '"two\r\nlines, ""quoted"""' if int(record["id"] or 0) % 7 == 0 else "plain"
        out.append(f'{record["id"]},"{record["carrier"]}",{record["dep_time"]},{record["amount"]},{note}')
    return ("\ufeff" + "\r\n".join(out) + "\r\n").encode()


def _json_array() -> bytes:
    items = [
        {**record, "dep_time": None if record["dep_time"] == "NA" else record["dep_time"], "note": "é\n"}
        for record in _records()
    ]
    return ("[\n" + ",\n".join(json.dumps(item, ensure_ascii=False) for item in items) + "\n]").encode()


SOURCES: dict[str, tuple[bytes, dict[str, Any]]] = {
    "uploads/ana/rows.json": (_json_array(), {"format": "json"}),
    "uploads/ana/rows.json.gz": (gzip.compress(_json_array()), {"format": "json"}),
    "uploads/ana/multi.csv": (_multiline_csv(), {"multilineFields": True}),
    "uploads/ana/multi.csv.gz": (gzip.compress(_multiline_csv()), {"multilineFields": True}),
    "uploads/ana/limited.csv": (_flights_csv(ROWS + 500).encode(), {"limit": ROWS}),
}


@pytest.fixture
def sources(cloud: Cloud, clock: Clock, warehouse: FakeWarehouse, pusher: RecordingPusher) -> Wired:
    for key, (body, _) in SOURCES.items():
        cloud.s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    cloud.s3.put_object(
        Bucket=BUCKET, Key="shared/ref/carriers.csv", Body=b"code,name\nAA,American\nBB,Blue Sky\n"
    )
    return wire(cloud, clock, warehouse, pusher)


def _submit(deps: Wired, cloud: Cloud, key: str, table: str) -> str:
    spec = _spec(key)
    spec["source"].update(SOURCES[key][1])
    spec["target"] = {"table": table, "key": ["id"]}
    spec["chunkRows"] = CHUNK_ROWS
    task_id = task_api.submit_task(spec, "ana", deps.api).taskId
    cloud.published_events()
    return task_id


def _extract(
    cloud: Cloud, deps: Wired, task_id: str, *, chunks_per_invocation: int | None, deliveries: int = 1
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Extract, then each SourceReadingPaused, as the extract queue would: (pauses, ChunkExtracted events)."""
    return _extract_until_planned(
        cloud, deps, task_id, parts_per_invocation=chunks_per_invocation, deliveries=deliveries,
        paused_type="SourceReadingPaused",
    )  # fmt: skip


def _assert_succeeded(deps: Wired, task_id: str) -> None:
    state = deps.api.tasks.get(task_id)
    assert state is not None
    assert (state.status, state.error) == (TaskStatus.SUCCEEDED, None)
    assert state.counts.model_dump() == {
        "read": ROWS,
        "filtered": FILTERED,
        "rejected": REJECTED,
        "loaded": LOADED,
        "deleted": 0,
    }
    assert (state.extract.total, state.transform.done, state.load.done) == (CHUNKS, CHUNKS, CHUNKS)


@pytest.mark.parametrize("key", list(SOURCES))
def test_one_reader_pauses_after_each_chunk_and_ends_like_one_invocation(
    cloud: Cloud, sources: Wired, warehouse: FakeWarehouse, key: str
) -> None:
    # Given the same source read by one invocation, and by invocations with time for one chunk each
    whole = _submit(sources, cloud, key, "whole")
    paced = _submit(sources, cloud, key, "paced")
    whole_pauses, whole_extracted = _extract(cloud, sources, whole, chunks_per_invocation=None)
    # When extract runs on the paced one
    pauses, extracted = _extract(cloud, sources, paced, chunks_per_invocation=1)
    # Then one invocation paused nowhere; the paced reader paused after each of the 6 full chunks, each
    # checkpoint one chunk on, and the 7th invocation read the last 200 rows
    assert whole_pauses == []
    assert [(p["reading"]["chunks"], p["reading"]["rows"]) for p in pauses] == [
        (n, n * CHUNK_ROWS) for n in range(1, CHUNKS)
    ]
    offsets = [p["reading"]["offset"] for p in pauses]
    assert offsets == sorted(set(offsets))
    assert [(e["chunk"], e["rows"]) for e in extracted] == [(n, CHUNK_ROWS) for n in range(6)] + [(6, 200)]
    # And the raw chunks are the same bytes as one invocation's
    for chunk in range(CHUNKS):
        paced_chunk = sources.api.chunks.get_table(f"tasks/{paced}/extract/{chunk:06d}.arrow")
        whole_chunk = sources.api.chunks.get_table(f"tasks/{whole}/extract/{chunk:06d}.arrow")
        assert paced_chunk.equals(whole_chunk)
    # And both tasks end alike: counts, rows and rejects (with their row numbers)
    _finish(cloud, sources, whole_extracted)
    _finish(cloud, sources, extracted)
    _assert_succeeded(sources, whole)
    _assert_succeeded(sources, paced)
    assert len(warehouse.tables["paced"]) == LOADED
    assert warehouse.tables["paced"] == warehouse.tables["whole"]
    assert [(r.row, r.reason, r.data) for r in _rejects(sources, paced)] == [
        (r.row, r.reason, r.data) for r in _rejects(sources, whole)
    ]
    assert len(_rejects(sources, paced)) == REJECTED


def test_every_pause_delivered_twice_still_ends_exactly_once(
    cloud: Cloud, sources: Wired, warehouse: FakeWarehouse
) -> None:
    # Given a JSON array read with time for two chunks per invocation
    task_id = _submit(sources, cloud, "uploads/ana/rows.json", "paced")
    # When the TaskSubmitted and every pause are delivered twice (idempotency records aside: the step re-runs)
    pauses, extracted = _extract(cloud, sources, task_id, chunks_per_invocation=2, deliveries=2)
    # Then each delivery of a checkpoint paused at the same next one, and stored the same chunks
    assert [p["reading"]["chunks"] for p in pauses] == [2, 2, 4, 4, 4, 4, 6, 6, 6, 6, 6, 6, 6, 6]
    assert sorted({e["chunk"] for e in extracted}) == list(range(CHUNKS))
    # And the task counts each chunk once
    _finish(cloud, sources, extracted)
    _assert_succeeded(sources, task_id)
    assert len(warehouse.tables["paced"]) == LOADED


def test_a_source_replaced_while_it_is_read_fails_the_task_for_good(cloud: Cloud, sources: Wired) -> None:
    # Given a JSON array whose reader paused after its first chunk
    task_id = _submit(sources, cloud, "uploads/ana/rows.json", "paced")
    deps = sources.extract
    deps.remaining_seconds = Seconds(1)
    etl_steps.run_step(etl_steps.extract_task, TaskSubmitted(taskId=task_id), deps)
    (pause,) = _of_type(cloud.published_events(), "SourceReadingPaused")
    # When the object is replaced, then the reader goes on
    cloud.s3.put_object(Bucket=BUCKET, Key="uploads/ana/rows.json", Body=_json_array().replace(b"\xc3\xa9", b"e"))
    etl_steps.run_step(etl_steps.extract_task, TaskSubmitted.model_validate(pause), deps)
    # Then the task failed for good, saying why, instead of mixing two versions' records
    state = sources.api.tasks.get(task_id)
    assert state is not None
    assert state.status is TaskStatus.FAILED
    assert state.error is not None
    assert "the object changed while it was read" in state.error.message
