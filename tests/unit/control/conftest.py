"""Fixtures for the control-plane tests: template.yaml's AWS resources provisioned in moto by the local
cloud's own provisioner, a Deps wired to them, an in-memory Warehouse (only the Postgres part is faked)
and a recording pusher."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pytest
from busline_core.contracts import LoadOutcome
from moto import mock_aws

from busline.localcloud.in_process import ProvisionedStack, provision_in_process
from busline.localcloud.moto_patches import atomic_dynamodb as serialized_dynamodb

REGION = "us-east-1"
TEMPLATE = Path(__file__).resolve().parents[3] / "template.yaml"
# The names template.yaml gives these resources in the stack "busline", for tests that build specs
# before a cloud exists; the cloud fixture checks them against what was provisioned.
TASKS_TABLE = "busline-TasksTable"
CONNECTIONS_TABLE = "busline-ConnectionsTable"
BUCKET = "busline-databucket"
BUS = "busline-busline"


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@dataclass
class Cloud:
    """Handles on the template's resources in moto; `bus_queue_url` receives every event published on
    the bus, `notifications_queue_url` every SNS notification (both queues are test instrumentation)."""

    dynamodb: Any
    tasks_table: Any
    connections_table: Any
    s3: Any
    events: Any
    sqs: Any
    sns: Any
    topic_arn: str
    bus_queue_url: str
    notifications_queue_url: str
    bucket: str = BUCKET
    bus: str = BUS
    stack: ProvisionedStack | None = None  # every physical name and output of the template

    def _drain(self, queue_url: str) -> list[dict[str, Any]]:
        bodies: list[dict[str, Any]] = []
        while True:
            response = self.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            messages = response.get("Messages", [])
            if not messages:
                return bodies
            for message in messages:
                bodies.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])

    def published_events(self) -> list[dict[str, Any]]:
        """EventBridge events published since the last call (source busline), oldest first."""
        return self._drain(self.bus_queue_url)

    def notifications(self) -> list[dict[str, Any]]:
        """SNS messages (the `Message` field parsed) since the last call."""
        return [json.loads(envelope["Message"]) for envelope in self._drain(self.notifications_queue_url)]

    def task_count(self) -> int:
        return int(self.tasks_table.scan(Select="COUNT")["Count"])


@pytest.fixture
def atomic_dynamodb() -> Iterator[None]:
    """DynamoDB applies each single-item request atomically; in-process moto does not (see
    busline.localcloud.moto_patches), so tests that race conditions against it serialize it the way
    the local cloud does."""
    with serialized_dynamodb():
        yield


@pytest.fixture(autouse=True)
def no_bound_request() -> Iterator[None]:
    """A test that submits as a request (correlation.bind) leaves no id bound for the next one."""
    from busline_core import correlation

    correlation.bind(None)
    yield
    correlation.bind(None)


@pytest.fixture
def cloud(atomic_dynamodb: None) -> Iterator[Cloud]:
    with mock_aws():
        stack = provision_in_process(TEMPLATE, region=REGION)
        provisioned = (stack.name("TasksTable"), stack.name("ConnectionsTable"), stack.name("DataBucket"),
                       stack.name("EventBus"))
        assert provisioned == (TASKS_TABLE, CONNECTIONS_TABLE, BUCKET, BUS), "update the name constants above"
        dynamodb = boto3.resource("dynamodb", region_name=REGION)
        s3 = boto3.client("s3", region_name=REGION)
        events = boto3.client("events", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        sns = boto3.client("sns", region_name=REGION)

        bus_queue_url = sqs.create_queue(QueueName="bus-capture")["QueueUrl"]
        bus_queue_arn = sqs.get_queue_attributes(QueueUrl=bus_queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        events.put_rule(
            Name="capture-all", EventBusName=BUS, EventPattern=json.dumps({"source": ["busline"]})
        )
        events.put_targets(
            Rule="capture-all", EventBusName=BUS, Targets=[{"Id": "capture", "Arn": bus_queue_arn}]
        )

        topic_arn = stack.name("NotificationTopic")
        notifications_queue_url = sqs.create_queue(QueueName="notification-capture")["QueueUrl"]
        notifications_queue_arn = sqs.get_queue_attributes(
            QueueUrl=notifications_queue_url, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=notifications_queue_arn)

        yield Cloud(
            dynamodb=dynamodb,
            tasks_table=dynamodb.Table(TASKS_TABLE),
            connections_table=dynamodb.Table(CONNECTIONS_TABLE),
            s3=s3,
            events=events,
            sqs=sqs,
            sns=sns,
            topic_arn=topic_arn,
            bus_queue_url=bus_queue_url,
            notifications_queue_url=notifications_queue_url,
            stack=stack,
        )


@dataclass
class FakeWarehouse:
    """Postgres stand-in with the same contract: a ledger per (task, chunk) makes loads exactly-once,
    upsert keeps the last row per key, and each owner's tables are its own (keyed by table name, with
    the owners that loaded into each in `owners`). A task committing "task" stages its chunks until
    commit_task merges them at once (or discard_task drops them)."""

    tables: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = field(default_factory=dict)
    owners: dict[str, set[str]] = field(default_factory=dict)
    ledger: dict[tuple[str, int], int] = field(default_factory=dict)
    staged: dict[str, list[tuple[int, int, dict[str, Any]]]] = field(default_factory=dict)
    closed: dict[str, LoadOutcome] = field(default_factory=dict)
    ensure_calls: int = 0
    load_calls: int = 0
    commit_calls: int = 0

    def ensure_table(self, owner: str, target: Any, columns: list[Any]) -> None:
        self.ensure_calls += 1
        self.tables.setdefault(target.table, {})
        self.owners.setdefault(target.table, set()).add(owner)

    def load_chunk(
        self, task_id: str, chunk: int, owner: str, target: Any, columns: list[Any], table: pa.Table
    ) -> LoadOutcome:
        self.load_calls += 1
        rows = table.to_pylist()  # a transformed chunk arrives as an Arrow table
        if (task_id, chunk) in self.ledger:
            return LoadOutcome(rows=self.ledger[(task_id, chunk)], already_loaded=True)
        assert owner in self.owners[target.table], f"{owner} loads {target.table} before ensuring it"
        self.ledger[(task_id, chunk)] = len(rows)
        if target.commit == "task":
            if task_id not in self.closed:
                self.staged.setdefault(task_id, []).extend((chunk, i, row) for i, row in enumerate(rows))
            return LoadOutcome(rows=len(rows), already_loaded=False)
        table = self.tables[target.table]
        for row in rows:
            table[tuple(row[name] for name in target.key)] = row
        return LoadOutcome(rows=len(rows), already_loaded=False)

    def commit_task(self, task_id: str, owner: str, target: Any, columns: list[Any]) -> LoadOutcome:
        self.commit_calls += 1
        if task_id in self.closed:
            return self.closed[task_id].model_copy(update={"already_loaded": True})
        table = self.tables[target.table]
        merged: dict[tuple[Any, ...], dict[str, Any]] = {}
        for _chunk, _ordinal, row in sorted(self.staged.pop(task_id, []), key=lambda item: item[:2]):
            merged[tuple(row[name] for name in target.key)] = row  # the last in the source wins
        table.update(merged)
        outcome = LoadOutcome(rows=len(merged), already_loaded=False)
        self.closed[task_id] = outcome
        return outcome

    def discard_task(self, task_id: str, owner: str, target: Any) -> bool:
        if task_id in self.closed:
            return False
        self.staged.pop(task_id, None)
        self.closed[task_id] = LoadOutcome(rows=0, already_loaded=False)
        return True


@pytest.fixture
def warehouse() -> FakeWarehouse:
    return FakeWarehouse()


@dataclass
class RecordingPusher:
    """Stands in for WebSocketPusher: records pushes; connections in `gone` answer GoneException."""

    pushes: list[tuple[str, Any]] = field(default_factory=list)
    gone: set[str] = field(default_factory=set)

    def push(self, connection_id: str, payload: Any) -> bool:
        if connection_id in self.gone:
            return False
        self.pushes.append((connection_id, payload))
        return True


@pytest.fixture
def pusher() -> RecordingPusher:
    return RecordingPusher()


class Clock:
    """A settable clock, so timings and the watchdog are deterministic."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC))


