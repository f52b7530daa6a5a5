"""The steps end to end on moto (S3, DynamoDB, EventBridge -> SQS capture, SNS -> SQS capture), with an
in-memory stand-in for the Postgres warehouse only."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from boto3.dynamodb.types import TypeSerializer
from busline_core import correlation, etl_steps, progress, task_api
from busline_core.bus import EventPublisher
from busline_core.contracts import (
    ChunkExtracted,
    ChunkTransformed,
    PhaseCompleted,
    TaskFinished,
    TaskStatus,
    TaskSubmitted,
)
from busline_core.dead_letters import DeadLetterQueues
from busline_core.deps import WarmCache
from busline_core.errors import (
    ChunkFailed,
    InvalidTask,
    LoadFailed,
    PublishFailed,
    TaskNotCancellable,
    TaskNotFound,
)
from busline_core.watchdog import watchdog

from .conftest import BUCKET, Clock, Cloud, FakeWarehouse, RecordingPusher, Wired, wire

ROWS = 250  # chunkRows 100 -> chunks of 100, 100, 50
# Row i: dep_time NA when i % 10 == 0 (filtered: 25), carrier ZZ (no such carrier) when i % 25 == 1
# (rejected by the required join: 10), amount "oops" when i % 50 == 7 (rejected by the cast: 5).
FILTERED, REJECTED = 25, 15
LOADED = ROWS - FILTERED - REJECTED


def _flights_csv(rows: int) -> str:
    lines = ["id,carrier,dep_time,amount"]
    for i in range(1, rows + 1):
        carrier = "ZZ" if i % 25 == 1 else ("AA" if i % 2 else "BB")
        dep_time = "NA" if i % 10 == 0 else str(600 + i)
        amount = "oops" if i % 50 == 7 else f"{i}.50"
        lines.append(f"{i},{carrier},{dep_time},{amount}")
    return "\n".join(lines) + "\n"


def _spec(source_key: str = "uploads/ana/flights.csv") -> dict[str, Any]:
    return {
        "source": {"uri": f"s3://{BUCKET}/{source_key}", "format": "csv"},
        "columns": [
            {"name": "id", "type": "int", "required": True},
            {"name": "carrier", "type": "string", "required": True},
            {"name": "dep_time", "type": "int"},
            {"name": "amount", "type": "decimal"},
        ],
        "filters": [{"column": "dep_time", "op": "not_null"}],
        "joins": [
            {
                "name": "carriers",
                "uri": f"s3://{BUCKET}/shared/ref/carriers.csv",
                "on": {"carrier": "code"},
                "columns": [{"name": "name", "as": "carrier_name"}],
                "required": True,
            }
        ],
        "target": {"table": "flights", "key": ["id"]},
        "chunkRows": 100,
    }


@pytest.fixture
def deps(cloud: Cloud, clock: Clock, warehouse: FakeWarehouse, pusher: RecordingPusher) -> Wired:
    cloud.s3.put_object(Bucket=BUCKET, Key="uploads/ana/flights.csv", Body=_flights_csv(ROWS).encode())
    cloud.s3.put_object(Bucket=BUCKET, Key="shared/ref/carriers.csv", Body=b"code,name\nAA,American\nBB,Blue Sky\n")
    return wire(cloud, clock, warehouse, pusher)


def _committing_chunks(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec with target.commit "chunk": load's completion is the task's success, no merge after it."""
    return {**spec, "target": {**spec["target"], "commit": "chunk"}}


def _of_type(events: list[dict[str, Any]], detail_type: str) -> list[dict[str, Any]]:
    return [event["detail"] for event in events if event["detail-type"] == detail_type]


SUBMITTING_REQUEST = "req-ana-1"  # the correlation id the API binds for the request that submits (correlation.py)


def _submit(cloud: Cloud, deps: Wired, spec: dict[str, Any] | None = None) -> str:
    correlation.bind(SUBMITTING_REQUEST)
    snapshot = task_api.submit_task(spec or _spec(), "ana", deps.api)
    cloud.published_events()  # the TaskSubmitted: tested on its own
    return snapshot.taskId


def _run(cloud: Cloud, deps: Wired, task_id: str, deliveries: int = 1) -> list[dict[str, Any]]:
    """Drive extract -> transform -> load as the queues would, each record delivered `deliveries` times."""
    seen: list[dict[str, Any]] = []
    for _ in range(deliveries):
        etl_steps.run_step(etl_steps.extract_task, TaskSubmitted(taskId=task_id), deps.extract)
    events = cloud.published_events()
    seen += events
    for detail in _of_type(events, "ChunkExtracted"):
        for _ in range(deliveries):
            etl_steps.run_step(etl_steps.transform_chunk, ChunkExtracted.model_validate(detail), deps.transform)
    events = cloud.published_events()
    seen += events
    for detail in _of_type(events, "ChunkTransformed"):
        for _ in range(deliveries):
            etl_steps.run_step(etl_steps.load_chunk, ChunkTransformed.model_validate(detail), deps.load)
    seen += cloud.published_events()
    # load's completion (an empty source completes it in extract): the commit of a task whose chunks
    # were staged (LoadCompletedRule)
    for detail in _of_type(seen, "PhaseCompleted"):
        if detail["phase"] == "load":
            for _ in range(deliveries):
                etl_steps.run_step(etl_steps.load_step, PhaseCompleted.model_validate(detail), deps.load)
    seen += cloud.published_events()
    return seen


