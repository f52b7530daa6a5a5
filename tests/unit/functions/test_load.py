"""src/load/app.py: SQS (ChunkTransformed, then PhaseCompleted of load) -> the warehouse (a fake of its
Postgres part), counts, COMMITTING, then SUCCEEDED."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from busline_core import etl_steps
from busline_core.contracts import ChunkExtracted, LoadOutcome
from busline_core.deps import build_transform_deps
from busline_core.errors import LoadFailed, TargetRefused
from busline_core.settings import TransformSettings
from handler_kit import Cloud, FakeLambdaContext, event_file, extracted_task, of_type, sqs_event


@dataclass
class FakeWarehouse:
    """The load step's view of warehouse.Warehouse, with its ledger semantics, in memory."""

    ledger: dict[tuple[str, int], int] = field(default_factory=dict)
    rows: dict[Any, dict[str, Any]] = field(default_factory=dict)
    staged: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # commit "task": until the merge
    committed: dict[str, int] = field(default_factory=dict)
    ensured: list[tuple[str, str]] = field(default_factory=list)  # (owner, table)
    fail_with: str | None = None
    refuse_with: str | None = None  # the catalog's answer for a table the owner may not write

    def ensure_table(self, owner: str, target: Any, columns: list[Any]) -> None:
        if self.refuse_with:
            raise TargetRefused(self.refuse_with)
        self.ensured.append((owner, target.table))

    def load_chunk(
        self, task_id: str, chunk: int, owner: str, target: Any, columns: list[Any], table: pa.Table
    ) -> LoadOutcome:
        rows = table.to_pylist()  # a transformed chunk arrives as an Arrow table
        if self.fail_with:
            raise LoadFailed(self.fail_with)
        if (task_id, chunk) in self.ledger:
            return LoadOutcome(rows=self.ledger[(task_id, chunk)], already_loaded=True)
        self.staged.setdefault(task_id, []).extend(rows)
        self.ledger[(task_id, chunk)] = len(rows)
        return LoadOutcome(rows=len(rows), already_loaded=False)

    def commit_task(self, task_id: str, owner: str, target: Any, columns: list[Any]) -> LoadOutcome:
        if task_id in self.committed:
            return LoadOutcome(rows=self.committed[task_id], already_loaded=True)
        merged = {tuple(row[k] for k in target.key): row for row in self.staged.pop(task_id, [])}
        self.rows.update(merged)
        self.committed[task_id] = len(merged)
        return LoadOutcome(rows=len(merged), already_loaded=False)


def transformed_task(cloud: Cloud, handler: Any) -> tuple[str, list[dict[str, Any]], FakeWarehouse]:
    """A 250-row task extracted and transformed by the steps, with the handler's warehouse faked."""
    task_id, chunks = extracted_task(cloud)
    for chunk in chunks:
        etl_steps.transform_chunk(ChunkExtracted.model_validate(chunk["detail"]), build_transform_deps(TransformSettings()))
    warehouse = FakeWarehouse()
    handler.deps.warehouse_factory = lambda: warehouse
    return task_id, of_type(cloud.published(), "ChunkTransformed"), warehouse


def test_sample_event_parses_and_an_unknown_task_is_skipped(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext
) -> None:
    # Given the sample events/load_sqs.json, whose task does not exist here / When it is handled
    result = load_handler("load").lambda_handler(event_file("load_sqs.json"), context)
    # Then the record succeeds with nothing to do
    assert result == {"batchItemFailures": []}


