"""The DynamoDB target (dynamo_target.py) through the real steps, on moto's DynamoDB: tenancy by the
table's busline:owner tag, upsert and delete with exact counts however often a chunk is delivered,
unprocessed items sent again, and the write pace."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import boto3
import pytest
from busline_core import etl_steps
from busline_core.contracts import ChunkTransformed, TaskStatus
from busline_core.dynamo_target import OWNER_TAG, DynamoTarget, _Pacer
from busline_core.spec import TargetSpec
from pydantic import ValidationError

from .conftest import REGION, Cloud, Wired
from .test_steps import LOADED, ROWS, _of_type, _run, _spec, _submit
from .test_steps import deps as deps  # noqa: F401 - the same wired steps and source files

# The loaded rows of test_steps' source: ids 1..250 but the filtered (i % 10 == 0) and rejected ones
# (i % 25 == 1: no such carrier; i % 50 == 7: amount "oops").
LOADED_IDS = [i for i in range(1, ROWS + 1) if i % 10 and i % 25 != 1 and i % 50 != 7]


def _dynamodb_spec(table: str = "ana-flights", mode: str = "upsert") -> dict[str, Any]:
    return {**_spec(), "target": {"kind": "dynamodb", "table": table, "key": ["id"], "mode": mode}}


def _create_table(name: str, owner: str | None, key_type: str = "N") -> Any:
    client = boto3.client("dynamodb", region_name=REGION)
    tags = [{"Key": OWNER_TAG, "Value": owner}] if owner else []
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": key_type}],
        BillingMode="PAY_PER_REQUEST",
        **({"Tags": tags} if tags else {}),
    )
    return boto3.resource("dynamodb", region_name=REGION).Table(name)


def _all_items(table: Any) -> list[dict[str, Any]]:
    return sorted(table.scan(ConsistentRead=True)["Items"], key=lambda item: int(item["id"]))


def test_loaded_ids_are_the_sources_rows_less_the_filtered_and_rejected() -> None:
    assert len(LOADED_IDS) == LOADED == 210


def test_upsert_puts_each_row_once_with_exact_counts_however_often_chunks_are_delivered(
    cloud: Cloud, deps: Wired
) -> None:
    # Given a table tagged for ana
    table = _create_table("ana-flights", "ana")
    task_id = _submit(cloud, deps, _dynamodb_spec())
    # When each record is delivered twice
    _run(cloud, deps, task_id, deliveries=2)
    # Then the task succeeded chunk by chunk with exact counts, and the table holds each loaded row
    final = deps.api.tasks.get(task_id)
    assert (final.status, final.counts.loaded, final.counts.deleted) == (TaskStatus.SUCCEEDED, 210, 0)
    items = _all_items(table)
    assert [int(item["id"]) for item in items] == LOADED_IDS
    assert items[0] == {
        "id": Decimal(2), "carrier": "BB", "dep_time": Decimal(602), "amount": Decimal("2.50"), "carrier_name": "Blue Sky"
    }


def test_delete_counts_only_the_keys_that_were_there_and_deletes_them_once(cloud: Cloud, deps: Wired) -> None:
    # Given a table of ana's holding ids 1..120 (of which 100 are among the task's loaded rows)
    table = _create_table("ana-flights", "ana")
    with table.batch_writer() as writer:
        for i in range(1, 121):
            writer.put_item(Item={"id": i, "note": "old"})
    present = len([i for i in LOADED_IDS if i <= 120])
    assert present == 100
    task_id = _submit(cloud, deps, _dynamodb_spec(mode="delete"))
    # When the delete task runs, each record delivered twice
    _run(cloud, deps, task_id, deliveries=2)
    # Then it deleted exactly those 100 (counted once), and the table keeps the 20 others
    final = deps.api.tasks.get(task_id)
    assert (final.status, final.counts.loaded, final.counts.deleted) == (TaskStatus.SUCCEEDED, 0, 100)
    assert [int(item["id"]) for item in _all_items(table)] == [i for i in range(1, 121) if i not in LOADED_IDS]


@pytest.mark.parametrize("table_name, owner", [("bob-flights", "bob"), ("untagged", None), ("missing", "-")])
def test_a_table_not_assigned_to_the_owner_fails_the_task_at_once_alike(
    cloud: Cloud, deps: Wired, table_name: str, owner: str | None
) -> None:
    # Given a table of bob's, an untagged table, or no table at all
    table = None if owner == "-" else _create_table(table_name, owner)
    task_id = _submit(cloud, deps, _dynamodb_spec(table_name))
    # When ana's task loads into it
    _run(cloud, deps, task_id)
    # Then the task failed in load with the same words for each (no table's existence leaks) and wrote nothing
    final = deps.api.tasks.get(task_id)
    assert (final.status, final.error.phase if final.error else None) == (TaskStatus.FAILED, "load")
    assert final.error is not None
    assert final.error.message == (
        f"dynamodb table {table_name} is not assigned to this owner (an operator tags a "
        f"table {OWNER_TAG} = <owner> to assign it; see the runbook)"
    )
    if table is not None:
        assert _all_items(table) == []


def test_a_key_that_is_not_the_tables_fails_the_task_naming_both(cloud: Cloud, deps: Wired) -> None:
    # Given ana's table keyed by a string id, which an int column cannot fill
    _create_table("ana-flights", "ana", key_type="S")
    task_id = _submit(cloud, deps, _dynamodb_spec())
    # When the task loads
    _run(cloud, deps, task_id)
    # Then it failed naming the attribute and both types
    final = deps.api.tasks.get(task_id)
    assert final.error is not None
    assert final.error.message == (
        "dynamodb table ana-flights: key attribute id has type S, which a column of type int "
        "cannot fill"
    )


class _Throttled:
    """moto's client, but BatchWriteItem leaves the last `unprocessed` items of its first answers unwritten,
    as a throttled table does."""

    def __init__(self, unprocessed: int, times: int) -> None:
        self._client = boto3.client("dynamodb", region_name=REGION)
        self._unprocessed = unprocessed
        self._times = times
        self.batch_sizes: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def batch_write_item(self, RequestItems: dict[str, list[Any]]) -> dict[str, Any]:  # noqa: N803 - boto3's
        ((table, requests),) = RequestItems.items()
        self.batch_sizes.append(len(requests))
        if self._times == 0:
            return self._client.batch_write_item(RequestItems=RequestItems)  # type: ignore[no-any-return]
        self._times -= 1
        done, left = requests[: -self._unprocessed], requests[-self._unprocessed :]
        if done:
            self._client.batch_write_item(RequestItems={table: done})
        return {"UnprocessedItems": {table: left}}


def test_unprocessed_items_are_sent_again_after_a_backoff(cloud: Cloud, deps: Wired) -> None:
    # Given a table whose first three batch writes each leave 5 items unprocessed
    table = _create_table("ana-flights", "ana")
    throttled = _Throttled(unprocessed=5, times=3)
    sleeps: list[float] = []
    target = DynamoTarget(  # an unbounded pace: every sleep is a backoff
        throttled, cloud.stack.name("IdempotencyTable"), float("inf"), sleep=sleeps.append, rng=random.Random(7)
    )
    deps.load.cache.dynamo_target = target
    task_id = _submit(cloud, deps, _dynamodb_spec())
    # When the task runs
    _run(cloud, deps, task_id)
    # Then every row is there, the first batch went out as 25, then 5 (three times) and then on
    assert [int(item["id"]) for item in _all_items(table)] == LOADED_IDS
    assert throttled.batch_sizes[:5] == [25, 5, 5, 5, 25]
    # and each resend waited its backoff: 0.05, 0.1, 0.2 s, each times a jitter in [0.5, 1.5)
    assert len(sleeps) == 3
    for wait, base in zip(sleeps, [0.05, 0.1, 0.2], strict=True):
        assert base * 0.5 <= wait < base * 1.5


def test_the_pacer_holds_writes_to_the_rate() -> None:
    # Given a pace of 50 items/s on a clock that only moves when the pacer sleeps
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    pacer = _Pacer(50.0, clock=lambda: now[0], sleep=sleep)
    # When four batches of 25 go out at once
    for _ in range(4):
        pacer.wait_for(25)
    # Then the first went at once and each later one 0.5 s after the one before: 100 items in 1.5 s + 0.5 s
    assert sleeps == [0.5, 0.5, 0.5]


def test_a_redelivered_chunk_reports_its_first_counts_without_writing_again(cloud: Cloud, deps: Wired) -> None:
    # Given a task whose chunks loaded once
    table = _create_table("ana-flights", "ana")
    task_id = _submit(cloud, deps, _dynamodb_spec())
    events = _run(cloud, deps, task_id)
    first_chunk = ChunkTransformed.model_validate(_of_type(events, "ChunkTransformed")[0])
    # When an item is changed by someone else and the first chunk is delivered again
    table.put_item(Item={"id": 2, "note": "changed since"})
    throttled = _Throttled(unprocessed=1, times=0)
    deps.load.cache.dynamo_target = DynamoTarget(throttled, cloud.stack.name("IdempotencyTable"), 1_000_000.0)
    etl_steps.run_step(etl_steps.load_chunk, first_chunk, deps.load)
    # Then nothing was written again (the ledger says the chunk's writes are done)
    assert throttled.batch_sizes == []
    assert table.get_item(Key={"id": 2})["Item"] == {"id": Decimal(2), "note": "changed since"}


@pytest.mark.parametrize(
    "target, message",
    [
        ({"mode": "insert"}, 'mode: a dynamodb target takes mode "upsert" or "delete", not "insert"'),
        ({"mode": "replace"}, 'mode: a dynamodb target takes mode "upsert" or "delete", not "replace"'),
        ({"commit": "task"}, 'commit: a dynamodb target commits chunk by chunk ("chunk"): DynamoDB has no '
                             "transaction a whole task fits in"),
        ({"key": ["a", "b", "c"]}, "key: a dynamodb table's key is a partition key and at most one sort key, "
                                   "not 3 columns"),
        ({"table": "arn:aws:dynamodb:us-east-1:1:table/x"}, "'arn:aws:dynamodb:us-east-1:1:table/x' is not a "
         "DynamoDB table name (3 to 255 letters, digits, '_', '-' and '.'; a name, never an ARN)"),
    ],
)  # fmt: skip
def test_a_dynamodb_target_spec_is_refused_naming_what_dynamodb_cannot_do(target: dict[str, Any], message: str) -> None:
    # Given a dynamodb target with one thing DynamoDB cannot do / When it is validated
    with pytest.raises(ValidationError) as raised:
        TargetSpec.model_validate({"kind": "dynamodb", "table": "ana-flights", "key": ["a"], **target})
    # Then the error says what
    assert [error["msg"].removeprefix("Value error, ") for error in raised.value.errors()] == [message]


def test_a_dynamodb_target_commits_chunk_by_chunk_by_default_and_postgres_keeps_task() -> None:
    dynamodb = TargetSpec.model_validate({"kind": "dynamodb", "table": "Orders.v2", "key": ["a", "b"]})
    postgres = TargetSpec.model_validate({"table": "orders", "key": ["a"]})
    assert (dynamodb.commit, dynamodb.mode, postgres.kind, postgres.commit) == ("chunk", "upsert", "postgres", "task")
