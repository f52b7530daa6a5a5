"""S3 event notifications and SNS subscriptions of the local cloud (busline.localcloud.notifications), on
tests/fixtures/notifications/template.yaml provisioned in-process (mock_aws) and its functions run by a real
FunctionRuntime. The shapes are checked against AWS's documentation, cited per test."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from busline.localcloud.in_process import ProvisionedStack, provision_in_process
from busline.localcloud.model import ProvisionError
from busline.localcloud.notifications import Notifications
from busline.localcloud.runtime import FunctionRuntime

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
TEMPLATE = FIXTURES / "notifications" / "template.yaml"
REGION = "us-east-1"
ACCOUNT = "123456789012"
WAIT_S = 60.0


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield


@pytest.fixture
def record_file(tmp_path: Path) -> Path:
    return tmp_path / "events.jsonl"


@pytest.fixture
def stack(aws: None, record_file: Path) -> ProvisionedStack:
    return provision_in_process(TEMPLATE, {"RecordFile": str(record_file)}, stack_name="t")


@pytest.fixture
def notifications(stack: ProvisionedStack, tmp_path: Path) -> Iterator[Notifications]:
    runtime = FunctionRuntime(stack.model, tmp_path)
    delivery = Notifications(stack.model, runtime, retry_delays_s=(0.1, 0.2))
    delivery.start()
    try:
        yield delivery
    finally:
        delivery.stop()
        runtime.close()


def client(service: Any) -> Any:
    return boto3.client(service, region_name=REGION)


def drain(queue_url: str) -> list[dict[str, Any]]:
    """Every message on a queue (deliveries happen inside the call that caused them), bodies parsed."""
    sqs = client("sqs")
    bodies: list[dict[str, Any]] = []
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10,
                                       MessageAttributeNames=["All"]).get("Messages", [])
        if not messages:
            return bodies
        for message in messages:
            bodies.append({"body": json.loads(message["Body"]), "attributes": message.get("MessageAttributes", {})})
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def without_test_events(bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """S3 sends an s3:TestEvent to a queue when the configuration is put; the tests look past it."""
    return [item for item in bodies if item["body"].get("Event") != "s3:TestEvent"]


def wait_settled(delivery: Notifications, count: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while delivery.invoker.settled < count:
        assert time.monotonic() < deadline, f"{delivery.invoker.settled} of {count} async invocations settled"
        time.sleep(0.05)


def recorded(record_file: Path) -> list[dict[str, Any]]:
    if not record_file.exists():
        return []
    return [json.loads(line) for line in record_file.read_text().splitlines()]


# -- provisioning ----------------------------------------------------------------------------------


def test_provisioning_puts_the_notification_configuration_and_records_function_targets(stack: ProvisionedStack) -> None:
    # Given the fixture template provisioned in-process
    model = stack.model
    # Then the SAM S3 event is an S3Trigger with its prefix and suffix
    assert [(t.logical_id, t.bucket, t.function, t.event, t.prefix, t.suffix) for t in model.s3_triggers] == [
        ("InboxBucket", "t-inboxbucket", "RecorderFunction", "s3:ObjectCreated:*", "inbox/", ".csv"),
    ]
    # And S3 holds it with the queue and topic configurations, under the same configuration ids
    s3 = client("s3")
    inbox = s3.get_bucket_notification_configuration(Bucket="t-inboxbucket")
    assert inbox["LambdaFunctionConfigurations"] == [{
        "Id": model.s3_triggers[0].configuration_id,
        "LambdaFunctionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:t-RecorderFunction",
        "Events": ["s3:ObjectCreated:*"],
        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "inbox/"},
                                           {"Name": "suffix", "Value": ".csv"}]}},
    }]
    plain = s3.get_bucket_notification_configuration(Bucket="t-plainbucket")
    assert [(c["QueueArn"], c["Events"]) for c in plain["QueueConfigurations"]] == [
        (stack.attribute("S3Queue", "Arn"), ["s3:ObjectCreated:*"])]
    assert [(c["TopicArn"], c["Events"]) for c in plain["TopicConfigurations"]] == [
        (stack.name("S3Topic"), ["s3:ObjectRemoved:*"])]
    # And the SAM SNS events are lambda subscriptions in moto, recorded with their filter policies
    assert [(t.logical_id, t.topic_arn, t.function, t.filter_policy) for t in model.sns_triggers] == [
        ("RecorderFunctionNotice", stack.name("NoticeTopic"), "RecorderFunction", {"kind": ["wanted"]}),
        ("DeadLetterFunctionAlarm", stack.name("AlarmTopic"), "DeadLetterFunction", None),
    ]
    protocols = {s["Endpoint"]: s["Protocol"] for s in
                 client("sns").list_subscriptions_by_topic(TopicArn=stack.name("NoticeTopic"))["Subscriptions"]}
    assert protocols[stack.attribute("RecorderFunction", "Arn")] == "lambda"
    # And each function's asynchronous-invocation settings are kept
    recorder, dead_letter = model.async_invoke["RecorderFunction"], model.async_invoke["DeadLetterFunction"]
    assert (recorder.max_retry_attempts, recorder.on_failure_arn, recorder.dead_letter_arn) == (
        1, stack.attribute("RecorderFunctionEventInvokeConfigOnFailureQueue", "Arn"), None)
    assert (dead_letter.max_retry_attempts, dead_letter.dead_letter_arn) == (
        0, stack.attribute("FunctionDeadLetterQueue", "Arn"))


BAD_NOTIFICATIONS = """
Transform: AWS::Serverless-2016-10-31
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: {functions}
      Handler: notified.record
      Runtime: python3.11
  Queue:
    Type: AWS::SQS::Queue
  Bucket:
    Type: AWS::S3::Bucket
    Properties:
      NotificationConfiguration:
{configuration}
"""


@pytest.mark.parametrize(("configuration", "refusal"), [
    pytest.param(
        "        LambdaConfigurations:\n          - Event: s3:ObjectCreated:*\n            Function: !GetAtt Fn.Arn\n",
        r"Bucket: NotificationConfiguration.LambdaConfigurations\[0\]: no AWS::Lambda::Permission lets "
        r"s3.amazonaws.com invoke Fn",
        id="function-without-permission"),
    pytest.param(
        "        QueueConfigurations:\n"
        "          - {Event: 's3:ObjectCreated:*', Queue: !GetAtt Queue.Arn, Filter: {S3Key: {Rules: [{Name: prefix, Value: in/}]}}}\n"
        "          - {Event: 's3:ObjectCreated:Put', Queue: !GetAtt Queue.Arn, Filter: {S3Key: {Rules: [{Name: prefix, Value: in/a}]}}}\n",
        r"QueueConfigurations\[1\]: overlaps NotificationConfiguration.QueueConfigurations\[0\]",
        id="overlapping-configurations"),
    pytest.param(
        "        QueueConfigurations:\n"
        "          - {Event: 's3:ObjectCreated:*', Queue: !GetAtt Queue.Arn, Filter: {S3Key: {Rules: [{Name: middle, Value: x}]}}}\n",
        r"filter rule name 'middle' must be prefix or suffix",
        id="unknown-filter-rule"),
])
def test_a_configuration_s3_would_refuse_is_refused_before_the_bucket_exists(
    aws: None, tmp_path: Path, configuration: str, refusal: str
) -> None:
    # Given a bucket notification configuration S3 refuses
    template = tmp_path / "template.yaml"
    template.write_text(BAD_NOTIFICATIONS.format(functions=FIXTURES / "functions", configuration=configuration))
    # When it is provisioned / Then the refusal names the bucket and the entry
    with pytest.raises(ProvisionError, match=refusal):
        provision_in_process(template, stack_name="bad")
    # And no bucket was created
    assert client("s3").list_buckets()["Buckets"] == []


def test_same_event_with_disjoint_prefixes_is_accepted(aws: None, tmp_path: Path) -> None:
    # Given two queue configurations for one event type whose prefixes cannot both match one key
    template = tmp_path / "template.yaml"
    template.write_text(BAD_NOTIFICATIONS.format(functions=FIXTURES / "functions", configuration=(
        "        QueueConfigurations:\n"
        "          - {Event: 's3:ObjectCreated:*', Queue: !GetAtt Queue.Arn, Filter: {S3Key: {Rules: [{Name: prefix, Value: a/}]}}}\n"
        "          - {Event: 's3:ObjectCreated:*', Queue: !GetAtt Queue.Arn, Filter: {S3Key: {Rules: [{Name: Prefix, Value: b/}]}}}\n"
    )))
    # When it is provisioned / Then both are in S3, the rule names in S3's lower case
    stack = provision_in_process(template, stack_name="ok")
    configurations = client("s3").get_bucket_notification_configuration(Bucket=stack.name("Bucket"))
    assert [c["Filter"]["Key"]["FilterRules"] for c in configurations["QueueConfigurations"]] == [
        [{"Name": "prefix", "Value": "a/"}], [{"Name": "prefix", "Value": "b/"}]]
    assert stack.model.s3_triggers == []


LAMBDA_SUBSCRIPTIONS = """
Transform: AWS::Serverless-2016-10-31
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: {functions}
      Handler: notified.record
      Runtime: python3.11
  Topic:
    Type: AWS::SNS::Topic
  OrdersTopic:
    Type: AWS::SNS::Topic
    Properties:
      FifoTopic: true
      TopicName: orders.fifo
  Subscription:
    Type: AWS::SNS::Subscription
    Properties:
      TopicArn: !Ref {topic}
      Protocol: lambda
      Endpoint: {endpoint}