def test_loads_each_chunk_once_and_the_task_succeeds_once(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext
) -> None:
    # Given a task transformed into 3 chunks (225 rows after 20 filtered and 5 rejected)
    load = load_handler("load")
    task_id, chunks, warehouse = transformed_task(cloud, load)
    assert len(chunks) == 3
    # When each ChunkTransformed record is handled, the last one twice (a redelivery)
    results = [load.lambda_handler(sqs_event("load_sqs.json", chunk), context) for chunk in chunks]
    results.append(load.lambda_handler(sqs_event("load_sqs.json", chunks[2], receive_count=2), context))
    # Then all succeeded, and the 225 rows are staged, none in the target: the task is COMMITTING
    assert results == [{"batchItemFailures": []}] * 4
    assert (len(warehouse.staged[task_id]), warehouse.rows) == (225, {})
    assert cloud.task(task_id)["status"] == "COMMITTING"
    # When load's PhaseCompleted (routed back to LoadQueue) is handled, twice
    completed = [event for event in of_type(cloud.published(), "PhaseCompleted") if event["detail"]["phase"] == "load"]
    assert len(completed) == 1
    commits = [load.lambda_handler(sqs_event("load_sqs.json", completed[0], receive_count=n), context) for n in (1, 2)]
    # Then the 225 distinct rows are in the warehouse at once, the table was ensured once, for the task's owner
    assert commits == [{"batchItemFailures": []}] * 2
    assert len(warehouse.rows) == 225
    assert warehouse.ensured == [(cloud.task(task_id)["owner"], "payments")]
    # And the task SUCCEEDED with exact counts, announced exactly once
    task = cloud.task(task_id)
    assert (task["status"], task["count_read"], task["count_filtered"], task["count_rejected"], task["count_loaded"]) == (
        "SUCCEEDED", 250, 20, 5, 225,
    )
    succeeded = of_type(cloud.published(), "TaskSucceeded")
    assert [e["detail"]["counts"] for e in succeeded] == [{"read": 250, "filtered": 20, "rejected": 5, "loaded": 225, "deleted": 0}]


def test_a_failing_load_is_reported_and_fails_the_task_on_its_last_delivery(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext
) -> None:
    # Given a transformed task and a warehouse that refuses the rows
    load = load_handler("load")
    task_id, chunks, warehouse = transformed_task(cloud, load)
    warehouse.fail_with = "payments: column amount: value too long"
    # When chunk 0 fails on an early delivery and on its last one
    early = sqs_event("load_sqs.json", chunks[0], receive_count=2)
    early_result = load.lambda_handler(early, context)
    status_after_early = cloud.task(task_id)["status"]
    last = sqs_event("load_sqs.json", chunks[0], receive_count=3)
    last_result = load.lambda_handler(last, context)
    # Then each reports exactly its message; the last one fails the task with the warehouse's words
    assert early_result == {"batchItemFailures": [{"itemIdentifier": early["Records"][0]["messageId"]}]}
    assert last_result == {"batchItemFailures": [{"itemIdentifier": last["Records"][0]["messageId"]}]}
    assert status_after_early == "LOADING"
    task = cloud.task(task_id)
    assert (task["status"], task["error"]["phase"], task["error"]["chunk"]) == ("FAILED", "load", 0)
    assert "value too long" in task["error"]["message"]
    assert len(of_type(cloud.published(), "TaskFailed")) == 1


def test_a_refused_target_fails_the_task_on_the_first_delivery(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext
) -> None:
    # Given a transformed task whose table exists in the owner's schema without being Busline's
    load = load_handler("load")
    task_id, chunks, warehouse = transformed_task(cloud, load)
    refusal = "table t_x.payments already exists, but Busline did not create it"
    warehouse.refuse_with = refusal
    # When chunk 0 is delivered for the first time
    result = load.lambda_handler(sqs_event("load_sqs.json", chunks[0], receive_count=1), context)
    # Then the record is done with (no redelivery can change the catalog), the task FAILED for good in
    # load with the refusal, announced once, and nothing was loaded
    assert result == {"batchItemFailures": []}
    task = cloud.task(task_id)
    assert (task["status"], task["error"]["phase"], task["error"]["message"]) == ("FAILED", "load", refusal)
    assert [e["detail"]["status"] for e in of_type(cloud.published(), "TaskFailed")] == ["FAILED"]
    assert warehouse.rows == {}
