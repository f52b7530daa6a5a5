"""A task's size limits, rejects kept, work skipped for tasks that failed for good, the finished task's
TTL and what a failure shows its owner: the steps on moto, as in test_steps.py."""

from __future__ import annotations

from datetime import timedelta

import pytest
from busline_core import etl_steps, task_api
from busline_core.contracts import ChunkExtracted, ChunkTransformed, Phase, TaskStatus, TaskSubmitted
from busline_core.errors import LoadFailed
from busline_core.storage import ChunkStore

from .conftest import BUCKET, Clock, Cloud, FakeWarehouse, Wired
from .test_steps import REJECTED, ROWS, _of_type, _run, _submit, deps  # noqa: F401  (deps: the steps' fixture)

RETENTION = timedelta(days=90)  # FinishedTaskRetentionDays' default


def _extract(deps: Wired, task_id: str) -> None:  # noqa: F811  (deps: the fixture's name)
    etl_steps.run_step(etl_steps.extract_task, TaskSubmitted(taskId=task_id), deps.extract)


def test_a_source_past_the_chunk_limit_fails_its_task_for_good_before_announcing_a_chunk(
    cloud: Cloud, deps: Wired, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    # Given a chunk limit of 2 and a task whose 250 rows make 3 chunks of 100; announcements held back until
    # the batch is full (a chunk that takes EXTRACT_FLUSH_SECONDS to store, as it once did on a 2-core machine
    # running the unit tests two at a time, would have the first two announced before the third is read)
    monkeypatch.setattr(etl_steps, "MAX_CHUNKS_PER_TASK", 2)
    monkeypatch.setattr(etl_steps, "EXTRACT_FLUSH_SECONDS", 3600.0)
    task_id = _submit(cloud, deps)
    # When extract runs twice (a redelivery)
    _extract(deps, task_id)
    _extract(deps, task_id)
    # Then the task FAILED in extract for good, naming the limit, and no chunk was announced
    snapshot = task_api.get_task(task_id, "ana", deps.api)
    assert snapshot.status is TaskStatus.FAILED
    assert snapshot.error is not None
    assert snapshot.error.message == (
        f"source s3://{BUCKET}/uploads/ana/flights.csv is unreadable: more than 2 chunks of 100 rows: "
        "raise chunkRows or split the source (limit MAX_CHUNKS_PER_TASK)"
    )
    events = cloud.published_events()
    assert [event["detail-type"] for event in events] == ["TaskFailed"]
    assert deps.api.tasks.get(task_id).error_terminal is True  # type: ignore[union-attr]


def test_a_source_past_the_row_limit_fails_its_task_naming_the_limit(
    cloud: Cloud, deps: Wired, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    # Given a row limit of 150 and a task of 250 rows
    monkeypatch.setattr(etl_steps, "MAX_ROWS_PER_TASK", 150)
    task_id = _submit(cloud, deps)
    # When extract runs
    _extract(deps, task_id)
    # Then it fails at the chunk that passes 150 rows
    snapshot = task_api.get_task(task_id, "ana", deps.api)
    assert snapshot.error is not None
    assert snapshot.error.message.endswith("more than 150 rows: split the source (limit MAX_ROWS_PER_TASK)")


def test_chunks_in_flight_for_a_task_that_failed_for_good_are_neither_transformed_nor_loaded(
    cloud: Cloud, deps: Wired, warehouse: FakeWarehouse  # noqa: F811
) -> None:
    # Given a task extracted into 3 chunks, whose transforms and loads are still queued
    task_id = _submit(cloud, deps)
    _extract(deps, task_id)
    extracted = [ChunkExtracted.model_validate(d) for d in _of_type(cloud.published_events(), "ChunkExtracted")]
    etl_steps.run_step(etl_steps.transform_chunk, extracted[0], deps.transform)  # warms the plan cache
    transformed = ChunkTransformed.model_validate(_of_type(cloud.published_events(), "ChunkTransformed")[0])
    # When the task fails for good (an unreadable join, say) before the rest runs
    deps.extract.lifecycle.abandon(task_id, Phase.TRANSFORM, "join carriers: unreadable")
    cloud.published_events()
    loaded = etl_steps.run_step(etl_steps.load_chunk, transformed, deps.load)
    rows = [etl_steps.run_step(etl_steps.transform_chunk, chunk, deps.transform) for chunk in extracted[1:]]
    # Then nothing is loaded, no transformed chunk is written, nothing is counted or published
    assert (loaded, rows, warehouse.load_calls) == (0, [0, 0], 0)
    keys = cloud.s3.list_objects_v2(Bucket=BUCKET, Prefix=f"tasks/{task_id}/transform/").get("Contents", [])
    assert [item["Key"] for item in keys] == [ChunkStore.chunk_key(task_id, "transform", 0)]
    snapshot = task_api.get_task(task_id, "ana", deps.api)
    assert (snapshot.phases.transform.done, snapshot.phases.load.done) == (1, 0)
    assert cloud.published_events() == []


def test_every_reject_is_counted_but_only_the_first_of_each_chunk_are_kept(
    cloud: Cloud, deps: Wired, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    # Given one reject kept per chunk, and a task of 3 chunks with 6, 6 and 3 rejects
    monkeypatch.setattr(etl_steps, "MAX_REJECTS_KEPT_PER_CHUNK", 1)
    task_id = _submit(cloud, deps)
    # When every step runs
    _run(cloud, deps, task_id)
    # Then the counts say 15 rejected, and the listing holds the first of each chunk (rows 1, 101, 201)
    snapshot = task_api.get_task(task_id, "ana", deps.api)
    assert (snapshot.status, snapshot.counts.rejected) == (TaskStatus.SUCCEEDED, REJECTED)
    page = task_api.list_rejects(task_id, "ana", 100, None, deps.api)
    assert [reject.row for reject in page.items] == [1, 101, 201]


def test_a_finished_task_expires_after_the_retention(
    cloud: Cloud, deps: Wired, clock: Clock  # noqa: F811
) -> None:
    # Given a task that runs to the end at the clock's time
    task_id = _submit(cloud, deps)
    _run(cloud, deps, task_id)
    # Then its item carries the TTL attribute: 90 days after it was announced, in epoch seconds
    item = cloud.tasks_table.get_item(Key={"taskId": task_id})["Item"]
    assert (item["status"], int(item["expiresAt"])) == ("SUCCEEDED", int((clock.now + RETENTION).timestamp()))
    assert int(item["expiresAt"]) == 1_803_117_600  # 2027-02-20T10:00:00Z


def test_a_failure_shows_its_owner_no_host_role_or_internals(cloud: Cloud, deps: Wired) -> None:  # noqa: F811
    # Given a task whose load of chunk 2 failed for the last time on a connection error, and another whose
    # transform of chunk 0 failed on something unexpected
    task_id = _submit(cloud, deps)
    other_id = _submit(cloud, deps)
    connection_error = LoadFailed(
        'cannot connect to the warehouse: connection to server at "10.0.3.7" (10.0.3.7), port 5432 failed: '
        'FATAL:  password authentication failed for user "busline_load"'
    )
    detail = ChunkTransformed(taskId=task_id, chunk=2, key="k", rows=1)
    # When each last delivery's failure is recorded
    etl_steps.record_final_failure(detail, connection_error, deps.load)
    etl_steps.record_final_failure(
        ChunkExtracted(taskId=other_id, chunk=0, key="k", rows=1), KeyError("/var/task/secret"), deps.transform
    )
    # Then the owner reads what failed, without the server, the role or the exception's text
    error = task_api.get_task(task_id, "ana", deps.api).error
    assert error is not None
    assert error.message == (
        "LoadFailed: cannot connect to the warehouse: connection to server failed: "
        "FATAL:  password authentication failed for user <hidden>"
    )
    other = task_api.get_task(other_id, "ana", deps.api).error
    assert other is not None
    assert other.message == "internal error (KeyError); the logs have the details under this task's id"