# --- submit ---------------------------------------------------------------------------------------


def test_submit_records_the_task_and_publishes_exactly_one_task_submitted(cloud: Cloud, deps: Wired) -> None:
    # Given an ad hoc spec / When it is submitted
    snapshot = task_api.submit_task(_spec(), "ana", deps.api)
    # Then the task is ACCEPTED and one TaskSubmitted went out for it
    assert snapshot.status is TaskStatus.ACCEPTED
    assert snapshot.pipeline == "adhoc"
    assert cloud.task_count() == 1
    events = cloud.published_events()
    assert [(event["source"], event["detail-type"], event["detail"]) for event in events] == [
        ("busline", "TaskSubmitted", {"taskId": snapshot.taskId, "staging": None, "reading": None, "correlationId": None})
    ]


def test_submit_of_a_named_pipeline_expands_it(cloud: Cloud, deps: Wired) -> None:
    # Given the flights pipeline with a custom table / When submitted
    snapshot = task_api.submit_task({"pipeline": "flights", "params": {"table": "flights_test"}}, "ana", deps.api)
    # Then the stored spec is the expanded one, reading from the data bucket
    state = deps.api.tasks.get(snapshot.taskId)
    assert state is not None
    assert snapshot.pipeline == "flights"
    assert f'"uri":"s3://{BUCKET}/shared/nycflights13/flights.csv.zip"' in state.spec_json
    assert '"table":"flights_test"' in state.spec_json
    assert len(cloud.published_events()) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**_spec(), "source": {"uri": "ftp://example.com/x.csv", "format": "csv"}}, "source.uri"),
        ({**_spec(), "target": {"table": "flights", "key": ["nope"]}}, ""),
        ({**_spec(), "chunkRows": 5}, "chunkRows"),
        ({"pipeline": "nope"}, "pipeline"),
        ({"pipeline": "flights", "params": {"table": "Bad-Name"}}, "params.table"),
    ],
)
def test_an_invalid_request_raises_invalid_task_and_records_nothing(
    cloud: Cloud, deps: Wired, body: dict[str, Any], field: str
) -> None:
    # Given a request with one bad field / When it is submitted
    with pytest.raises(InvalidTask) as raised:
        task_api.submit_task(body, "ana", deps.api)
    # Then the error names the field, and nothing was recorded or published
    fields = [entry["field"] for entry in raised.value.errors]
    assert len(fields) == 1
    if field:
        assert fields == [field]
    else:
        assert "target.key[0]" in raised.value.message
    assert cloud.task_count() == 0
    assert cloud.published_events() == []


# --- the pipeline ---------------------------------------------------------------------------------


def test_a_small_csv_goes_through_all_steps_with_exact_counts(
    cloud: Cloud, deps: Wired, warehouse: FakeWarehouse
) -> None:
    # Given a submitted task over 250 rows (3 chunks)
    task_id = _submit(cloud, deps)
    # When extract, transform and load run for every chunk
    events = _run(cloud, deps, task_id)
    # Then the task SUCCEEDED with exact counts, and each phase completed once
    snapshot = task_api.get_task(task_id, "ana", deps.api)
    assert snapshot.status is TaskStatus.SUCCEEDED
    assert snapshot.counts.model_dump() == {
        "read": ROWS,
        "filtered": FILTERED,
        "rejected": REJECTED,
        "loaded": LOADED,
        "deleted": 0,
    }
    assert {name: phase.model_dump() for name, phase in snapshot.phases} == {
        "extract": {"done": 3, "total": 3, "status": "completed"},
        "transform": {"done": 3, "total": 3, "status": "completed"},
        "load": {"done": 3, "total": 3, "status": "completed"},
    }
    assert sorted(snapshot.timings) == ["extract", "load", "transform"]
    assert len(_of_type(events, "ChunkExtracted")) == 3
    assert len(_of_type(events, "ChunkTransformed")) == 3
    assert [detail["phase"] for detail in _of_type(events, "PhaseCompleted")] == [
        "extract",
        "transform",
        "load",
    ]
    succeeded = _of_type(events, "TaskSucceeded")
    cost = [detail.pop("cost") for detail in succeeded]
    assert succeeded == [
        {
            "taskId": task_id,
            "status": "SUCCEEDED",
            "counts": {"read": ROWS, "filtered": FILTERED, "rejected": REJECTED, "loaded": LOADED, "deleted": 0},
            "error": None,
            "correlationId": SUBMITTING_REQUEST,
            "pipeline": "adhoc",
            "durationSeconds": 0.0,  # the test's clock stands still
            "scheduledBy": None,
            "retried": None,
        }
    ]
    # with what was counted (here, where the steps run without their SQS handler: the submitting request,
    # its PutItem and PutEvents, and the first write after it)
    assert [(entry["requests"], sorted(entry["byService"])) for entry in cost] == [
        (4, ["dynamodb", "eventbridge", "lambda"])
    ]
    assert [note["status"] for note in cloud.notifications()] == ["SUCCEEDED"]
    # And the warehouse holds the typed, joined rows
    table = warehouse.tables["flights"]
    assert len(table) == LOADED
    assert table[(2,)] == {
        "id": 2,
        "carrier": "BB",
        "dep_time": 602,
        "amount": "2.50",
        "carrier_name": "Blue Sky",
    }
    assert warehouse.ensure_calls == 1
    # And it was loaded as the submitter's table, and nobody else's
    assert warehouse.owners == {"flights": {"ana"}}


