"""The local cloud's pollers hear of new work from moto in their process instead of asking on a timer:
a stream write wakes the StreamPoller at once, and a stopping SqsPoller ends its long poll."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from busline.localcloud import moto_patches
from busline.localcloud.event_sources import (
    SQS_ENDABLE_LONG_POLL_S,
    SQS_LONG_POLL_S,
    STREAM_IDLE_WAIT_S,
    SqsPoller,
    StreamPoller,
)
from busline.localcloud.model import CloudModel, Endpoints, SqsMapping, StreamMapping
from busline.localcloud.runtime import InvocationResult
from busline.localcloud.testing import moto_server

REGION = "us-east-1"
ACCOUNT = "123456789012"


@dataclass
class RecordingRuntime:
    """Stands in for FunctionRuntime: records each invocation's records and when it came."""

    invocations: list[tuple[float, list[dict[str, Any]]]] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def invoke(self, function: str, event: dict[str, Any], trigger: str) -> InvocationResult:
        with self.arrived:
            self.invocations.append((time.monotonic(), event["Records"]))
            self.arrived.notify_all()
        return InvocationResult(ok=True, payload=None, error=None, error_type=None, duration_ms=0.0)

    def records(self) -> int:
        with self.arrived:
            return sum(len(records) for _, records in self.invocations)

    def wait_for_records(self, count: int, timeout_s: float) -> float | None:
        """When the invocation that brought the total to `count` came; None if it did not in time."""
        with self.arrived:
            self.arrived.wait_for(lambda: sum(len(r) for _, r in self.invocations) >= count, timeout=timeout_s)
            total = 0
            for at, records in self.invocations:
                total += len(records)
                if total >= count:
                    return at
            return None


@pytest.fixture(scope="module")
def model() -> Iterator[CloudModel]:
    with moto_server() as endpoint:
        host, port = endpoint.removeprefix("http://").split(":")
        yield CloudModel(region=REGION, account_id=ACCOUNT, endpoints=Endpoints.for_base_port(host, int(port) - 3))


def client(model: CloudModel, service: str) -> Any:
    return boto3.client(service, endpoint_url=model.endpoints.aws, region_name=REGION,  # type: ignore[call-overload]
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def calls_to(poller_client: Any, operation: str) -> list[float]:
    """Times of every call the poller's own client makes to `operation` from now on."""
    seen: list[float] = []
    poller_client.meta.events.register(f"before-call.*.{operation}", lambda **_: seen.append(time.monotonic()))
    return seen


def stream_poller(model: CloudModel, runtime: RecordingRuntime, window_s: float = 0.0) -> tuple[StreamPoller, str]:
    table = f"wake-{uuid.uuid4().hex[:8]}"
    stream_arn = client(model, "dynamodb").create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )["TableDescription"]["LatestStreamArn"]
    mapping = StreamMapping("WakeMapping", "StreamFunction", table, stream_arn, batch_size=100,
                            max_batching_window_s=window_s)
    return StreamPoller(model, mapping, runtime, None), table  # type: ignore[arg-type]


def put(model: CloudModel, table: str, *keys: str) -> float:
    dynamodb = client(model, "dynamodb")
    for key in keys:
        dynamodb.put_item(TableName=table, Item={"pk": {"S": key}})
    return time.monotonic()


def test_a_write_wakes_the_idle_stream_poller_at_once(model: CloudModel) -> None:
    # Given a stream poller without a batching window, idle after its first look at the shard
    runtime = RecordingRuntime()
    poller, table = stream_poller(model, runtime)
    get_records = calls_to(poller._streams, "GetRecords")
    poller.start()
    try:
        deadline = time.monotonic() + 2
        while not get_records and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)
        # When an item is written
        written = put(model, table, "a")
        # Then its record is delivered within a few milliseconds, not a polling interval
        delivered = runtime.wait_for_records(1, timeout_s=2)
        assert delivered is not None, "the write was never delivered"
        assert delivered - written < 0.2
        # And an idle shard is read about once per STREAM_IDLE_WAIT_S, not four times a second
        idle_from = time.monotonic()
        time.sleep(STREAM_IDLE_WAIT_S * 1.5)
        assert len([at for at in get_records if at >= idle_from]) <= 2
    finally:
        poller.stop()


def test_a_stopping_stream_poller_does_not_outwait_its_idle_wait(model: CloudModel) -> None:
    runtime = RecordingRuntime()
    poller, _ = stream_poller(model, runtime)
    poller.start()
    time.sleep(0.2)
    started = time.monotonic()
    poller.stop()
    assert time.monotonic() - started < STREAM_IDLE_WAIT_S / 2


