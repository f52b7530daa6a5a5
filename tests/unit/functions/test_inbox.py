"""InboxFunction (src/api/inbox.py): a file put under inbox/<owner>/<pipeline>/ in template.yaml's InboxBucket
starts that pipeline's task for that owner, once per object version, against moto with the template's
resources and environment; fed events/inbox_s3.json with the key and version of an object really put."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any
from urllib.parse import quote, quote_plus

import boto3
import pytest
from busline_core.inbox import Drop
from handler_kit import OWNER, REGION, Cloud, FakeLambdaContext, event_file, of_type

CSV = b"faa,name,alt,tzone\nAAA,Alpha,100,America/New_York\nBBB,Below,-5,America/New_York\n"


def inbox_bucket(cloud: Cloud) -> str:
    assert cloud.stack is not None
    return cloud.stack.name("InboxBucket")


def put_and_event(cloud: Cloud, key: str, body: bytes = CSV) -> tuple[dict[str, Any], dict[str, Any]]:
    """Put `key` in the inbox bucket; return the S3 answer and the event S3 would send for it."""
    bucket = inbox_bucket(cloud)
    put = boto3.client("s3", region_name=REGION).put_object(Bucket=bucket, Key=key, Body=body)
    event = copy.deepcopy(event_file("inbox_s3.json"))
    s3 = event["Records"][0]["s3"]
    s3["bucket"].update(name=bucket, arn=f"arn:aws:s3:::{bucket}")
    s3["object"].update(key=quote_plus(key, safe="/"), size=len(body), eTag=put["ETag"].strip('"'),
                        versionId=put["VersionId"])
    return put, event


def tasks_of(cloud: Cloud, owner: str) -> list[dict[str, Any]]:
    table = boto3.resource("dynamodb", region_name=REGION).Table(cloud.tasks_table)
    return [item for item in table.scan(ConsistentRead=True)["Items"] if item["owner"] == owner]


def test_a_dropped_file_starts_its_pipelines_task_as_the_owner_reading_a_copy_of_that_version(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext
) -> None:
    # Given the inbox function and a CSV put under the owner's airports folder of the inbox
    inbox = load_handler("api/inbox")
    key = f"inbox/{OWNER}/airports/new airports.csv"
    put, event = put_and_event(cloud, key)
    task_id = Drop(bucket=inbox_bucket(cloud), key=key, version_id=put["VersionId"], sequencer="").task_id

    # When S3 delivers the event
    answer = inbox.lambda_handler(event, context)

    # Then one airports task is recorded for the owner, under the id of that object version
    assert answer == {"drops": [{"key": key, "taskId": task_id}]}
    [task] = tasks_of(cloud, OWNER)
    assert (task["taskId"], task["pipeline"], task["status"]) == (task_id, "airports", "ACCEPTED")
    # And its source is the copy of that version in the owner's uploads, the rest of the spec the pipeline's
    spec = json.loads(task["spec"])
    staged = f"uploads/{OWNER}/inbox/{task_id}/new airports.csv"
    assert (spec["source"]["uri"], spec["source"]["format"]) == (f"s3://{cloud.bucket}/{quote(staged)}", "csv")
    assert spec["target"]["table"] == "airports"
    copied = boto3.client("s3", region_name=REGION).get_object(Bucket=cloud.bucket, Key=staged)["Body"].read()
    assert copied == CSV
    # And TaskSubmitted was published once, with the PUT's request id as the correlation id
    [submitted] = of_type(cloud.published(), "TaskSubmitted")
    assert submitted["detail"] == {"taskId": task_id, "correlationId": "C3D13FE58DE4C810", "staging": None, "reading": None}


def test_a_repeated_delivery_of_the_same_version_records_nothing_new(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext
) -> None:
    # Given a dropped file whose task was started, and whose extract has begun
    inbox = load_handler("api/inbox")
    _, event = put_and_event(cloud, f"inbox/{OWNER}/airports/once.csv")
    [first] = inbox.lambda_handler(event, context)["drops"]
    table = boto3.resource("dynamodb", region_name=REGION).Table(cloud.tasks_table)
    table.update_item(Key={"taskId": first["taskId"]}, UpdateExpression="SET #s = :s",
                      ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":s": "EXTRACTING"})
    before = tasks_of(cloud, OWNER)
    cloud.published()

    # When S3 delivers the same event twice more
    answers = [inbox.lambda_handler(event, context)["drops"] for _ in range(2)]

    # Then both name the same task, the table is unchanged and nothing is published
    assert answers == [[first], [first]]
    assert tasks_of(cloud, OWNER) == before
    assert cloud.published() == []


def test_a_second_put_of_the_key_is_another_version_and_another_task(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext
) -> None:
    # Given a key put twice (the bucket versions it)
    inbox = load_handler("api/inbox")
    key = f"inbox/{OWNER}/airports/daily.csv"
    _, first_event = put_and_event(cloud, key)
    _, second_event = put_and_event(cloud, key, CSV + b"CCC,Charlie,20,America/Chicago\n")
    # When both events are delivered
    [first] = inbox.lambda_handler(first_event, context)["drops"]
    [second] = inbox.lambda_handler(second_event, context)["drops"]
    # Then each version has its task, reading its own bytes
    assert first["taskId"] != second["taskId"]
    assert len(tasks_of(cloud, OWNER)) == 2
    s3 = boto3.client("s3", region_name=REGION)
    sizes = [s3.head_object(Bucket=cloud.bucket, Key=f"uploads/{OWNER}/inbox/{outcome['taskId']}/daily.csv")[
        "ContentLength"] for outcome in (first, second)]
    assert sizes == [len(CSV), len(CSV) + 31]


@pytest.mark.parametrize(("key", "reason"), [
    (f"inbox/{OWNER}/no_such_pipeline/a.csv", "pipeline no_such_pipeline not found"),
    (f"inbox/{OWNER}/a.csv", "must be inbox/<owner>/<pipeline>/<file>"),
    (f"inbox/~{base64.urlsafe_b64encode(OWNER.encode()).decode().rstrip('=')}/airports/a.csv",
     "is not an owner's id as its uploads spell it"),
    (f"inbox/{OWNER}/airports/", "names a folder, not a file"),
])
def test_a_key_no_retry_can_mend_is_logged_and_dropped_without_a_task_or_a_copy(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext, key: str, reason: str
) -> None:
    # Given an object whose key names an unknown pipeline, no pipeline, an owner spelt otherwise than its
    # uploads are, or a folder
    inbox = load_handler("api/inbox")
    _, event = put_and_event(cloud, key)
    # When S3 delivers it
    answer = inbox.lambda_handler(event, context)
    # Then the handler returns (Lambda does not retry) saying why, and nothing is recorded, copied or published
    [outcome] = answer["drops"]
    assert outcome["key"] == key
    assert reason in outcome["refused"]
    assert tasks_of(cloud, OWNER) == []
    assert boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=cloud.bucket, Prefix="uploads/")[
        "KeyCount"] == 0
    assert cloud.published() == []


def test_a_version_deleted_before_its_copy_is_dropped_not_retried(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext
) -> None:
    # Given a dropped file whose version was deleted before S3's event was handled
    inbox = load_handler("api/inbox")
    key = f"inbox/{OWNER}/airports/gone.csv"
    put, event = put_and_event(cloud, key)
    boto3.client("s3", region_name=REGION).delete_object(Bucket=inbox_bucket(cloud), Key=key,
                                                         VersionId=put["VersionId"])
    # When the event is delivered / Then it is refused as unreadable, and no task is recorded
    [outcome] = inbox.lambda_handler(event, context)["drops"]
    assert "cannot be copied (NoSuchVersion)" in outcome["refused"]
    assert tasks_of(cloud, OWNER) == []