def test_a_source_limit_reads_only_the_first_rows(cloud: Cloud, deps: Wired, warehouse: FakeWarehouse) -> None:
    # Given a task over the same 250 rows whose source says limit 120
    spec = _spec()
    spec["source"]["limit"] = 120
    task_id = _submit(cloud, deps, spec)
    # When every step runs
    _run(cloud, deps, task_id)
    # Then only rows 1..120 were read: 12 without dep_time, carrier ZZ in rows 1, 26, 51, 76, 101 and
    # "oops" amounts in rows 7, 57, 107 (8 rejected), in 2 chunks of at most 100
    snapshot = task_api.get_task(task_id, "ana", deps.api)
    assert snapshot.status is TaskStatus.SUCCEEDED
    assert snapshot.counts.model_dump() == {"read": 120, "filtered": 12, "rejected": 8, "loaded": 100, "deleted": 0}
    assert snapshot.phases.extract.total == 2
    assert max(key for (key,) in warehouse.tables["flights"]) == 119  # row 120 has no dep_time


def test_duplicate_delivery_of_every_step_changes_nothing(
    cloud: Cloud, deps: Wired, warehouse: FakeWarehouse
) -> None:
    # Given a submitted task
    task_id = _submit(cloud, deps)
    # When every record is delivered twice (extract, each transform, each load)
    events = _run(cloud, deps, task_id, deliveries=2)
    # Then the counts are those of a single run, and every completion happened once
    snapshot = task_api.get_task(task_id, "ana", deps.api)
    assert snapshot.status is TaskStatus.SUCCEEDED
    assert snapshot.counts.model_dump() == {
        "read": ROWS,
        "filtered": FILTERED,
        "rejected": REJECTED,
        "loaded": LOADED,
        "deleted": 0,
    }
    assert snapshot.phases.transform.done == 3
    assert snapshot.phases.load.done == 3
    assert [detail["phase"] for detail in _of_type(events, "PhaseCompleted")] == [
        "extract",
        "transform",
        "load",
    ]
    assert len(_of_type(events, "TaskSucceeded")) == 1
    assert len(cloud.notifications()) == 1
    assert len(warehouse.tables["flights"]) == LOADED
    assert len(warehouse.ledger) == 3


def test_rejects_are_listed_page_by_page(cloud: Cloud, deps: Wired) -> None:
    # Given a finished task with 15 rejected rows
    task_id = _submit(cloud, deps)
    _run(cloud, deps, task_id)
    # When its rejects are read 10 at a time
    first = task_api.list_rejects(task_id, "ana", 10, None, deps.api)
    second = task_api.list_rejects(task_id, "ana", 10, first.nextToken, deps.api)
    # Then 10 + 5 come back, in row order, with the reasons named
    assert len(first.items) == 10
    assert first.nextToken is not None
    assert len(second.items) == 5
    assert second.nextToken is None
    rows = [item.row for item in first.items + second.items]
    assert rows == sorted(rows)
    assert first.items[0].model_dump() == {
        "row": 1,
        "reason": "join carriers: no match for carrier=ZZ",
        "data": {"id": "1", "carrier": "ZZ", "dep_time": "601", "amount": "1.50"},
        "at": None,  # a row number says where it is
    }
    assert first.items[1].row == 7
    assert first.items[1].reason.startswith("column amount:")


def test_list_tasks_pages_newest_first(cloud: Cloud, deps: Wired, clock: Clock) -> None:
    # Given three tasks submitted a second apart
    ids = []
    for _ in range(3):
        ids.append(_submit(cloud, deps))
        clock.now += timedelta(seconds=1)
    # When listed two per page / Then newest first, 2 + 1
    first = task_api.list_tasks("ana", 2, None, deps.api)
    second = task_api.list_tasks("ana", 2, first.nextToken, deps.api)
    assert [item.taskId for item in first.items + second.items] == ids[::-1]
    assert second.nextToken is None