"""


@pytest.mark.parametrize(("topic", "endpoint", "refusal"), [
    pytest.param("Topic", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:elsewhere",
                 "Subscription: 'arn:aws:lambda:us-east-1:123456789012:function:elsewhere' is not a function "
                 "of this template", id="foreign-function"),
    pytest.param("OrdersTopic", "!GetAtt Fn.Arn", "Subscription: a FIFO topic cannot have a Lambda subscription",
                 id="fifo-topic"),
])
def test_a_lambda_subscription_sns_or_the_local_cloud_cannot_serve_is_refused(
    aws: None, tmp_path: Path, topic: str, endpoint: str, refusal: str
) -> None:
    # Given a lambda subscription to a function the template lacks, or of a FIFO topic
    template = tmp_path / "template.yaml"
    template.write_text(LAMBDA_SUBSCRIPTIONS.format(functions=FIXTURES / "functions", topic=topic, endpoint=endpoint))
    # When it is provisioned / Then it is refused by name
    with pytest.raises(ProvisionError, match=refusal):
        provision_in_process(template, stack_name="sub")


# -- S3 to a queue, a topic and EventBridge --------------------------------------------------------


def test_put_copy_and_multipart_reach_the_queue_as_s3_event_messages(stack: ProvisionedStack,
                                                                      notifications: Notifications) -> None:
    """https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html"""
    # Given PlainBucket (unversioned) notifying S3Queue of ObjectCreated:* under incoming/
    s3, queue_url = client("s3"), stack.name("S3Queue")
    drain(queue_url)  # the s3:TestEvent of the configuration
    # When an object is put, copied, put outside the prefix and assembled from two parts
    put = s3.put_object(Bucket="t-plainbucket", Key="incoming/red flower (1).csv", Body=b"a,b\n1,2\n")
    s3.copy_object(Bucket="t-plainbucket", Key="incoming/copy=1.csv",
                   CopySource={"Bucket": "t-plainbucket", "Key": "incoming/red flower (1).csv"})
    s3.put_object(Bucket="t-plainbucket", Key="elsewhere/x.csv", Body=b"x")
    upload = s3.create_multipart_upload(Bucket="t-plainbucket", Key="incoming/big.csv")["UploadId"]
    parts = [s3.upload_part(Bucket="t-plainbucket", Key="incoming/big.csv", UploadId=upload, PartNumber=number,
                            Body=body)["ETag"] for number, body in ((1, b"a" * 5 * 1024 * 1024), (2, b"b"))]
    completed = s3.complete_multipart_upload(
        Bucket="t-plainbucket", Key="incoming/big.csv", UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etag} for n, etag in enumerate(parts, 1)]})

    # Then the queue holds exactly three event messages: Put, Copy and CompleteMultipartUpload (no Put of
    # the assembled object, none for the key outside the prefix)
    records = [item["body"]["Records"][0] for item in drain(queue_url)]
    assert [(r["eventName"], r["s3"]["object"]["key"]) for r in records] == [
        ("ObjectCreated:Put", "incoming/red+flower+%281%29.csv"),
        ("ObjectCreated:Copy", "incoming/copy%3D1.csv"),
        ("ObjectCreated:CompleteMultipartUpload", "incoming/big.csv"),
    ]
    # And each is S3's record, field for field; an unversioned object has no versionId
    first = records[0]
    configuration_id = client("s3").get_bucket_notification_configuration(
        Bucket="t-plainbucket")["QueueConfigurations"][0]["Id"]
    assert sorted(first) == ["awsRegion", "eventName", "eventSource", "eventTime", "eventVersion",
                             "requestParameters", "responseElements", "s3", "userIdentity"]
    assert (first["eventVersion"], first["eventSource"], first["awsRegion"]) == ("2.1", "aws:s3", REGION)
    assert first["eventTime"].endswith("Z") and len(first["eventTime"]) == len("2024-01-01T00:00:00.000Z")
    assert first["requestParameters"] == {"sourceIPAddress": "127.0.0.1"}
    assert sorted(first["responseElements"]) == ["x-amz-id-2", "x-amz-request-id"]
    assert first["s3"]["s3SchemaVersion"] == "1.0"
    assert first["s3"]["configurationId"] == configuration_id
    assert first["s3"]["bucket"]["name"] == "t-plainbucket"
    assert first["s3"]["bucket"]["arn"] == "arn:aws:s3:::t-plainbucket"
    assert sorted(first["s3"]["bucket"]["ownerIdentity"]) == ["principalId"]
    assert sorted(first["s3"]["object"]) == ["eTag", "key", "sequencer", "size"]
    assert (first["s3"]["object"]["size"], first["s3"]["object"]["eTag"]) == (8, put["ETag"].strip('"'))
    big = records[2]["s3"]["object"]
    assert (big["size"], big["eTag"]) == (5 * 1024 * 1024 + 1, completed["ETag"].strip('"'))
    # And the sequencers are hexadecimal of one length and grow with each change
    sequencers = [r["s3"]["object"]["sequencer"] for r in records]
    assert sequencers == sorted(sequencers) and len(set(sequencers)) == 3
    assert {len(s) for s in sequencers} == {18} and all(int(s, 16) for s in sequencers)


def test_a_delete_reaches_the_topic_and_its_queue_with_s3_subject(stack: ProvisionedStack,
                                                                 notifications: Notifications) -> None:
    """https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html (an
    ObjectRemoved record has no size or eTag)."""
    # Given PlainBucket notifying S3Topic of ObjectRemoved:*, and S3TopicQueue subscribed to the topic
    s3, queue_url = client("s3"), stack.name("S3TopicQueue")
    s3.put_object(Bucket="t-plainbucket", Key="old/report.csv", Body=b"x")
    drain(queue_url)  # the s3:TestEvent published when the configuration was put
    # When the object is deleted
    s3.delete_object(Bucket="t-plainbucket", Key="old/report.csv")
    # Then the topic's subscriber gets one notification, subject "Amazon S3 Notification", whose message is
    # S3's record of the deletion
    envelopes = [item["body"] for item in drain(queue_url)]
    assert [(e["Type"], e["TopicArn"], e["Subject"]) for e in envelopes] == [
        ("Notification", stack.name("S3Topic"), "Amazon S3 Notification")]
    record = json.loads(envelopes[0]["Message"])["Records"][0]
    assert record["eventName"] == "ObjectRemoved:Delete"
    assert sorted(record["s3"]["object"]) == ["key", "sequencer"]
    assert record["s3"]["object"]["key"] == "old/report.csv"


def test_a_versioned_bucket_puts_object_created_on_the_default_bus(stack: ProvisionedStack,
                                                                  notifications: Notifications) -> None:
    """https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html"""
    # Given InboxBucket (versioned, EventBridge enabled) and ObjectCreatedRule routing its events to a queue
    s3 = client("s3")
    # When an object is put outside the function's prefix, and PlainBucket (no EventBridge) gets one too
    put = s3.put_object(Bucket="t-inboxbucket", Key="notes/a b.txt", Body=b"hello")
    s3.put_object(Bucket="t-plainbucket", Key="notes/a b.txt", Body=b"hello")
    # Then exactly one event arrives, in S3's EventBridge shape, with the key as it is and the version id
    events = [item["body"] for item in drain(stack.name("ObjectEventsQueue"))]
    assert len(events) == 1
    event = events[0]
    assert (event["version"], event["detail-type"], event["source"], event["account"], event["region"]) == (
        "0", "Object Created", "aws.s3", ACCOUNT, REGION)
    assert event["resources"] == ["arn:aws:s3:::t-inboxbucket"]
    assert event["time"].endswith("Z")
    detail = event["detail"]
    assert detail["object"]["key"] == "notes/a b.txt"
    assert (detail["object"]["size"], detail["object"]["etag"]) == (5, put["ETag"].strip('"'))
    assert detail["object"]["version-id"] == put["VersionId"]
    assert len(detail["object"]["sequencer"]) == 18
    assert (detail["version"], detail["bucket"], detail["reason"], detail["requester"],
            detail["source-ip-address"]) == ("0", {"name": "t-inboxbucket"}, "PutObject", ACCOUNT, "127.0.0.1")
    assert len(detail["request-id"]) == 16
    # And nothing ran the function (notes/ is outside its prefix)
    assert notifications.invoker.submitted == 0


# -- S3 and SNS to a function ----------------------------------------------------------------------


def test_a_put_under_the_prefix_invokes_the_function_once_per_matching_key(
    stack: ProvisionedStack, notifications: Notifications, record_file: Path
) -> None:
    """https://docs.aws.amazon.com/lambda/latest/dg/with-s3.html (the S3 event message as the event)."""
    # Given RecorderFunction triggered by ObjectCreated:* under inbox/ ending in .csv on InboxBucket
    s3 = client("s3")
    # When three objects are put, of which only one matches both rules
    put = s3.put_object(Bucket="t-inboxbucket", Key="inbox/alice/flights/jan.csv", Body=b"a\n1\n")
    s3.put_object(Bucket="t-inboxbucket", Key="inbox/alice/flights/jan.txt", Body=b"a\n1\n")
    s3.put_object(Bucket="t-inboxbucket", Key="outbox/jan.csv", Body=b"a\n1\n")
    # Then exactly one asynchronous invocation was made, and it succeeded at once
    assert notifications.invoker.submitted == 1
    wait_settled(notifications, 1)
    events = [line["event"] for line in recorded(record_file)]
    assert len(events) == 1
    record = events[0]["Records"][0]
    assert (record["eventName"], record["s3"]["bucket"]["name"]) == ("ObjectCreated:Put", "t-inboxbucket")
    assert record["s3"]["configurationId"] == stack.model.s3_triggers[0].configuration_id
    # And a versioned object's record names its version
    assert record["s3"]["object"]["versionId"] == put["VersionId"]
    assert (record["s3"]["object"]["key"], record["s3"]["object"]["size"]) == ("inbox/alice/flights/jan.csv", 4)


