"""moto_speed changes how fast moto answers, never what it answers."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import boto3
import pytest

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


def test_a_recording_keeps_an_s3_objects_size_not_its_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the fast moto recording requests, and a bucket
    from moto.moto_api import recorder

    make_moto_calls_fast()
    recording = tmp_path / "recording.jsonl"
    monkeypatch.setattr(recorder, "_location", str(recording))
    with moto_server() as endpoint:
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        s3.create_bucket(Bucket="recorded")
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/recorder/start-recording", method="POST"))
        try:
            # When a 1 MiB object and a 10-byte one are put
            large, small = bytes(range(256)) * 4096, b"0123456789"
            s3.put_object(Bucket="recorded", Key="large", Body=large)
            s3.put_object(Bucket="recorded", Key="small", Body=small)
            stored = [s3.get_object(Bucket="recorded", Key=key)["Body"].read() for key in ("large", "small")]
        finally:
            urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/recorder/stop-recording", method="POST"))
    # Then both are stored whole, the large one recorded by its Content-Length only, the small one with its bytes
    assert stored == [large, small]
    puts = [json.loads(line) for line in recording.read_text().splitlines() if json.loads(line)["method"] == "PUT"]
    assert [(entry["headers"]["Content-Length"], entry["body"]) for entry in puts] == [
        (str(len(large)), ""), ("10", "MDEyMzQ1Njc4OQ=="),
    ]