def test_a_source_without_rows_succeeds_with_zeros(cloud: Cloud, deps: Wired) -> None:
    # Given a CSV with only a header
    cloud.s3.put_object(Bucket=BUCKET, Key="uploads/ana/empty.csv", Body=b"id,carrier,dep_time,amount\n")
    task_id = _submit(cloud, deps, _spec("uploads/ana/empty.csv"))
    # When extract runs / Then the task SUCCEEDED at once, with zero counts and zero chunks
    events = _run(cloud, deps, task_id)
    snapshot = task_api.get_task(task_id, "ana", deps.api)
    assert snapshot.status is TaskStatus.SUCCEEDED
    assert snapshot.counts.model_dump() == {"read": 0, "filtered": 0, "rejected": 0, "loaded": 0, "deleted": 0}
    assert snapshot.phases.load.model_dump() == {"done": 0, "total": 0, "status": "completed"}
    assert len(_of_type(events, "TaskSucceeded")) == 1
    assert _of_type(events, "ChunkExtracted") == []


def test_an_unreadable_source_fails_the_task_once(cloud: Cloud, deps: Wired) -> None:
    # Given a task whose source does not exist
    task_id = _submit(cloud, deps, _spec("uploads/ana/missing.csv"))
    # When extract runs (twice: a redelivery must not fail it again)
    events = _run(cloud, deps, task_id, deliveries=2)
    # Then the task is FAILED in extract, announced once
    snapshot = task_api.get_task(task_id, "ana", deps.api)
    assert snapshot.status is TaskStatus.FAILED
    assert snapshot.error is not None
    assert snapshot.error.phase.value == "extract"
    assert snapshot.error.chunk is None
    assert "uploads/ana/missing.csv" in snapshot.error.message
    assert snapshot.phases.extract.status == "failed"
    assert len(_of_type(events, "TaskFailed")) == 1
    assert [note["status"] for note in cloud.notifications()] == ["FAILED"]


def test_a_join_over_loopback_http_is_read_only_where_the_stack_enables_it(
    cloud: Cloud, deps: Wired, loopback_files: tuple[str, Path]
) -> None:
    # Given the carriers served over plain http on loopback, and the local cloud's setting in the API and
    # the transform function (which reads joins)
    base, folder = loopback_files
    (folder / "carriers.csv").write_bytes(b"code,name\nAA,American\nBB,Blue Sky\n")
    spec = _spec()
    spec["joins"][0]["uri"] = f"{base}/carriers.csv"
    deps.api.allow_loopback_http = deps.transform.allow_loopback_http = True
    task_id = _submit(cloud, deps, spec)
    # When every step runs / Then it ends exactly as with the join in S3
    _run(cloud, deps, task_id)
    snapshot = task_api.get_task(task_id, "ana", deps.api)
    assert snapshot.status is TaskStatus.SUCCEEDED
    assert snapshot.counts.model_dump() == {"read": ROWS, "filtered": FILTERED, "rejected": REJECTED, "loaded": LOADED, "deleted": 0}
    # Given a second task, and a transform container of a stack without the setting (defence in depth)
    second = _submit(cloud, deps, spec)
    deps.transform = dataclasses.replace(deps.transform, allow_loopback_http=False, cache=WarmCache())
    # When every step runs / Then the task fails in transform, saying why
    _run(cloud, deps, second)
    failed = task_api.get_task(second, "ana", deps.api)
    assert failed.status is TaskStatus.FAILED
    assert failed.error is not None and failed.error.phase.value == "transform"
    assert failed.error.message == (
        f"source {base}/carriers.csv is unreadable: plain http:// is not allowed on this stack; use https://"
    )
    assert failed.counts.loaded == 0


def test_a_chunk_that_fails_its_last_delivery_fails_the_task_until_replayed(cloud: Cloud, deps: Wired) -> None:
    # Given a task extracted into 3 chunks (committed chunk by chunk), with the fault switch on for transform
    task_id = _submit(cloud, deps, _committing_chunks(_spec()))
    etl_steps.extract_task(TaskSubmitted(taskId=task_id), deps.extract)
    extracted = [
        ChunkExtracted.model_validate(d) for d in _of_type(cloud.published_events(), "ChunkExtracted")
    ]
    deps.transform.faults = lambda: frozenset({"transform:fail"})
    # When chunk 1 fails (its last delivery: the handler records the final failure)
    with pytest.raises(ChunkFailed) as raised:
        etl_steps.transform_chunk(extracted[1], deps.transform)
    assert etl_steps.record_final_failure(extracted[1], raised.value, deps.transform) is True
    # Then the task is FAILED naming transform chunk 1, and TaskFailed went out once
    failed = task_api.get_task(task_id, "ana", deps.api)
    assert failed.status is TaskStatus.FAILED
    assert failed.error is not None and (failed.error.phase.value, failed.error.chunk) == ("transform", 1)
    assert "fault switch" in failed.error.message
    assert len(_of_type(cloud.published_events(), "TaskFailed")) == 1
    # When the switch is off, the other chunks run, and the DLQ message of chunk 1 is replayed
    deps.transform.faults = lambda: frozenset()
    for chunk in (extracted[0], extracted[2], extracted[1]):
        etl_steps.transform_chunk(chunk, deps.transform)
    for transformed in _of_type(cloud.published_events(), "ChunkTransformed"):
        etl_steps.load_chunk(ChunkTransformed.model_validate(transformed), deps.load)
    # Then the task SUCCEEDED with the full counts and no error
    snapshot = task_api.get_task(task_id, "ana", deps.api)
    assert snapshot.status is TaskStatus.SUCCEEDED
    assert snapshot.error is None
    assert snapshot.counts.loaded == LOADED
    assert [note["status"] for note in cloud.notifications()] == ["FAILED", "SUCCEEDED"]


