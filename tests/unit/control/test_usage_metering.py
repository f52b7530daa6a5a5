"""usage.py with tasks_repo.py: a task's AWS calls and compute are counted where they happen and carried by
the task's own writes, and the snapshot prices them (pricing.py's list prices)."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from busline_core import usage
from busline_core.contracts import Phase
from busline_core.task_state import ChunkCounted, ExtractCompleted, ExtractStarted, TaskState
from busline_core.tasks_repo import TasksRepository

from .conftest import BUCKET, BUS, Clock, Cloud


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def monotonic(monkeypatch: pytest.MonkeyPatch) -> FakeMonotonic:
    fake = FakeMonotonic()
    monkeypatch.setattr(usage.time, "monotonic", fake)
    return fake


@pytest.fixture
def metered(cloud: Cloud, clock: Clock) -> tuple[TasksRepository, Any, Any]:
    """A repository, S3 and EventBridge clients built after the meter was installed, as deps.py builds them."""
    usage.METER.install()
    table = boto3.resource("dynamodb").Table(cloud.tasks_table.name)
    return TasksRepository(table, clock=clock), boto3.client("s3"), boto3.client("events")


def _entries(count: int) -> list[dict[str, str]]:
    return [{"Source": "busline", "DetailType": "Test", "Detail": json.dumps({"n": n}), "EventBusName": BUS}
            for n in range(count)]  # fmt: skip


def _counts(repo: TasksRepository, task_id: str = "t1") -> dict[str, float]:
    state = repo.get(task_id)
    assert state is not None
    return dict(state.usage)


def test_a_tasks_calls_and_compute_are_carried_by_its_writes_and_priced(
    metered: tuple[TasksRepository, Any, Any], clock: Clock, monotonic: FakeMonotonic
) -> None:
    repo, s3, events = metered
    # Given a record of task t1 (half of a batch of two) that creates it, puts and reads an object, publishes
    # three events in one PutEvents and runs 2 s before its next write
    with usage.METER.working_on("t1", invocation_share=0.5, deliveries=2):
        repo.create(TaskState.submitted("t1", "ana", "flights", "{}", clock()))
        s3.put_object(Bucket=BUCKET, Key="tasks/t1/x", Body=b"x")
        s3.get_object(Bucket=BUCKET, Key="tasks/t1/x")
        events.put_events(Entries=_entries(3))
        monotonic.now += 2.0
        repo.apply("t1", ExtractStarted())
    # and a call made for no task
    s3.get_object(Bucket=BUCKET, Key="tasks/t1/x")
    # When the task is read
    counts = _counts(repo)
    # Then it carries exactly its calls (each write counting itself), the invocation's share, the deliveries
    # and 2 s at 1 GB
    assert counts == {
        "dynamodb:PutItem": 1,
        "s3:PutObject": 1,
        "s3:GetObject": 1,
        "events:PutEvents": 1,
        "events:entries": 3,
        "dynamodb:UpdateItem": 1,
        "lambda:requests": 0.5,
        "sqs:deliveries": 2,
        "lambda:gbSeconds": 2.0,
    }
    # And its snapshot prices them at list prices: Lambda 0.5 requests and 2 GB-s, SQS 2, EventBridge 3 entries,
    # DynamoDB 2 writes, S3 one PUT and one GET
    cost = repo.get("t1").snapshot().cost  # type: ignore[union-attr]
    assert cost is not None
    assert cost.byService == pytest.approx(
        {
            "lambda": 0.5 * 0.20e-6 + 2.0 * 0.0000166667,
            "sqs": 2 * 0.40e-6,
            "eventbridge": 3 * 1.00e-6,
            "dynamodb": 2 * 0.625e-6,
            "s3": 0.005e-3 + 0.0004e-3,
        }
    )
    assert cost.usd == pytest.approx(sum(cost.byService.values()))
    # 5 calls, half an invocation and 2 deliveries: 7.5 requests, shown as a whole number
    assert (cost.requests, cost.lambdaGbSeconds, cost.unpriced) == (8, 2.0, {})
    assert cost.prices == "AWS list prices, us-east-1, checked late November 2026"


def test_a_refused_write_leaves_its_counts_to_the_next_one_and_is_billed_itself(
    metered: tuple[TasksRepository, Any, Any], clock: Clock, monotonic: FakeMonotonic
) -> None:
    repo, s3, _ = metered
    # Given a task whose extract completed, its record's three writes counted
    with usage.METER.working_on("t1"):
        repo.create(TaskState.submitted("t1", "ana", "flights", "{}", clock()))
        repo.apply("t1", ExtractStarted())
        repo.apply("t1", ExtractCompleted(2, 10))
    before = _counts(repo)
    # When a redelivered record puts an object, has its ExtractCompleted refused, then counts a chunk
    with usage.METER.working_on("t1"):
        s3.put_object(Bucket=BUCKET, Key="tasks/t1/y", Body=b"y")
        assert repo.apply("t1", ExtractCompleted(2, 10)) is None
        assert repo.apply("t1", ChunkCounted(Phase.TRANSFORM, 0, {"filtered": 0, "rejected": 0})) is not None
    # Then the chunk's write carried the PUT and the refused write (billed all the same) besides itself
    assert before == {"dynamodb:PutItem": 1, "dynamodb:UpdateItem": 2, "lambda:requests": 1}
    assert _counts(repo) == {
        "dynamodb:PutItem": 1, "dynamodb:UpdateItem": 4, "lambda:requests": 2, "s3:PutObject": 1,
    }  # fmt: skip


def test_writes_made_for_no_task_at_hand_add_nothing(
    metered: tuple[TasksRepository, Any, Any], clock: Clock
) -> None:
    repo, _, _ = metered
    # Given a task created outside any record (as the watchdog and the tests' fakes write)
    repo.create(TaskState.submitted("t1", "ana", "flights", "{}", clock()))
    repo.apply("t1", ExtractStarted())
    # Then its item carries no counts, and its snapshot no cost
    assert _counts(repo) == {}
    assert repo.get("t1").snapshot().cost is None  # type: ignore[union-attr]
