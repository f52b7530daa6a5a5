"""SqsPoller against a real moto server: batching, partial failures, DLQ redrive, concurrency cap."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from sources_helpers import ACCOUNT, REGION, Harness, wait_until

from busline.localcloud.chaos import ChaosConfig
from busline.localcloud.event_sources import SqsPoller, build_event_sources
from busline.localcloud.model import SqsMapping
from busline.localcloud.runtime import FunctionRuntime

pytestmark = pytest.mark.integration


def _queue(harness: Harness, name: str, **attributes: str) -> tuple[str, str]:
    sqs = harness.client("sqs")
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    return url, f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"


def _queue_depth(harness: Harness, url: str) -> int:
    attributes = harness.client("sqs").get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def test_partial_batch_failure_deletes_successes_and_redrives_failures_to_the_dlq(
    harness: Harness, runtime_for: Callable[..., FunctionRuntime]
) -> None:
    # Given a queue with a 1 s visibility timeout whose messages go to a DLQ after 2 receives
    dlq_url, dlq_arn = _queue(harness, harness.unique("dlq"))
    queue_url, queue_arn = _queue(
        harness, harness.unique("work"), VisibilityTimeout="1",
        RedrivePolicy=json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"}),
    )
    harness.add_function("PartialFunction", "handlers.sqs_partial")
    mapping = SqsMapping("PartialMapping", "PartialFunction", queue_url, queue_arn, batch_size=10,
                         max_batching_window_s=0.5, report_batch_item_failures=True)
    poller = SqsPoller(harness.model, mapping, runtime_for(), None)
    sqs = harness.client("sqs")
    for body in ("ok-1", "fail", "ok-2"):
        sqs.send_message(QueueUrl=queue_url, MessageBody=body)

    # When the poller runs until the failing message lands in the DLQ
    poller.start()
    try:
        wait_until(lambda: _queue_depth(harness, dlq_url) == 1, 15, "the failed message in the DLQ")
    finally:
        poller.stop()

    # Then the successes were delivered once and deleted, the failure twice and then dead-lettered
    deliveries = harness.records()
    bodies = sorted(record["body"] for record in deliveries)
    assert bodies == ["fail", "fail", "ok-1", "ok-2"]
    assert sorted(r["receiveCount"] for r in deliveries if r["body"] == "fail") == ["1", "2"]
    assert _queue_depth(harness, queue_url) == 0
    dead = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10)["Messages"]
    assert [message["Body"] for message in dead] == ["fail"]


def test_failed_invocation_deletes_nothing(harness: Harness, runtime_for: Callable[..., FunctionRuntime]) -> None:
    # Given a function that raises, on a queue with a long visibility timeout
    queue_url, queue_arn = _queue(harness, harness.unique("boom"), VisibilityTimeout="30")
    harness.add_function("BoomFunction", "handlers.boom")
    poller = SqsPoller(harness.model, SqsMapping("BoomMapping", "BoomFunction", queue_url, queue_arn),
                       runtime_for(), None)
    harness.client("sqs").send_message(QueueUrl=queue_url, MessageBody="x")

    # When the one message is delivered
    poller.start()
    try:
        wait_until(lambda: poller.settled == 1, 15, "the invocation to finish and be settled")
    finally:
        poller.stop()

    # Then the message is still in the queue (in flight, not deleted)
    assert _queue_depth(harness, queue_url) == 1


def test_record_has_the_aws_shape(harness: Harness, runtime_for: Callable[..., FunctionRuntime]) -> None:
    # Given a message with a string and a binary attribute
    queue_url, queue_arn = _queue(harness, harness.unique("shape"))
    harness.add_function("RecorderFunction", "handlers.recorder")
    poller = SqsPoller(harness.model, SqsMapping("ShapeMapping", "RecorderFunction", queue_url, queue_arn),
                       runtime_for(), None)
    harness.client("sqs").send_message(
        QueueUrl=queue_url, MessageBody='{"a": 1}',
        MessageAttributes={"kind": {"DataType": "String", "StringValue": "demo"},
                           "blob": {"DataType": "Binary", "BinaryValue": b"\x01\x02"}},
    )

    # When it is delivered
    poller.start()
    try:
        wait_until(lambda: len(harness.records()) == 1, 15, "one delivered record")
    finally:
        poller.stop()

    # Then the record is exactly what Lambda gives a handler
    (record,) = harness.records()
    assert set(record) == {"messageId", "receiptHandle", "body", "attributes", "messageAttributes",
                           "md5OfBody", "eventSource", "eventSourceARN", "awsRegion"}
    assert record["body"] == '{"a": 1}'
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == queue_arn
    assert record["awsRegion"] == REGION
    assert {"ApproximateReceiveCount", "SentTimestamp", "SenderId",
            "ApproximateFirstReceiveTimestamp"} <= set(record["attributes"])
    assert record["messageAttributes"] == {
        "kind": {"stringValue": "demo", "binaryValue": None, "stringListValues": [],
                 "binaryListValues": [], "dataType": "String"},
        "blob": {"stringValue": None, "binaryValue": "AQI=", "stringListValues": [],
                 "binaryListValues": [], "dataType": "Binary"},
    }


def test_maximum_concurrency_is_never_exceeded(harness: Harness, runtime_for: Callable[..., FunctionRuntime]) -> None:
    # Given 12 messages, batches of one, MaximumConcurrency 2 and a handler taking 0.3 s
    queue_url, queue_arn = _queue(harness, harness.unique("busy"), VisibilityTimeout="30")
    harness.add_function("TimedFunction", "handlers.timed")
    mapping = SqsMapping("BusyMapping", "TimedFunction", queue_url, queue_arn, batch_size=1, max_concurrency=2)
    poller = SqsPoller(harness.model, mapping, runtime_for(), None)
    sqs = harness.client("sqs")
    for index in range(12):
        sqs.send_message(QueueUrl=queue_url, MessageBody=str(index))

    # When the poller drains the queue
    poller.start()
    try:
        wait_until(lambda: len(harness.records()) == 12, 30, "12 invocations")
    finally:
        poller.stop()

    # Then at most two invocations overlapped at any moment, and two did (the cap was used)
    spans = [(r["start"], r["end"]) for r in harness.records()]
    most_at_once = max(sum(1 for start, end in spans if start <= moment < end) for moment, _ in spans)
    assert most_at_once == 2
    assert sum(r["records"] for r in harness.records()) == 12
    assert _queue_depth(harness, queue_url) == 0


def test_duplicate_chaos_delivers_the_same_message_twice(
    harness: Harness, runtime_for: Callable[..., FunctionRuntime]
) -> None:
    # Given chaos that duplicates every delivery
    queue_url, queue_arn = _queue(harness, harness.unique("dup"))
    harness.add_function("RecorderFunction", "handlers.recorder")
    chaos = ChaosConfig.parse("duplicate=1", seed=3)
    poller = SqsPoller(harness.model, SqsMapping("DupMapping", "RecorderFunction", queue_url, queue_arn),
                       runtime_for(chaos=chaos), chaos)
    harness.client("sqs").send_message(QueueUrl=queue_url, MessageBody="once")

    # When the message is delivered
    poller.start()
    try:
        wait_until(lambda: poller.settled == 2, 15, "both deliveries to finish and be settled")
    finally:
        poller.stop()

    # Then the handler saw it twice with the same id and body, the duplicate was counted, and it is gone
    first, second = harness.records()
    assert (first["messageId"], first["body"]) == (second["messageId"], second["body"])
    assert chaos.stats()["duplicate"] == 1
    assert json.loads((harness.data_dir / "chaos.json").read_text())["duplicate"] == 1
    assert _queue_depth(harness, queue_url) == 0


def test_disabled_mapping_gets_no_poller(harness: Harness, runtime_for: Callable[..., FunctionRuntime]) -> None:
    harness.add_function("RecorderFunction", "handlers.recorder")
    harness.model.sqs_mappings = [
        SqsMapping("On", "RecorderFunction", "http://q/on", f"arn:aws:sqs:{REGION}:{ACCOUNT}:on"),
        SqsMapping("Off", "RecorderFunction", "http://q/off", f"arn:aws:sqs:{REGION}:{ACCOUNT}:off", enabled=False),
    ]
    sources = build_event_sources(harness.model, runtime_for(), None)
    assert [source.name for source in sources] == ["On (sqs:on)"]