def test_watchdog_fails_only_stalled_tasks(cloud: Cloud, deps: Wired, clock: Clock) -> None:
    # Given a task idle since 10:00:00 and one that moved at 10:04:50
    stalled = _submit(cloud, deps)
    clock.now += timedelta(seconds=290)
    fresh = _submit(cloud, deps)
    # When the watchdog runs at 10:05:01 with STALL_SECONDS 300
    clock.now += timedelta(seconds=11)
    assert watchdog(deps.watchdog) == 1
    # Then only the idle one FAILED, with a message saying where and for how long
    snapshot = task_api.get_task(stalled, "ana", deps.api)
    assert snapshot.status is TaskStatus.FAILED
    assert snapshot.error is not None
    assert snapshot.error.message == "stalled in extract: no progress for 301 s"
    assert task_api.get_task(fresh, "ana", deps.api).status is TaskStatus.ACCEPTED
    assert len(_of_type(cloud.published_events(), "TaskFailed")) == 1


def test_watchdog_fails_a_task_whose_message_was_dead_lettered_without_telling_it(
    cloud: Cloud, deps: Wired
) -> None:
    # Given two active tasks and, in a transform DLQ, a message of the first one (its last delivery
    # died before the handler ran) plus a message that is not a Busline event
    dead = _submit(cloud, deps)
    alive = _submit(cloud, deps)
    dlq_url = cloud.sqs.create_queue(QueueName="transform-dlq")["QueueUrl"]
    body = {"detail-type": "ChunkExtracted", "detail": {"taskId": dead, "phase": "transform", "chunk": 3, "key": "k", "rows": 1}}
    cloud.sqs.send_message(QueueUrl=dlq_url, MessageBody=json.dumps(body))
    cloud.sqs.send_message(QueueUrl=dlq_url, MessageBody="not json")
    deps.watchdog.dead_letters = DeadLetterQueues(cloud.sqs, [dlq_url])
    # When the watchdog runs (long before STALL_SECONDS)
    assert watchdog(deps.watchdog) == 1
    # Then that task is FAILED naming the phase and chunk, the other one is untouched
    snapshot = task_api.get_task(dead, "ana", deps.api)
    assert snapshot.status is TaskStatus.FAILED
    assert snapshot.error is not None
    assert (snapshot.error.phase, snapshot.error.chunk) == ("transform", 3)
    assert snapshot.error.message.startswith("dead-lettered after 1 deliveries")
    assert task_api.get_task(alive, "ana", deps.api).status is TaskStatus.ACCEPTED
    assert len(_of_type(cloud.published_events(), "TaskFailed")) == 1
    # And both messages are still in the DLQ, visible, for `busline dlq replay`
    attributes = cloud.sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["All"])["Attributes"]
    assert (attributes["ApproximateNumberOfMessages"], attributes["ApproximateNumberOfMessagesNotVisible"]) == ("2", "0")
    # And a second run fails nothing more
    assert watchdog(deps.watchdog) == 0


# --- progress -------------------------------------------------------------------------------------


def _stream_image(item: dict[str, Any]) -> dict[str, Any]:
    serializer = TypeSerializer()
    return {name: serializer.serialize(value) for name, value in item.items()}


def test_push_progress_coalesces_a_batch_to_one_push_per_connection(
    cloud: Cloud, deps: Wired, pusher: RecordingPusher
) -> None:
    # Given ana's task with two of her connections subscribed, one gone connection, one watching another
    # task, and a stray row of bob's connection on her task (subscribe refuses that; a push must too)
    task_id = _submit(cloud, deps)
    for connection_id in ("c1", "c2", "gone"):
        deps.connections.connections.add(connection_id, "ana", task_id)
    deps.connections.connections.add("elsewhere", "ana", "another-task")
    deps.connections.connections.add("bobs", "bob", task_id)
    pusher.gone.add("gone")
    item = cloud.tasks_table.get_item(Key={"taskId": task_id})["Item"]
    # When a stream batch carries 50 images of that task
    images = [_stream_image({**item, "updatedAtMs": int(item["updatedAtMs"]) + n}) for n in range(50)]
    sent = progress.push_progress(images, deps.stream)
    # Then each of ana's live connections got exactly one message, the newest snapshot; bob's got nothing,
    # and the gone one was dropped
    assert sent == 2
    assert sorted(connection_id for connection_id, _ in pusher.pushes) == ["c1", "c2"]
    assert {payload["updatedAtMs"] for _, payload in pusher.pushes} == {int(item["updatedAtMs"]) + 49}
    assert sorted(s.connection_id for s in deps.connections.connections.for_task(task_id)) == ["bobs", "c1", "c2"]