def test_without_the_write_hook_the_stream_poller_falls_back_to_its_timeout(
    model: CloudModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given writes that wake nobody (as with a moto in another process)
    runtime = RecordingRuntime()
    poller, table = stream_poller(model, runtime)
    poller.start()
    monkeypatch.setattr(moto_patches.STREAM_WRITES, "appended", lambda table_name: None)
    try:
        time.sleep(0.1)
        # When an item is written / Then it is still delivered, within the idle wait
        written = put(model, table, "a")
        delivered = runtime.wait_for_records(1, timeout_s=STREAM_IDLE_WAIT_S * 3)
        assert delivered is not None
        assert delivered - written < STREAM_IDLE_WAIT_S + 0.5
    finally:
        poller.stop()


def test_a_batching_window_still_gathers_a_burst_into_one_batch(model: CloudModel) -> None:
    # Given a mapping that declares a 0.4 s batching window
    runtime = RecordingRuntime()
    poller, table = stream_poller(model, runtime, window_s=0.4)
    poller.start()
    try:
        time.sleep(0.1)
        # When three items are written one after the other
        started = time.monotonic()
        put(model, table, "a", "b", "c")
        # Then they come in one invocation, once the window has closed
        assert runtime.wait_for_records(3, timeout_s=3) is not None
        [(delivered, records)] = runtime.invocations
        assert [record["dynamodb"]["Keys"]["pk"]["S"] for record in records] == ["a", "b", "c"]
        assert delivered - started >= 0.4
    finally:
        poller.stop()


# -- SQS ----------------------------------------------------------------------------------------------


def sqs_poller(model: CloudModel, runtime: RecordingRuntime) -> tuple[SqsPoller, str]:
    name = f"wake-{uuid.uuid4().hex[:8]}"
    url = client(model, "sqs").create_queue(QueueName=name)["QueueUrl"]
    mapping = SqsMapping("WakeQueueMapping", "QueueFunction", url, f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}",
                         batch_size=1)
    return SqsPoller(model, mapping, runtime, None), url  # type: ignore[arg-type]


def test_an_sqs_poller_long_polls_20_s_and_still_stops_at_once(model: CloudModel) -> None:
    # Given an SQS poller whose first receive has reached this process's moto
    runtime = RecordingRuntime()
    poller, url = sqs_poller(model, runtime)
    assert poller.long_poll_s == SQS_LONG_POLL_S
    receives = calls_to(poller._sqs, "ReceiveMessage")
    poller.start()
    sqs = client(model, "sqs")
    try:
        sqs.send_message(QueueUrl=url, MessageBody="first")
        assert runtime.wait_for_records(1, timeout_s=3) is not None
        # Then it long polls for SQS's longest wait, and a message sent meanwhile still comes at once
        assert poller.long_poll_s == SQS_ENDABLE_LONG_POLL_S
        time.sleep(0.3)
        sent = time.monotonic()
        sqs.send_message(QueueUrl=url, MessageBody="second")
        delivered = runtime.wait_for_records(2, timeout_s=3)
        assert delivered is not None and delivered - sent < 0.5
        # And, once the receive that follows a delivery is under way, an idle second costs no ReceiveMessage
        time.sleep(0.2)
        idle_from = time.monotonic()
        time.sleep(1.2)
        assert [at for at in receives if at >= idle_from] == []
    finally:
        # When it stops in the middle of a 20 s long poll
        started = time.monotonic()
        poller.stop()
        stopped_in = time.monotonic() - started
    # Then stop() returns at once, and its poll took nothing: a message sent now is there for others
    assert stopped_in < 0.5
    sqs.send_message(QueueUrl=url, MessageBody="after stop")
    time.sleep(0.1)
    messages = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", [])
    assert [message["Body"] for message in messages] == ["after stop"]
    assert runtime.records() == 2


def test_a_receive_without_a_poller_token_is_moto_s_own(model: CloudModel) -> None:
    # Given the patch applied, and a plain client's long poll on an empty queue
    moto_patches.make_sqs_long_polls_endable()
    url = client(model, "sqs").create_queue(QueueName=f"plain-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    started = time.monotonic()
    # When it receives / Then it waits its whole WaitTimeSeconds and gets nothing, as moto alone does
    assert client(model, "sqs").receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", []) == []
    assert time.monotonic() - started >= 0.9
