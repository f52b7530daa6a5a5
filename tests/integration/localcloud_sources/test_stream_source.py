"""StreamPoller against a real moto server: record shape, FilterCriteria, retries, bisect, OnFailure."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from sources_helpers import ACCOUNT, REGION, Harness, wait_until

from busline.localcloud.event_sources import StreamPoller
from busline.localcloud.model import LocalCloudError, StreamMapping
from busline.localcloud.runtime import FunctionRuntime

pytestmark = pytest.mark.integration


def _table(harness: Harness) -> tuple[str, str]:
    name = harness.unique("table")
    description = harness.client("dynamodb").create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )["TableDescription"]
    return name, description["LatestStreamArn"]


def _put(harness: Harness, table: str, pk: str, **attributes: Any) -> None:
    item: dict[str, Any] = {"pk": {"S": pk}}
    for name, value in attributes.items():
        item[name] = {"BOOL": value} if isinstance(value, bool) else {"S": str(value)}
    harness.client("dynamodb").put_item(TableName=table, Item=item)


def _failure_queue(harness: Harness) -> tuple[str, str]:
    name = harness.unique("stream-failures")
    url = harness.client("sqs").create_queue(QueueName=name)["QueueUrl"]
    return url, f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"


def _failure_records(harness: Harness, queue_url: str, expected: int) -> list[dict[str, Any]]:
    sqs = harness.client("sqs")
    bodies: list[dict[str, Any]] = []
    deadline = time.monotonic() + 20
    while len(bodies) < expected and time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10,
                                           WaitTimeSeconds=1).get("Messages", []):
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return bodies


def test_filter_criteria_drops_records_matching_no_pattern(
    harness: Harness, runtime_for: Callable[..., FunctionRuntime]
) -> None:
    # Given a mapping that only wants inserts whose new image has kind=keep
    table, stream_arn = _table(harness)
    harness.add_function("StreamFunction", "handlers.stream_recorder")
    mapping = StreamMapping(
        "FilteredMapping", "StreamFunction", table, stream_arn, batch_size=10,
        filter_patterns=[{"eventName": ["INSERT"], "dynamodb": {"NewImage": {"kind": {"S": ["keep"]}}}}],
    )
    poller = StreamPoller(harness.model, mapping, runtime_for(), None)
    poller.start()
    try:
        # When 3 matching inserts, 2 non-matching inserts and 1 matching modify are written
        for pk, kind in [("a", "keep"), ("b", "drop"), ("c", "keep"), ("d", "drop"), ("e", "keep")]:
            _put(harness, table, pk, kind=kind)
        _put(harness, table, "a", kind="keep", note="modified")
        wait_until(lambda: poller.settled == 6, 20, "all six changes dropped or delivered")
    finally:
        poller.stop()

    # Then exactly the three matching inserts were delivered, in order, in AWS's record shape
    delivered = harness.records()
    assert [record["dynamodb"]["Keys"]["pk"]["S"] for record in delivered] == ["a", "c", "e"]
    first = delivered[0]
    assert set(first) == {"eventID", "eventName", "eventVersion", "eventSource", "awsRegion", "dynamodb",
                          "eventSourceARN"}
    assert (first["eventName"], first["eventSource"], first["awsRegion"]) == ("INSERT", "aws:dynamodb", REGION)
    assert first["eventSourceARN"] == stream_arn
    assert {"ApproximateCreationDateTime", "Keys", "NewImage", "SequenceNumber", "SizeBytes",
            "StreamViewType"} <= set(first["dynamodb"])
    assert isinstance(first["dynamodb"]["ApproximateCreationDateTime"], int)
    assert first["dynamodb"]["NewImage"] == {"pk": {"S": "a"}, "kind": {"S": "keep"}}


def test_failure_after_retries_sends_the_failure_record_to_on_failure(
    harness: Harness, runtime_for: Callable[..., FunctionRuntime]
) -> None:
    # Given a mapping with one retry and an SQS OnFailure destination
    table, stream_arn = _table(harness)
    failures_url, failures_arn = _failure_queue(harness)
    harness.add_function("StreamFunction", "handlers.stream_recorder")
    mapping = StreamMapping("FailingMapping", "StreamFunction", table, stream_arn, batch_size=10,
                            max_retry_attempts=1, on_failure_arn=failures_arn)
    poller = StreamPoller(harness.model, mapping, runtime_for(), None)
    poller.start()
    try:
        # When a record the function cannot process is written, followed by a good one
        _put(harness, table, "bad", fail=True)
        failure_records = _failure_records(harness, failures_url, expected=1)
        _put(harness, table, "good")
        wait_until(lambda: any(r["dynamodb"]["Keys"]["pk"]["S"] == "good" for r in harness.records()),
                   20, "the good record after the failed one")
    finally:
        poller.stop()

    # Then the bad record was tried twice (1 + 1 retry), its failure record went to the queue, and the
    # shard moved on to the next record
    keys = [record["dynamodb"]["Keys"]["pk"]["S"] for record in harness.records()]
    assert keys == ["bad", "bad", "good"]
    assert len(failure_records) == 1
    failure = failure_records[0]
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert failure["requestContext"]["approximateInvokeCount"] == 2
    assert failure["requestContext"]["functionArn"] == harness.model.functions["StreamFunction"].arn
    assert failure["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST",
                                          "functionError": "Unhandled"}
    assert failure["version"] == "1.0"
    info = failure["DDBStreamBatchInfo"]
    assert info["batchSize"] == 1
    assert info["streamArn"] == stream_arn
    assert info["startSequenceNumber"] == info["endSequenceNumber"]
    assert info["shardId"].startswith("shardId-")


def test_bisect_isolates_the_bad_record(harness: Harness, runtime_for: Callable[..., FunctionRuntime]) -> None:
    # Given bisect on error, no retries, and a batching window that gathers four records into one batch
    table, stream_arn = _table(harness)
    failures_url, failures_arn = _failure_queue(harness)
    harness.add_function("StreamFunction", "handlers.stream_recorder")
    mapping = StreamMapping("BisectMapping", "StreamFunction", table, stream_arn, batch_size=10,
                            max_batching_window_s=1.5, max_retry_attempts=0, bisect_on_error=True,
                            on_failure_arn=failures_arn)
    poller = StreamPoller(harness.model, mapping, runtime_for(), None)
    poller.start()
    try:
        # When records 1, 2, 3 (bad), 4 arrive together
        for pk in ("r1", "r2", "r3", "r4"):
            _put(harness, table, pk, fail=(pk == "r3"))
        failure_records = _failure_records(harness, failures_url, expected=1)
        wait_until(lambda: len(harness.records()) == 10, 10, "all bisected deliveries")
    finally:
        poller.stop()

    # Then the batch was split [1-4] -> [1,2] ok, [3,4] -> [3] fails, [4] ok; only r3 is reported
    keys = [record["dynamodb"]["Keys"]["pk"]["S"] for record in harness.records()]
    assert keys == ["r1", "r2", "r3", "r4", "r1", "r2", "r3", "r4", "r3", "r4"]
    assert len(failure_records) == 1
    assert failure_records[0]["DDBStreamBatchInfo"]["batchSize"] == 1
    assert failure_records[0]["requestContext"]["approximateInvokeCount"] == 1


def test_invalid_filter_pattern_names_the_mapping(harness: Harness,
                                                  runtime_for: Callable[..., FunctionRuntime]) -> None:
    mapping = StreamMapping("BadFilter", "StreamFunction", "t", "arn:aws:dynamodb:us-east-1:1:table/t/stream/x",
                            filter_patterns=[{"eventName": "INSERT"}])
    with pytest.raises(LocalCloudError, match="BadFilter: FilterCriteria pattern 1 is invalid"):
        StreamPoller(harness.model, mapping, runtime_for(), None)


def test_report_batch_item_failures_checkpoints_at_the_first_failure(
    harness: Harness, runtime_for: Callable[..., FunctionRuntime]
) -> None:
    # Given ReportBatchItemFailures, one retry, and a window gathering three records into one batch
    table, stream_arn = _table(harness)
    failures_url, failures_arn = _failure_queue(harness)
    harness.add_function("PartialStreamFunction", "handlers.stream_partial")
    mapping = StreamMapping("CheckpointMapping", "PartialStreamFunction", table, stream_arn, batch_size=10,
                            max_batching_window_s=1.5, max_retry_attempts=1, report_batch_item_failures=True,
                            on_failure_arn=failures_arn)
    poller = StreamPoller(harness.model, mapping, runtime_for(), None)
    poller.start()
    try:
        # When s1, s2 (reported failed) and s3 arrive together
        for pk in ("s1", "s2", "s3"):
            _put(harness, table, pk, fail=(pk == "s2"))
        failure_records = _failure_records(harness, failures_url, expected=1)
    finally:
        poller.stop()

    # Then s1 was done once; s2 onward was retried once from the checkpoint, then reported
    keys = [record["dynamodb"]["Keys"]["pk"]["S"] for record in harness.records()]
    assert keys == ["s1", "s2", "s3", "s2", "s3"]
    assert len(failure_records) == 1
    info = failure_records[0]["DDBStreamBatchInfo"]
    assert info["batchSize"] == 2
    sequence = {record["dynamodb"]["Keys"]["pk"]["S"]: record["dynamodb"]["SequenceNumber"]
                for record in harness.records()}
    assert (info["startSequenceNumber"], info["endSequenceNumber"]) == (sequence["s2"], sequence["s3"])