def test_subscribe_pushes_the_current_snapshot_or_an_error(
    cloud: Cloud, deps: Wired, pusher: RecordingPusher
) -> None:
    # Given ana's task, ana connected as c1 and bob as c2
    task_id = _submit(cloud, deps)
    progress.connect("c1", "ana", deps.connections)
    progress.connect("c2", "bob", deps.connections)
    # When ana subscribes to it, then to an unknown task, and bob subscribes to ana's task
    assert progress.subscribe("c1", "ana", task_id, deps.connections) is True
    assert progress.subscribe("c1", "ana", "no-such-task", deps.connections) is False
    assert progress.subscribe("c2", "bob", task_id, deps.connections) is False
    # Then ana got the snapshot at once, then an error naming the task; bob got exactly the answer of a
    # task that does not exist
    assert [(connection, payload.get("taskId")) for connection, payload in pusher.pushes] == [
        ("c1", task_id), ("c1", None), ("c2", None)
    ]
    assert pusher.pushes[0][1]["status"] == "ACCEPTED"
    assert pusher.pushes[1][1] == {"error": "task no-such-task not found"}
    assert pusher.pushes[2][1] == {"error": f"task {task_id} not found"}
    assert deps.connections.connections.for_task(task_id) == [("c1", "ana")]
    # When ana disconnects / Then nobody is subscribed
    progress.disconnect("c1", deps.connections)
    assert deps.connections.connections.for_task(task_id) == []


class _FlakyWarehouse(FakeWarehouse):
    """Fails the first load as if the table had been dropped behind the warm container's back."""

    failures_left: int = 1

    def load_chunk(self, *args: Any, **kwargs: Any) -> Any:
        if self.failures_left:
            self.failures_left -= 1
            raise LoadFailed('relation "t_0123456789abcdef01234567.flights" does not exist')
        return super().load_chunk(*args, **kwargs)


def test_a_failed_load_ensures_the_table_again_on_the_retry(cloud: Cloud, deps: Wired) -> None:
    # Given a warehouse whose first load fails
    flaky = _FlakyWarehouse()
    deps.load.warehouse_factory = lambda: flaky
    task_id = _submit(cloud, deps)
    etl_steps.extract_task(TaskSubmitted(taskId=task_id), deps.extract)
    for detail in _of_type(cloud.published_events(), "ChunkExtracted"):
        etl_steps.transform_chunk(ChunkExtracted.model_validate(detail), deps.transform)
    first = ChunkTransformed.model_validate(_of_type(cloud.published_events(), "ChunkTransformed")[0])
    # When the load fails, then is retried
    with pytest.raises(LoadFailed):
        etl_steps.load_chunk(first, deps.load)
    assert etl_steps.load_chunk(first, deps.load) == first.rows
    # Then the retry ensured the table again before loading
    assert flaky.ensure_calls == 2
    assert task_api.get_task(task_id, "ana", deps.api).phases.load.done == 1


class _PublisherFailingOnce:
    """Wraps the real publisher; refuses the first batch that carries `detail_type`."""

    def __init__(self, inner: EventPublisher, detail_type: str) -> None:
        self.inner = inner
        self.detail_type = detail_type
        self.refused = 0

    def publish(self, detail_type: str, detail: Any) -> None:
        self.publish_many([(detail_type, detail)])

    def publish_many(self, events: Any) -> int:
        events = list(events)
        if not self.refused and any(detail_type == self.detail_type for detail_type, _ in events):
            self.refused += 1
            raise PublishFailed(f"EventBridge refused {self.detail_type}")
        return self.inner.publish_many(events)


def test_a_lost_task_succeeded_is_announced_by_the_redelivery(cloud: Cloud, deps: Wired) -> None:
    # Given a task committed chunk by chunk whose TaskSucceeded cannot be published the first time
    task_id = _submit(cloud, deps, _committing_chunks(_spec()))
    deps.load.lifecycle.publisher = _PublisherFailingOnce(deps.load.lifecycle.publisher, "TaskSucceeded")  # type: ignore[assignment]
    etl_steps.extract_task(TaskSubmitted(taskId=task_id), deps.extract)
    for detail in _of_type(cloud.published_events(), "ChunkExtracted"):
        etl_steps.transform_chunk(ChunkExtracted.model_validate(detail), deps.transform)
    transformed = [
        ChunkTransformed.model_validate(d) for d in _of_type(cloud.published_events(), "ChunkTransformed")
    ]
    etl_steps.load_chunk(transformed[0], deps.load)
    etl_steps.load_chunk(transformed[1], deps.load)
    # When the last load completes the task but the announcement fails, and SQS redelivers that load
    with pytest.raises(PublishFailed):
        etl_steps.load_chunk(transformed[2], deps.load)
    assert task_api.get_task(task_id, "ana", deps.api).status is TaskStatus.SUCCEEDED
    etl_steps.load_chunk(transformed[2], deps.load)
    # Then TaskSucceeded went out exactly once, and the counts are unchanged
    events = cloud.published_events()
    assert len(_of_type(events, "TaskSucceeded")) == 1
    assert [note["status"] for note in cloud.notifications()] == ["SUCCEEDED"]
    assert task_api.get_task(task_id, "ana", deps.api).counts.loaded == LOADED
    # And a further redelivery announces nothing more
    etl_steps.load_chunk(transformed[2], deps.load)
    assert _of_type(cloud.published_events(), "TaskSucceeded") == []


