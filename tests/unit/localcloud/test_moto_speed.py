"""moto_speed changes how fast moto answers, never what it answers."""

from __future__ import annotations

import boto3

from busline.localcloud.moto_speed import make_moto_calls_fast
from busline.localcloud.testing import moto_server


def test_queue_counts_retention_and_request_ids_answer_as_before() -> None:
    # Given the fast moto, a queue with one visible, one in-flight and one delayed message
    make_moto_calls_fast()
    with moto_server() as endpoint:
        sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        queue = sqs.create_queue(QueueName="speed", Attributes={"MessageRetentionPeriod": "60"})["QueueUrl"]
        sqs.send_message(QueueUrl=queue, MessageBody="in flight")
        taken = sqs.receive_message(QueueUrl=queue, VisibilityTimeout=60)
        sqs.send_message(QueueUrl=queue, MessageBody="visible")
        sqs.send_message(QueueUrl=queue, MessageBody="delayed", DelaySeconds=60)
        # When its attributes are read
        attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
        # Then the counts are those of moto's per-message properties
        assert (attributes["ApproximateNumberOfMessages"], attributes["ApproximateNumberOfMessagesNotVisible"],
                attributes["ApproximateNumberOfMessagesDelayed"]) == ("1", "1", "1")
        assert attributes["MessageRetentionPeriod"] == "60"
        # a message within its retention period is delivered; the request id keeps its 52 characters
        visible = sqs.receive_message(QueueUrl=queue, VisibilityTimeout=60)
        assert [message["Body"] for message in taken["Messages"] + visible["Messages"]] == ["in flight", "visible"]
        assert len(visible["ResponseMetadata"]["RequestId"]) == 52
