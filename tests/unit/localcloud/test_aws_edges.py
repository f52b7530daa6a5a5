"""Where moto answered otherwise than AWS documents, the local cloud's moto answers as AWS does
(moto_patches.apply_aws_edges; found by `make conformance-peer`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from busline.localcloud.moto_patches import _template_with_values, apply_aws_edges
from busline.localcloud.testing import moto_server


@pytest.fixture(scope="module")
def aws() -> Iterator[Any]:
    apply_aws_edges()
    with moto_server() as endpoint:
        def client(service: str) -> Any:
            return boto3.client(  # type: ignore[call-overload]
                service, endpoint_url=endpoint, region_name="us-east-1",
                aws_access_key_id="testing", aws_secret_access_key="testing",
            )  # fmt: skip
        yield client


def test_a_write_that_changes_nothing_writes_no_stream_record(aws: Any) -> None:
    """https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Streams.html: a record is written
    only if the item is actually modified."""
    dynamodb, streams = aws("dynamodb"), aws("dynamodbstreams")
    table = dynamodb.create_table(
        TableName="edges", BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )["TableDescription"]  # fmt: skip
    # Given an item written, then written again as it is, then updated to the value it holds, then changed
    item = {"pk": {"S": "a"}, "n": {"N": "1"}}
    dynamodb.put_item(TableName="edges", Item=item)
    dynamodb.put_item(TableName="edges", Item=item)
    dynamodb.update_item(TableName="edges", Key={"pk": {"S": "a"}}, UpdateExpression="SET n = :n",
                         ExpressionAttributeValues={":n": {"N": "1"}})
    dynamodb.update_item(TableName="edges", Key={"pk": {"S": "a"}}, UpdateExpression="SET n = :n",
                         ExpressionAttributeValues={":n": {"N": "2"}})
    # When the stream is read
    shard = streams.describe_stream(StreamArn=table["LatestStreamArn"])["StreamDescription"]["Shards"][0]
    iterator = streams.get_shard_iterator(StreamArn=table["LatestStreamArn"], ShardId=shard["ShardId"],
                                          ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    records = streams.get_records(ShardIterator=iterator)["Records"]
    # Then only the insert and the real change are there
    assert [(record["eventName"], record["dynamodb"]["NewImage"]["n"]["N"]) for record in records] == [
        ("INSERT", "1"), ("MODIFY", "2")
    ]


def test_an_input_transformer_quotes_strings_in_json_positions_only(aws: Any) -> None:
    """https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-transform-target-input.html"""
    events, sqs = aws("events"), aws("sqs")
    queue = sqs.create_queue(QueueName="edges")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="edges", EventPattern=json.dumps({"source": ["edges"]}))
    events.put_targets(Rule="edges", Targets=[{
        "Id": "q", "Arn": queue_arn,
        "InputTransformer": {
            "InputPathsMap": {"kind": "$.detail.kind", "count": "$.detail.count"},
            "InputTemplate": '{"kind": <kind>, "count": <count>, "text": "a <kind> of <count>"}',
        },
    }])  # fmt: skip
    # When an event matching the rule is put
    answer = events.put_events(Entries=[{"Source": "edges", "DetailType": "Happened",
                                         "Detail": json.dumps({"kind": "created", "count": 3})}])
    assert answer["FailedEntryCount"] == 0
    # Then the target gets strings quoted where a JSON value goes, and as text inside a string
    body = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)["Messages"][0]["Body"]
    assert json.loads(body) == {"kind": "created", "count": 3, "text": "a created of 3"}


def test_template_values_are_escaped_inside_string_literals() -> None:
    template = '{"a": "say \\"<x>\\"", "b": <x>, "c": <obj>}'
    filled = _template_with_values(template, {"x": 'he said "hi"', "obj": {"k": [1]}})
    assert json.loads(filled) == {"a": 'say "he said "hi""', "b": 'he said "hi"', "c": {"k": [1]}}


def test_a_schedule_expression_of_no_aws_form_is_refused(aws: Any) -> None:
    """https://docs.aws.amazon.com/scheduler/latest/APIReference/API_CreateSchedule.html"""
    scheduler = aws("scheduler")
    target = {"Arn": "arn:aws:lambda:us-east-1:123456789012:function:f",
              "RoleArn": "arn:aws:iam::123456789012:role/r"}
    for expression in ("rate(5 minutes)", "cron(0 12 * * ? *)", "at(2030-01-01T00:00:00)"):
        scheduler.create_schedule(Name=f"ok-{len(expression)}", ScheduleExpression=expression,
                                  FlexibleTimeWindow={"Mode": "OFF"}, Target=target)
    with pytest.raises(ClientError) as refused:
        scheduler.create_schedule(Name="bad", ScheduleExpression="every night",
                                  FlexibleTimeWindow={"Mode": "OFF"}, Target=target)
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert sorted(s["Name"] for s in scheduler.list_schedules()["Schedules"]) == ["ok-15", "ok-18", "ok-23"]