def test_a_lost_task_succeeded_after_the_merge_is_announced_by_the_redelivered_commit(
    cloud: Cloud, deps: Wired, warehouse: FakeWarehouse
) -> None:
    # Given a task committing "task" whose TaskSucceeded cannot be published the first time
    task_id = _submit(cloud, deps)
    deps.load.lifecycle.publisher = _PublisherFailingOnce(deps.load.lifecycle.publisher, "TaskSucceeded")  # type: ignore[assignment]
    etl_steps.extract_task(TaskSubmitted(taskId=task_id), deps.extract)
    for detail in _of_type(cloud.published_events(), "ChunkExtracted"):
        etl_steps.transform_chunk(ChunkExtracted.model_validate(detail), deps.transform)
    for detail in _of_type(cloud.published_events(), "ChunkTransformed"):
        etl_steps.load_chunk(ChunkTransformed.model_validate(detail), deps.load)
    # Then every chunk is staged and none is in the target yet: the task is COMMITTING
    assert task_api.get_task(task_id, "ana", deps.api).status is TaskStatus.COMMITTING
    assert warehouse.tables["flights"] == {}
    completed = [
        PhaseCompleted.model_validate(detail)
        for detail in _of_type(cloud.published_events(), "PhaseCompleted")
        if detail["phase"] == "load"
    ]
    assert len(completed) == 1
    # When the commit merges but its announcement fails, and SQS redelivers the commit twice
    with pytest.raises(PublishFailed):
        etl_steps.load_step(completed[0], deps.load)
    assert task_api.get_task(task_id, "ana", deps.api).status is TaskStatus.SUCCEEDED
    etl_steps.load_step(completed[0], deps.load)
    etl_steps.load_step(completed[0], deps.load)
    # Then the rows arrived once, TaskSucceeded went out exactly once, with the merge's counts
    assert len(warehouse.tables["flights"]) == LOADED
    assert warehouse.commit_calls == 1
    assert len(_of_type(cloud.published_events(), "TaskSucceeded")) == 1
    assert [note["status"] for note in cloud.notifications()] == ["SUCCEEDED"]
    snapshot = task_api.get_task(task_id, "ana", deps.api)
    assert (snapshot.counts.loaded, snapshot.committedAt is not None) == (LOADED, True)


def test_a_cancelled_task_stops_and_its_staged_chunks_are_thrown_away(
    cloud: Cloud, deps: Wired, warehouse: FakeWarehouse
) -> None:
    # Given a task with its 3 chunks transformed and one of them staged
    task_id = _submit(cloud, deps)
    etl_steps.extract_task(TaskSubmitted(taskId=task_id), deps.extract)
    for detail in _of_type(cloud.published_events(), "ChunkExtracted"):
        etl_steps.transform_chunk(ChunkExtracted.model_validate(detail), deps.transform)
    transformed = [ChunkTransformed.model_validate(d) for d in _of_type(cloud.published_events(), "ChunkTransformed")]
    etl_steps.load_chunk(transformed[0], deps.load)
    # When its owner cancels it
    cancelled = task_api.cancel_task(task_id, "ana", deps.api)
    # Then it is CANCELLED at once, and TaskCancelled went out with the counts so far
    assert cancelled.status is TaskStatus.CANCELLED
    events = cloud.published_events()
    assert [(event["detail-type"], event["detail"]["status"]) for event in events] == [("TaskCancelled", "CANCELLED")]
    # And the chunks still in flight are dropped without work
    assert etl_steps.load_chunk(transformed[1], deps.load) == 0
    # When the load step gets TaskCancelled (twice: at least once)
    cancel = TaskFinished.model_validate(events[0]["detail"])
    etl_steps.load_step(cancel, deps.load)
    etl_steps.load_step(cancel, deps.load)
    # Then the staged rows are gone, the target untouched, the chunks deleted, the owner notified once
    assert (warehouse.staged, warehouse.tables["flights"]) == ({}, {})
    assert cloud.s3.list_objects_v2(Bucket=BUCKET, Prefix=f"tasks/{task_id}/transform/").get("KeyCount") == 0
    assert cloud.s3.list_objects_v2(Bucket=BUCKET, Prefix=f"tasks/{task_id}/extract/").get("KeyCount") == 0
    assert [note["status"] for note in cloud.notifications()] == ["CANCELLED"]
    assert cloud.published_events() == []
    # And a second cancel is refused as the task is no longer running
    with pytest.raises(TaskNotCancellable):
        task_api.cancel_task(task_id, "ana", deps.api)
    # And another owner cannot even see it
    with pytest.raises(TaskNotFound):
        task_api.cancel_task(task_id, "bob", deps.api)