def test_a_failing_invocation_is_retried_then_recorded_on_failure(
    stack: ProvisionedStack, notifications: Notifications, record_file: Path
) -> None:
    """https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html"""
    # Given RecorderFunction with MaximumRetryAttempts 1 and an OnFailure queue
    # When a key that makes it fail is put
    s3 = client("s3")
    s3.put_object(Bucket="t-inboxbucket", Key="inbox/alice/flights/fail.csv", Body=b"a\n")
    wait_settled(notifications, 1)
    # Then it ran twice (the first attempt and one retry)
    assert len(recorded(record_file)) == 2
    # And the OnFailure queue holds one invocation record carrying the event
    records = [item["body"] for item in drain(stack.name("RecorderFunctionEventInvokeConfigOnFailureQueue"))]
    assert len(records) == 1
    record = records[0]
    assert record["version"] == "1.0"
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 2
    assert record["requestContext"]["functionArn"] == f"{stack.attribute('RecorderFunction', 'Arn')}:$LATEST"
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"}
    assert record["responsePayload"]["errorType"] == "RuntimeError"
    assert record["requestPayload"]["Records"][0]["s3"]["object"]["key"] == "inbox/alice/flights/fail.csv"


def test_sns_invokes_the_subscribed_function_with_its_record_when_the_filter_policy_matches(
    stack: ProvisionedStack, notifications: Notifications, record_file: Path
) -> None:
    """https://docs.aws.amazon.com/lambda/latest/dg/with-sns.html"""
    # Given RecorderFunction subscribed to NoticeTopic with the filter policy kind = wanted
    sns = client("sns")
    topic = stack.name("NoticeTopic")
    # When one message is published with kind = unwanted and one with kind = wanted and a subject
    sns.publish(TopicArn=topic, Message="skip me",
                MessageAttributes={"kind": {"DataType": "String", "StringValue": "unwanted"}})
    published = sns.publish(TopicArn=topic, Message="hello", Subject="Greeting",
                            MessageAttributes={"kind": {"DataType": "String", "StringValue": "wanted"}})
    # Then the function is invoked once, with SNS's record of the wanted message
    assert notifications.invoker.submitted == 1
    wait_settled(notifications, 1)
    events = [line["event"] for line in recorded(record_file)]
    assert len(events) == 1
    record = events[0]["Records"][0]
    subscription_arn = stack.model.sns_triggers[0].subscription_arn
    assert (record["EventSource"], record["EventVersion"], record["EventSubscriptionArn"]) == (
        "aws:sns", "1.0", subscription_arn)
    message = record["Sns"]
    assert sorted(message) == ["Message", "MessageAttributes", "MessageId", "Signature", "SignatureVersion",
                               "SigningCertUrl", "Subject", "Timestamp", "TopicArn", "Type", "UnsubscribeUrl"]
    assert (message["Type"], message["MessageId"], message["TopicArn"], message["Subject"], message["Message"]) == (
        "Notification", published["MessageId"], topic, "Greeting", "hello")
    assert message["MessageAttributes"] == {"kind": {"Type": "String", "Value": "wanted"}}
    assert message["UnsubscribeUrl"].endswith(f"SubscriptionArn={subscription_arn}")
    assert message["Timestamp"].endswith("Z")


