"""S3 event notifications (SAM S3 event, queue, EventBridge) and SNS -> Lambda subscriptions, on the running
conformance cloud: NotifiedBucket (versioned) triggers S3RecorderFunction for ObjectCreated:* under drop/
ending in .csv, notifies RemovedObjectsQueue of ObjectRemoved:* and puts its events on the default bus, where
ObjectCreatedRule routes them to ObjectCreatedQueue; SnsRecorderFunction is subscribed to NoticeTopic with the
filter policy kind = wanted. The recorder functions write each record they get into RecordsTable."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from conformance_support import Aws, wait_until

from busline.localcloud.testing import RunningCloud

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

DELIVERY_S = 60.0  # covers a cold start of the recorder function


@pytest.fixture(scope="module")
def s3(cloud: RunningCloud) -> Any:
    return _client(cloud, "s3")


@pytest.fixture(scope="module")
def sns(cloud: RunningCloud) -> Any:
    return _client(cloud, "sns")


def _client(cloud: RunningCloud, service: Any) -> Any:
    endpoints = cloud.endpoints
    return boto3.client(service, endpoint_url=endpoints["aws"], region_name=endpoints["region"],
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def drain(aws: Aws, queue_url: str) -> list[dict[str, Any]]:
    """Every message on the queue, bodies parsed (S3 and EventBridge send inside the request that caused it)."""
    bodies: list[dict[str, Any]] = []
    while True:
        messages = aws.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return bodies
        for message in messages:
            bodies.append(json.loads(message["Body"]))
            aws.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def s3_records(aws: Aws, run_id: str) -> list[dict[str, Any]]:
    return [json.loads(item["record"]) for item in aws.records(f"s3#{run_id}")]


def test_a_matching_put_invokes_the_function_with_s3s_record(cloud: RunningCloud, aws: Aws, s3: Any,
                                                             run_id: str) -> None:
    """https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html"""
    # Given S3RecorderFunction on ObjectCreated:* under drop/ ending in .csv
    bucket = aws.outputs["NotifiedBucketName"]
    # When two keys that miss a rule are put, then one that matches both (with a space, URL-encoded in events)
    s3.put_object(Bucket=bucket, Key=f"drop/{run_id}/notes.txt", Body=b"x")
    s3.put_object(Bucket=bucket, Key=f"other/{run_id}/a.csv", Body=b"x")
    put = s3.put_object(Bucket=bucket, Key=f"drop/{run_id}/jan 1.csv", Body=b"a,b\n1,2\n")

    # Then the function gets exactly one record: the matching object's, as S3 shapes it
    records = wait_until(lambda: s3_records(aws, run_id) or None, DELIVERY_S, "the S3 record")
    assert len(records) == 1
    record = records[0]
    assert (record["eventVersion"], record["eventSource"], record["eventName"]) == (
        "2.1", "aws:s3", "ObjectCreated:Put")
    assert record["awsRegion"] == cloud.endpoints["region"]
    assert record["s3"]["bucket"]["name"] == bucket
    assert record["s3"]["bucket"]["arn"] == f"arn:aws:s3:::{bucket}"
    assert record["s3"]["object"]["key"] == f"drop/{run_id}/jan+1.csv"
    assert record["s3"]["object"]["size"] == 8
    assert record["s3"]["object"]["eTag"] == put["ETag"].strip('"')
    assert record["s3"]["object"]["versionId"] == put["VersionId"]
    assert len(record["s3"]["object"]["sequencer"]) == 18
    configuration = s3.get_bucket_notification_configuration(Bucket=bucket)["LambdaFunctionConfigurations"]
    assert record["s3"]["configurationId"] == configuration[0]["Id"]


def test_a_failing_function_is_retried_once_then_its_event_goes_to_on_failure(aws: Aws, s3: Any,
                                                                             run_id: str) -> None:
    """https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html"""
    # Given S3RecorderFunction with MaximumRetryAttempts 1 and an OnFailure queue; a key holding "fail" fails it
    bucket, failures = aws.outputs["NotifiedBucketName"], aws.outputs["S3RecorderFailureQueueUrl"]
    key = f"drop/{run_id}/fail.csv"
    # When the object is put
    s3.put_object(Bucket=bucket, Key=key, Body=b"a\n")

    # Then an invocation record naming the event arrives on the OnFailure queue after two attempts
    def ours() -> list[dict[str, Any]] | None:
        found = [body for body in drain(aws, failures)
                 if body["requestPayload"]["Records"][0]["s3"]["object"]["key"] == key]
        return found or None

    records = wait_until(ours, DELIVERY_S, "the invocation record on the OnFailure queue")
    assert len(records) == 1
    assert records[0]["requestContext"]["condition"] == "RetriesExhausted"
    assert records[0]["requestContext"]["approximateInvokeCount"] == 2
    assert records[0]["responseContext"]["functionError"] == "Unhandled"
    assert len(s3_records(aws, run_id)) == 2


def test_object_created_reaches_eventbridge_and_a_delete_reaches_the_queue(aws: Aws, s3: Any, run_id: str) -> None:
    """https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html"""
    # Given NotifiedBucket with EventBridge enabled and RemovedObjectsQueue for ObjectRemoved:*
    bucket = aws.outputs["NotifiedBucketName"]
    key = f"plain/{run_id}/a b.json"
    # When an object is put and then deleted with its version id
    put = s3.put_object(Bucket=bucket, Key=key, Body=b"{}")
    s3.delete_object(Bucket=bucket, Key=key, VersionId=put["VersionId"])

    # Then ObjectCreatedRule delivers S3's "Object Created" event, the key as it is
    created = [event for event in drain(aws, aws.outputs["ObjectCreatedQueueUrl"])
               if event["detail"]["object"]["key"] == key]
    assert len(created) == 1
    event = created[0]
    assert (event["source"], event["detail-type"], event["resources"]) == (
        "aws.s3", "Object Created", [f"arn:aws:s3:::{bucket}"])
    assert event["detail"]["object"]["version-id"] == put["VersionId"]
    assert (event["detail"]["object"]["size"], event["detail"]["reason"]) == (2, "PutObject")
    # And the queue gets S3's ObjectRemoved:Delete record, URL-encoded key, version id, no size
    removed = [body["Records"][0] for body in drain(aws, aws.outputs["RemovedObjectsQueueUrl"]) if "Records" in body]
    ours = [record for record in removed if record["s3"]["object"]["key"] == f"plain/{run_id}/a+b.json"]
    assert len(ours) == 1
    assert ours[0]["eventName"] == "ObjectRemoved:Delete"
    assert sorted(ours[0]["s3"]["object"]) == ["key", "sequencer", "versionId"]


def test_sns_invokes_the_function_only_for_messages_its_filter_policy_accepts(aws: Aws, sns: Any,
                                                                             run_id: str) -> None:
    """https://docs.aws.amazon.com/lambda/latest/dg/with-sns.html"""
    # Given SnsRecorderFunction subscribed to NoticeTopic with kind = wanted
    topic = aws.outputs["NoticeTopicArn"]

    def attributes(kind: str) -> dict[str, Any]:
        return {"kind": {"DataType": "String", "StringValue": kind}, "run": {"DataType": "String", "StringValue": run_id}}

    # When a message of another kind is published, then a wanted one
    sns.publish(TopicArn=topic, Message="not for you", MessageAttributes=attributes("unwanted"))
    published = sns.publish(TopicArn=topic, Message="for you", Subject="Hi", MessageAttributes=attributes("wanted"))

    # Then the function gets exactly the wanted one, in SNS's record shape
    items = wait_until(lambda: aws.records(f"sns#{run_id}") or None, DELIVERY_S, "the SNS record")
    assert len(items) == 1
    record = json.loads(items[0]["record"])
    assert (record["EventSource"], record["EventVersion"]) == ("aws:sns", "1.0")
    assert record["EventSubscriptionArn"].startswith(f"{topic}:")
    message = record["Sns"]
    assert (message["Type"], message["MessageId"], message["TopicArn"], message["Subject"], message["Message"]) == (
        "Notification", published["MessageId"], topic, "Hi", "for you")
    assert message["MessageAttributes"]["kind"] == {"Type": "String", "Value": "wanted"}