def test_a_failed_delivery_is_shown_as_retrying_until_its_chunk_is_counted(cloud: Cloud, deps: Wired) -> None:
    # Given a task extracted into 3 chunks, and a transform of chunk 1 that failed on its first delivery
    task_id = _submit(cloud, deps)
    etl_steps.extract_task(TaskSubmitted(taskId=task_id), deps.extract)
    extracted = [ChunkExtracted.model_validate(d) for d in _of_type(cloud.published_events(), "ChunkExtracted")]
    etl_steps.record_retry(extracted[1], ChunkFailed("a blip"), 1, 2, deps.transform)
    # Then the snapshot names the chunk, the attempt, the error and when it is tried again
    retrying = task_api.get_task(task_id, "ana", deps.api).retrying
    assert [notice.model_dump() for notice in retrying] == [
        {"phase": "transform", "chunk": 1, "attempt": 1, "error": "ChunkFailed: a blip",
         "retryAt": "2026-11-22T10:00:02.000Z"}
    ]  # fmt: skip
    # When the chunk then succeeds / Then the notice is gone
    etl_steps.transform_chunk(extracted[1], deps.transform)
    assert task_api.get_task(task_id, "ana", deps.api).retrying == []


def test_the_rejects_summary_groups_the_owners_rejects_by_reason_with_the_values_at_fault(
    cloud: Cloud, deps: Wired
) -> None:
    # Given a finished task with 10 rows of carrier ZZ (no such carrier) and 5 of amount "oops"
    task_id = _submit(cloud, deps)
    _run(cloud, deps, task_id)
    # When its owner asks for the summary, and someone else
    summary = task_api.summarize_rejects(task_id, "ana", deps.api)
    # Then the groups come most rows first, each with its values at fault
    assert summary.model_dump() == {
        "total": REJECTED,
        "summarized": REJECTED,
        "complete": True,
        "groups": [
            {"reason": "join carriers: no match for carrier", "rows": 10, "values": [{"value": "ZZ", "rows": 10}]},
            {"reason": "column amount: not a valid decimal", "rows": 5, "values": [{"value": "'oops'", "rows": 5}]},
        ],
    }
    with pytest.raises(TaskNotFound):
        task_api.summarize_rejects(task_id, "bob", deps.api)


# --- rows offered again (a schedule's retryRejects) -------------------------------------------------


def test_a_run_offers_the_previous_runs_rejects_first_and_counts_them_apart(
    cloud: Cloud, deps: Wired, warehouse: FakeWarehouse
) -> None:
    # Given a finished run of 250 rows that rejected 15 (10 for carrier ZZ, 5 for an amount "oops")
    spec = _committing_chunks(_spec())
    previous_id = _submit(cloud, deps, spec)
    _run(cloud, deps, previous_id)
    assert task_api.get_task(previous_id, "ana", deps.api).counts.rejected == REJECTED
    # and carrier ZZ is now known
    cloud.s3.put_object(Bucket=BUCKET, Key="shared/ref/carriers.csv",
                        Body=b"code,name\nAA,American\nBB,Blue Sky\nZZ,Zed Air\n")  # fmt: skip
    # When the next run (the same source) is submitted offering them again
    correlation.bind(SUBMITTING_REQUEST)
    task_id = task_api.submit_task(spec, "ana", deps.api, retry_of=previous_id).taskId
    cloud.published_events()
    events = _run(cloud, deps, task_id)
    # Then the 15 rows came as one chunk before the source's three, numbered from 0, and the source's rows
    # kept their own row numbers
    extracted = _of_type(events, "ChunkExtracted")
    assert [(detail["chunk"], detail["offeredAgain"], detail["firstRow"], detail["rows"]) for detail in extracted] == [
        (0, True, None, 15), (1, False, 1, 100), (2, False, 101, 100), (3, False, 201, 50),
    ]  # fmt: skip
    snapshot = task_api.get_task(task_id, "ana", deps.api)
    assert snapshot.status is TaskStatus.SUCCEEDED
    # And the source's counts are the source's alone: now only the 5 bad amounts are rejected
    assert snapshot.counts.model_dump() == {
        "read": ROWS, "filtered": FILTERED, "rejected": 5, "loaded": ROWS - FILTERED - 5, "deleted": 0,
    }  # fmt: skip
    # and of the 15 offered again, the 10 ZZ rows were recovered and the 5 bad amounts rejected again
    assert snapshot.retried is not None
    assert snapshot.retried.model_dump() == {"of": previous_id, "offered": 15, "recovered": 10, "rejectedAgain": 5}
    # which are kept as this run's rejects twice: as the source's (with their row) and as offered again
    rejects, _ = deps.api.chunks.iter_rejects(task_id, 100)
    assert [(reject.row, reject.at) for reject in rejects] == [(None, etl_steps.OFFERED_AGAIN_AT)] * 5 + [
        (row, None) for row in (7, 57, 107, 157, 207)
    ]
