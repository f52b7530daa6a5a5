"""TtlSweeper: DynamoDB's TTL deletion, which moto lacks, against moto in-process (mock_aws)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from busline.localcloud import ttl_sweeper
from busline.localcloud.in_process import provision_in_process
from busline.localcloud.model import LocalCloudError
from busline.localcloud.ttl_sweeper import OLDEST_EXPIRY_S, TtlSweeper, interval_from_environment

REPO = Path(__file__).resolve().parents[3]
REGION = "us-east-1"
NOW = 1_750_000_000.0


@pytest.fixture
def dynamodb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield boto3.client("dynamodb", region_name=REGION)


def make_table(dynamodb: Any, name: str, *, ttl_attribute: str | None = "expiresAt", sort_key: bool = False) -> str:
    keys = [{"AttributeName": "pk", "KeyType": "HASH"}]
    attributes = [{"AttributeName": "pk", "AttributeType": "S"}]
    if sort_key:
        keys.append({"AttributeName": "sk", "KeyType": "RANGE"})
        attributes.append({"AttributeName": "sk", "AttributeType": "N"})
    description = dynamodb.create_table(
        TableName=name, KeySchema=keys, AttributeDefinitions=attributes, BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )["TableDescription"]
    if ttl_attribute:
        dynamodb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attribute})
    return str(description["LatestStreamArn"])


def put(dynamodb: Any, table: str, pk: str, **attributes: dict[str, str]) -> None:
    dynamodb.put_item(TableName=table, Item={"pk": {"S": pk}, **attributes})


def remaining(dynamodb: Any, table: str) -> set[str]:
    return {item["pk"]["S"] for item in dynamodb.scan(TableName=table)["Items"]}


def stream_events(stream_arn: str) -> list[tuple[str, str]]:
    streams = boto3.client("dynamodbstreams", region_name=REGION)
    [shard] = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]
    iterator = streams.get_shard_iterator(
        StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    return [(record["eventName"], record["dynamodb"]["Keys"]["pk"]["S"])
            for record in streams.get_records(ShardIterator=iterator)["Records"]]


def test_a_sweep_deletes_exactly_the_items_whose_number_ttl_has_passed(dynamodb: Any) -> None:
    # Given a table with TTL on expiresAt and items on every side of "expired"
    stream = make_table(dynamodb, "tasks")
    put(dynamodb, "tasks", "expired", expiresAt={"N": str(int(NOW) - 1)})
    put(dynamodb, "tasks", "expired-fraction", expiresAt={"N": str(NOW - 0.5)})
    put(dynamodb, "tasks", "due-now", expiresAt={"N": str(int(NOW))})
    put(dynamodb, "tasks", "future", expiresAt={"N": str(int(NOW) + 3600)})
    put(dynamodb, "tasks", "running")  # no TTL attribute: never expires
    put(dynamodb, "tasks", "text-ttl", expiresAt={"S": "1"})  # not a Number: DynamoDB ignores it
    put(dynamodb, "tasks", "ancient", expiresAt={"N": str(int(NOW - OLDEST_EXPIRY_S) - 1)})
    # When one sweep runs at NOW
    deleted = TtlSweeper(dynamodb, clock=lambda: NOW).sweep_once()
    # Then only the two items that expired before NOW are gone
    assert deleted == {"tasks": 2}
    assert remaining(dynamodb, "tasks") == {"due-now", "future", "running", "text-ttl", "ancient"}
    # And the stream saw a REMOVE for each, as a TTL deletion on AWS does
    removes = [key for name, key in stream_events(stream) if name == "REMOVE"]
    assert sorted(removes) == ["expired", "expired-fraction"]


def test_tables_without_ttl_or_with_it_disabled_are_left_alone(dynamodb: Any) -> None:
    # Given a table without TTL and one whose TTL was turned off, both holding "expired" values
    make_table(dynamodb, "plain", ttl_attribute=None)
    make_table(dynamodb, "switched-off")
    dynamodb.update_time_to_live(
        TableName="switched-off", TimeToLiveSpecification={"Enabled": False, "AttributeName": "expiresAt"})
    for table in ("plain", "switched-off"):
        put(dynamodb, table, "old", expiresAt={"N": "1"})
    # When a sweep runs / Then nothing is deleted
    assert TtlSweeper(dynamodb, clock=lambda: NOW).sweep_once() == {}
    assert remaining(dynamodb, "plain") == remaining(dynamodb, "switched-off") == {"old"}


def test_a_composite_key_and_a_custom_attribute_name_page_by_page(
    dynamodb: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a hash+range table whose TTL attribute is "ttl", scanned two items a page
    monkeypatch.setattr(ttl_sweeper, "SCAN_PAGE_ITEMS", 2)
    make_table(dynamodb, "events", ttl_attribute="ttl", sort_key=True)
    for index in range(7):
        put(dynamodb, "events", f"e{index}", sk={"N": str(index)},
            ttl={"N": str(int(NOW) - 10 if index % 2 == 0 else int(NOW) + 10)})
    # When a sweep runs / Then the four expired items are deleted by their full key, across pages
    assert TtlSweeper(dynamodb, clock=lambda: NOW).sweep_once() == {"events": 4}
    assert remaining(dynamodb, "events") == {"e1", "e3", "e5"}


def test_an_item_whose_ttl_moved_after_the_scan_is_kept(dynamodb: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an expired item that someone extends between the sweeper's scan and its delete
    make_table(dynamodb, "tasks")
    put(dynamodb, "tasks", "extended", expiresAt={"N": str(int(NOW) - 1)})
    sweeper = TtlSweeper(dynamodb, clock=lambda: NOW)
    scan = dynamodb.scan

    def scan_then_extend(**request: Any) -> Any:
        page = scan(**request)
        put(dynamodb, "tasks", "extended", expiresAt={"N": str(int(NOW) + 3600)})
        return page

    monkeypatch.setattr(dynamodb, "scan", scan_then_extend)
    # When the sweep runs / Then the conditional delete leaves it, as the item is no longer expired
    assert sweeper.sweep_once() == {}
    assert remaining(dynamodb, "tasks") == {"extended"}


def test_the_template_tasks_table_gets_ttl_from_provisioning_and_is_swept(dynamodb: Any) -> None:
    # Given template.yaml provisioned in-process (the provisioner applies TimeToLiveSpecification)
    stack = provision_in_process(REPO / "template.yaml")
    table = stack.name("TasksTable")
    assert dynamodb.describe_time_to_live(TableName=table)["TimeToLiveDescription"] == {
        "TimeToLiveStatus": "ENABLED", "AttributeName": "expiresAt"}
    # And a finished task past its retention next to a running one
    now = time.time()
    put_task = {"owner": {"S": "alice"}, "createdAt": {"S": "2025-01-01T00:00:00Z"}}
    dynamodb.put_item(TableName=table, Item={"taskId": {"S": "old"}, "expiresAt": {"N": str(int(now) - 60)}, **put_task})
    dynamodb.put_item(TableName=table, Item={"taskId": {"S": "running"}, **put_task})
    # When a sweep runs
    deleted = TtlSweeper(dynamodb).sweep_once()
    # Then only the finished task is gone
    assert deleted == {table: 1}
    assert [item["taskId"]["S"] for item in dynamodb.scan(TableName=table)["Items"]] == ["running"]


def test_the_thread_sweeps_on_its_interval_and_stops_promptly(dynamodb: Any) -> None:
    # Given an expired item and a sweeper every 50 ms
    make_table(dynamodb, "tasks")
    put(dynamodb, "tasks", "expired", expiresAt={"N": str(int(time.time()) - 60)})
    put(dynamodb, "tasks", "future", expiresAt={"N": str(int(time.time()) + 3600)})
    sweeper = TtlSweeper(dynamodb, interval_s=0.05)
    # When it runs in the background
    sweeper.start()
    try:
        deadline = time.monotonic() + 10
        while "expired" in remaining(dynamodb, "tasks") and time.monotonic() < deadline:
            time.sleep(0.05)
        # Then the expired item goes without anyone calling sweep_once
        assert remaining(dynamodb, "tasks") == {"future"}
    finally:
        started = time.monotonic()
        sweeper.stop()
    # And stop() ends the thread at once
    assert time.monotonic() - started < 2
    assert not sweeper._thread.is_alive()


def test_the_interval_comes_from_the_environment_and_must_be_a_positive_number(dynamodb: Any) -> None:
    assert interval_from_environment({}) == 60.0
    assert interval_from_environment({"BUSLINE_TTL_SWEEP_SECONDS": "2.5"}) == 2.5
    assert interval_from_environment({"BUSLINE_TTL_SWEEP_SECONDS": "0"}) == 0.0  # the cloud then runs no sweeper
    with pytest.raises(LocalCloudError, match="BUSLINE_TTL_SWEEP_SECONDS"):
        interval_from_environment({"BUSLINE_TTL_SWEEP_SECONDS": "soon"})
    with pytest.raises(LocalCloudError, match="positive"):
        TtlSweeper(dynamodb, interval_s=0)