def test_a_failed_sns_invocation_goes_to_the_dead_letter_queue_with_its_error(
    stack: ProvisionedStack, notifications: Notifications, record_file: Path
) -> None:
    """https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html (dead-letter queues)"""
    # Given DeadLetterFunction (MaximumRetryAttempts 0, a DLQ) subscribed to AlarmTopic
    # When a message that makes it fail is published
    client("sns").publish(TopicArn=stack.name("AlarmTopic"), Message="please fail")
    wait_settled(notifications, 1)
    # Then it ran once, and the DLQ holds the event itself with the error's attributes
    assert len(recorded(record_file)) == 1
    dead = drain(stack.name("FunctionDeadLetterQueue"))
    assert len(dead) == 1
    assert dead[0]["body"]["Records"][0]["Sns"]["Message"] == "please fail"
    attributes = dead[0]["attributes"]
    assert sorted(attributes) == ["ErrorCode", "ErrorMessage", "RequestID"]
    assert attributes["ErrorCode"] == {"StringValue": "200", "DataType": "Number"}
    assert attributes["ErrorMessage"]["StringValue"].startswith("asked to fail by ['please fail']")


def test_sns_to_sqs_raw_delivery_applies_a_message_body_filter_policy(stack: ProvisionedStack,
                                                                     notifications: Notifications) -> None:
    """https://docs.aws.amazon.com/sns/latest/dg/sns-message-filtering.html (FilterPolicyScope MessageBody)
    and https://docs.aws.amazon.com/sns/latest/dg/sns-large-payload-raw-message-delivery.html"""
    # Given RawQueue subscribed to NoticeTopic with RawMessageDelivery and a body policy status = FAILED
    sns = client("sns")
    # When two JSON messages are published, one FAILED and one SUCCEEDED
    for status in ("SUCCEEDED", "FAILED"):
        sns.publish(TopicArn=stack.name("NoticeTopic"), Message=json.dumps({"status": status, "taskId": "t-1"}))
    # Then the queue gets only the FAILED one, as the bare message
    assert [item["body"] for item in drain(stack.name("RawQueue"))] == [{"status": "FAILED", "taskId": "t-1"}]