@dataclass
class Wired:
    """Each function kind's deps, wired to the same moto resources, as the deployed functions are."""

    api: Any
    extract: Any
    transform: Any
    load: Any
    stream: Any
    connections: Any
    watchdog: Any


PAGE_TOKEN_KEY = b"test page-token key"
DYNAMO_TARGET_WRITES_PER_SECOND = float("inf")  # no pacing in these tests: test_dynamodb_target.py paces


def wire(cloud: Cloud, clock: Clock, warehouse: Any, pusher: Any) -> Wired:
    from busline_core.bus import EventPublisher, Notifier
    from busline_core.connections import ConnectionsRepository
    from busline_core.deps import (
        ApiDeps,
        ConnectionsDeps,
        ExtractDeps,
        LoadDeps,
        StreamDeps,
        TransformDeps,
        WatchdogDeps,
    )
    from busline_core.dynamo_target import DynamoTarget
    from busline_core.lifecycle import TaskLifecycle
    from busline_core.paging import PageTokens
    from busline_core.storage import ChunkStore
    from busline_core.tasks_repo import TasksRepository

    tasks = TasksRepository(cloud.tasks_table, clock=clock)
    chunks = ChunkStore(cloud.s3, BUCKET)
    connections = ConnectionsRepository(cloud.connections_table)

    def lifecycle() -> TaskLifecycle:
        # one per function, as each function's container builds its own
        return TaskLifecycle(
            tasks, EventPublisher(cloud.events, BUS), Notifier(cloud.sns, cloud.topic_arn), clock=clock
        )

    return Wired(
        api=ApiDeps(
            tasks=tasks,
            publisher=EventPublisher(cloud.events, BUS),
            chunks=chunks,
            page_tokens=PageTokens(PAGE_TOKEN_KEY),
            data_bucket=BUCKET,
            clock=clock,
        ),
        extract=ExtractDeps(tasks=tasks, lifecycle=lifecycle(), chunks=chunks, clock=clock),
        transform=TransformDeps(tasks=tasks, lifecycle=lifecycle(), chunks=chunks, clock=clock),
        load=LoadDeps(
            tasks=tasks,
            lifecycle=lifecycle(),
            chunks=chunks,
            clock=clock,
            warehouse_factory=lambda: warehouse,
            # the real DynamoDB target, on moto, with the template's idempotency table as its ledger
            dynamo_target_factory=lambda: DynamoTarget(
                boto3.client("dynamodb", region_name=REGION),
                cloud.stack.name("IdempotencyTable"),
                DYNAMO_TARGET_WRITES_PER_SECOND,
            ),
        ),
        stream=StreamDeps(tasks=tasks, connections=connections, pusher=pusher),
        connections=ConnectionsDeps(tasks=tasks, connections=connections, pusher=pusher),
        watchdog=WatchdogDeps(tasks=tasks, lifecycle=lifecycle(), clock=clock),
    )
