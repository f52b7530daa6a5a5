"""Fixtures for the control-plane tests: moto-backed AWS resources shaped like template.yaml's, a
Deps wired to them, an in-memory Warehouse (only the Postgres part is faked) and a recording pusher."""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

REGION = "us-east-1"
TASKS_TABLE = "busline-tasks"
CONNECTIONS_TABLE = "busline-connections"
BUCKET = "busline-data"
BUS = "busline-bus"


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


def create_tasks_table(dynamodb: Any) -> Any:
    return dynamodb.create_table(
        TableName=TASKS_TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "taskId", "AttributeType": "S"},
            {"AttributeName": "owner", "AttributeType": "S"},
            {"AttributeName": "createdAt", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "taskId", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "byOwner",
                "KeySchema": [
                    {"AttributeName": "owner", "KeyType": "HASH"},
                    {"AttributeName": "createdAt", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )


def create_connections_table(dynamodb: Any) -> Any:
    return dynamodb.create_table(
        TableName=CONNECTIONS_TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "connectionId", "AttributeType": "S"},
            {"AttributeName": "taskId", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "connectionId", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "byTask",
                "KeySchema": [{"AttributeName": "taskId", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )


@dataclass
class Cloud:
    """Handles on the moto resources; `bus_queue_url` receives every event published on the bus,
    `notifications_queue_url` every SNS notification."""

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


def _serialized(method: Callable[..., Any], lock: threading.RLock) -> Callable[..., Any]:
    @functools.wraps(method)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return method(*args, **kwargs)

    return locked


@pytest.fixture
def atomic_dynamodb(monkeypatch: pytest.MonkeyPatch) -> None:
    """DynamoDB applies each single-item request atomically; moto runs condition, update and its
    response building in plain Python, so two threads can interleave (measured here: lost ADDs, and
    "dictionary changed size during iteration" while one request copies an item another updates).
    Serialize moto's DynamoDB requests so tests exercise our conditions against the real semantics."""
    from moto.dynamodb.responses import DynamoHandler

    monkeypatch.setattr(
        DynamoHandler, "call_action", _serialized(DynamoHandler.call_action, threading.RLock())
    )


@pytest.fixture
def cloud(atomic_dynamodb: None) -> Iterator[Cloud]:
    with mock_aws():
        dynamodb = boto3.resource("dynamodb", region_name=REGION)
        tasks_table = create_tasks_table(dynamodb)
        connections_table = create_connections_table(dynamodb)
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        events = boto3.client("events", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        sns = boto3.client("sns", region_name=REGION)

        events.create_event_bus(Name=BUS)
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

        topic_arn = sns.create_topic(Name="busline-notifications")["TopicArn"]
        notifications_queue_url = sqs.create_queue(QueueName="notification-capture")["QueueUrl"]
        notifications_queue_arn = sqs.get_queue_attributes(
            QueueUrl=notifications_queue_url, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=notifications_queue_arn)

        yield Cloud(
            dynamodb=dynamodb,
            tasks_table=tasks_table,
            connections_table=connections_table,
            s3=s3,
            events=events,
            sqs=sqs,
            sns=sns,
            topic_arn=topic_arn,
            bus_queue_url=bus_queue_url,
            notifications_queue_url=notifications_queue_url,
        )


@dataclass(frozen=True)
class FakeLoadOutcome:
    rows: int
    already_loaded: bool


@dataclass
class FakeWarehouse:
    """Postgres stand-in with the same contract: a ledger per (task, chunk) makes loads exactly-once,
    and upsert keeps the last row per key."""

    tables: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = field(default_factory=dict)
    ledger: dict[tuple[str, int], int] = field(default_factory=dict)
    ensure_calls: int = 0
    load_calls: int = 0

    def ensure_table(self, target: Any, columns: list[Any]) -> None:
        self.ensure_calls += 1
        self.tables.setdefault(target.table, {})

    def load_chunk(
        self, task_id: str, chunk: int, target: Any, columns: list[Any], rows: list[dict[str, Any]]
    ) -> FakeLoadOutcome:
        self.load_calls += 1
        if (task_id, chunk) in self.ledger:
            return FakeLoadOutcome(self.ledger[(task_id, chunk)], True)
        table = self.tables[target.table]
        for row in rows:
            table[tuple(row[name] for name in target.key)] = row
        self.ledger[(task_id, chunk)] = len(rows)
        return FakeLoadOutcome(len(rows), False)


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


class Clock:
    """A settable clock, so timings and the watchdog are deterministic."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC))
