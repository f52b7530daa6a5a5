"""DynamoDB Streams forget as AWS does (a record after 24 hours, a shard iterator 15 minutes after it was
returned), and the local cloud's stream poller goes on the way Lambda's does when either happens."""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from busline.localcloud import moto_patches
from busline.localcloud.event_sources import StreamPoller
from busline.localcloud.model import CloudModel, Endpoints, StreamMapping
from busline.localcloud.runtime import InvocationResult
from busline.localcloud.testing import moto_server

REGION = "us-east-1"


@pytest.fixture(scope="module")
def model() -> Iterator[CloudModel]:
    moto_patches.apply_aws_edges()
    with moto_server() as endpoint:
        host, port = endpoint.removeprefix("http://").split(":")
        yield CloudModel(region=REGION, account_id="123456789012",
                         endpoints=Endpoints.for_base_port(host, int(port) - 3))


def client(model: CloudModel, service: str) -> Any:
    return boto3.client(service, endpoint_url=model.endpoints.aws, region_name=REGION,  # type: ignore[call-overload]
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def streamed_table(model: CloudModel) -> tuple[str, str]:
    table = f"retention-{uuid.uuid4().hex[:8]}"
    stream_arn = client(model, "dynamodb").create_table(
        TableName=table, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )["TableDescription"]["LatestStreamArn"]
    return table, stream_arn


def iterator_at(model: CloudModel, stream_arn: str, kind: str = "TRIM_HORIZON") -> str:
    streams = client(model, "dynamodbstreams")
    shard = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"][0]["ShardId"]
    return str(streams.get_shard_iterator(StreamArn=stream_arn, ShardId=shard, ShardIteratorType=kind)["ShardIterator"])


def keys_of(records: list[dict[str, Any]]) -> list[str]:
    return [record["dynamodb"]["Keys"]["pk"]["S"] for record in records]


def test_a_record_past_the_retention_is_trimmed_and_reading_it_is_refused(
    model: CloudModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a retention of 0.3 s, a record written, an iterator at it, and a second record written 0.4 s later
    monkeypatch.setattr(moto_patches, "STREAM_RECORD_RETENTION", dt.timedelta(seconds=0.3))
    table, stream_arn = streamed_table(model)
    dynamodb, streams = client(model, "dynamodb"), client(model, "dynamodbstreams")
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "old"}})
    at_old = iterator_at(model, stream_arn)
    old_sequence = streams.get_records(ShardIterator=at_old)["Records"][0]["dynamodb"]["SequenceNumber"]
    time.sleep(0.4)
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "new"}})
    # When the stream is read from its oldest record kept, and from the trimmed one
    kept = streams.get_records(ShardIterator=iterator_at(model, stream_arn))["Records"]
    with pytest.raises(ClientError) as trimmed:
        streams.get_records(ShardIterator=at_old)
    # Then only the new record is kept, with the sequence number after the old one's, and the old one is refused
    assert keys_of(kept) == ["new"]
    assert int(kept[0]["dynamodb"]["SequenceNumber"]) == int(old_sequence) + 1
    assert trimmed.value.response["Error"]["Code"] == "TrimmedDataAccessException"


def test_a_shard_iterator_serves_again_within_its_lifetime_and_expires_after_it(
    model: CloudModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an iterator lifetime of 0.3 s and a record
    monkeypatch.setattr(moto_patches, "SHARD_ITERATOR_LIFETIME_S", 0.3)
    table, stream_arn = streamed_table(model)
    client(model, "dynamodb").put_item(TableName=table, Item={"pk": {"S": "a"}})
    streams = client(model, "dynamodbstreams")
    iterator = iterator_at(model, stream_arn)
    # When the iterator is used twice at once, and again 0.4 s later
    first, again = (keys_of(streams.get_records(ShardIterator=iterator)["Records"]) for _ in range(2))
    time.sleep(0.4)
    with pytest.raises(ClientError) as expired:
        streams.get_records(ShardIterator=iterator)
    # Then it served the same record twice, then was refused as expired; the moto keeps no expired iterator
    assert (first, again) == (["a"], ["a"])
    assert expired.value.response["Error"]["Code"] == "ExpiredIteratorException"
    from moto.dynamodbstreams.models import dynamodbstreams_backends

    backend = dynamodbstreams_backends["123456789012"][REGION]
    assert all(time.time() - held.returned_at < 0.3 for held in backend.shard_iterators.values())


class SlowFirstBatch:
    """Stands in for FunctionRuntime: the first batch takes `hold_s` (longer than the iterator's life)."""

    def __init__(self, hold_s: float) -> None:
        self.hold_s = hold_s
        self.batches: list[list[str]] = []
        self.arrived = threading.Condition()

    def invoke(self, function: str, event: dict[str, Any], trigger: str) -> InvocationResult:
        if not self.batches:
            time.sleep(self.hold_s)
        with self.arrived:
            self.batches.append(keys_of(event["Records"]))
            self.arrived.notify_all()
        return InvocationResult(ok=True, payload=None, error=None, error_type=None, duration_ms=0.0)

    def wait_for(self, count: int, timeout_s: float) -> list[str]:
        with self.arrived:
            self.arrived.wait_for(lambda: sum(map(len, self.batches)) >= count, timeout=timeout_s)
            return [key for batch in self.batches for key in batch]


def test_the_stream_poller_goes_on_after_its_iterator_expired_during_a_long_batch(
    model: CloudModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an iterator lifetime of 0.3 s and a function whose first batch takes 0.6 s
    monkeypatch.setattr(moto_patches, "SHARD_ITERATOR_LIFETIME_S", 0.3)
    table, stream_arn = streamed_table(model)
    runtime = SlowFirstBatch(hold_s=0.6)
    mapping = StreamMapping("RetentionMapping", "StreamFunction", table, stream_arn, batch_size=100,
                            max_batching_window_s=0.0)
    poller = StreamPoller(model, mapping, runtime, None)  # type: ignore[arg-type]
    poller.start()
    try:
        dynamodb = client(model, "dynamodb")
        # When one record is written, then two more while the first batch runs
        dynamodb.put_item(TableName=table, Item={"pk": {"S": "first"}})
        time.sleep(0.2)
        for key in ("second", "third"):
            dynamodb.put_item(TableName=table, Item={"pk": {"S": key}})
        delivered = runtime.wait_for(3, timeout_s=5)
        time.sleep(0.3)  # room for a duplicate to show
    finally:
        poller.stop()
    # Then every record is delivered once, in order, after the expired iterator was renewed
    assert delivered == ["first", "second", "third"]
    assert [key for batch in runtime.batches for key in batch] == ["first", "second", "third"]
