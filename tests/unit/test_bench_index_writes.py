"""make bench's DynamoDB write units for the tasks table: the owner index (template.yaml) is written only when
a write changes what it holds, counted from the task's images on the table's stream."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from busline_core.contracts import Phase
from busline_core.pricing import write_units
from busline_core.task_state import ChunkCounted, ExtractCompleted, ExtractStarted, PhaseCompleted, TaskState
from busline_core.tasks_repo import TasksRepository
from moto import mock_aws

from busline.bench.calls import CallStats
from busline.bench.cloud import index_writes
from busline.bench.measure import _task_item, dynamodb_units
from busline.localcloud.in_process import provision_in_process

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def tasks_table(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield provision_in_process(REPO / "template.yaml").name("TasksTable")


def test_the_owner_index_is_written_once_per_status_and_the_counts_once_per_write(tasks_table: str) -> None:
    # Given a task of the template's tasks table written 6 times: created, extract started and completed,
    # two chunks counted, transform completed (4 of them change its status)
    tasks = TasksRepository(boto3.resource("dynamodb").Table(tasks_table))
    tasks.create(TaskState.submitted("t1", "ana", "flights", "{}", datetime(2026, 12, 2, tzinfo=UTC)))
    for event in (ExtractStarted(), ExtractCompleted(2, 200), ChunkCounted(Phase.TRANSFORM, 0, {}),
                  ChunkCounted(Phase.TRANSFORM, 1, {}), PhaseCompleted(Phase.TRANSFORM)):  # fmt: skip
        assert tasks.apply("t1", event) is not None
    dynamodb, streams = boto3.client("dynamodb"), boto3.client("dynamodbstreams")

    # When the bench sizes the task's writes
    item = _task_item(dynamodb, streams, tasks_table, "t1")

    # Then the owner index (keys, pipeline and status) took 4 writes, not one per write
    assert item is not None
    assert (item.whole_item_indexes, item.other_indexes, item.other_index_writes) == (0, 1, 4)
    # And the run's write units are each write at the item's size, plus those 4
    calls = CallStats(dynamodb_by_table=Counter({(tasks_table, "PutItem"): 1, (tasks_table, "UpdateItem"): 5}))
    writes, _ = dynamodb_units(calls, item)
    assert writes == 6 * write_units(item.bytes) + 4
    # And without the stream's images, every write counts once more for the index, as before
    item.other_index_writes = None
    assert dynamodb_units(calls, item)[0] == 6 * (write_units(item.bytes) + 1)


def test_index_writes_count_changes_of_what_the_index_holds() -> None:
    # Given images that hold the index's attributes from the second on, which change twice after that
    images = [
        {"taskId": {"S": "t"}},
        {"taskId": {"S": "t"}, "owner": {"S": "o"}, "status": {"S": "A"}, "n": {"N": "1"}},
        {"taskId": {"S": "t"}, "owner": {"S": "o"}, "status": {"S": "A"}, "n": {"N": "2"}},
        {"taskId": {"S": "t"}, "owner": {"S": "o"}, "status": {"S": "B"}, "n": {"N": "3"}},
        {"taskId": {"S": "t"}, "owner": {"S": "o"}, "status": {"S": "B"}, "n": {"N": "4"}},
        {"taskId": {"S": "t"}, "owner": {"S": "p"}, "status": {"S": "B"}, "n": {"N": "4"}},
    ]
    # When an index of owner and status counts them / Then it was written 3 times (n never mattered)
    assert index_writes(images, {"owner", "status"}) == 3
