"""AWS call latency through the local cloud's AWS endpoint, next to MiniStack's (issue 14, point 2).

The same four loops a chunk's calls are made of, 200 calls each, timed one call at a time from a boto3
client (its own serialization included, as a function pays it): SQS send; SQS receive + delete of one
message; DynamoDB PutItem; EventBridge PutEvents of one entry. Medians, in milliseconds.

MiniStack is measured in the same run when its command is installed (`make conformance-peer` puts it in
.venv-peer); otherwise the figures the issue measured on this machine stand in, and the report says so.
"""

from __future__ import annotations

import shutil
import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3

from busline.bench.ministack import ministack

LOOPS = 200
WARMUP_CALLS = 10
SETTLE_S = 3.0
# Issue 14, measured on this machine, 200 calls each, medians (ms): what to beat when MiniStack is absent.
MINISTACK_ISSUE_MS = {"sqsSend": 3.6, "sqsReceiveDelete": 7.5, "dynamodbPut": 3.6, "putEvents": 3.7}
OURS_BEFORE_MS = {"sqsSend": 12.9, "sqsReceiveDelete": 35.0, "dynamodbPut": 6.5, "putEvents": 6.4}
CALLS = {
    "sqsSend": "SQS SendMessage",
    "sqsReceiveDelete": "SQS ReceiveMessage + DeleteMessage",
    "dynamodbPut": "DynamoDB PutItem",
    "putEvents": "EventBridge PutEvents (1 entry)",
}
_REPO = Path(__file__).resolve().parents[2]


def _client(endpoint: str, service: str) -> Any:
    return boto3.client(  # type: ignore[call-overload]
        service, endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip


def _median_ms(call: Callable[[], object]) -> float:
    for _ in range(WARMUP_CALLS):
        call()
    timings = []
    for _ in range(LOOPS):
        started = time.perf_counter()
        call()
        timings.append((time.perf_counter() - started) * 1000.0)
    return round(statistics.median(timings), 2)


def measure(endpoint: str) -> dict[str, float]:
    """The four medians against `endpoint`; its resources are made for the loops and deleted after."""
    sqs, dynamodb, events = (_client(endpoint, name) for name in ("sqs", "dynamodb", "events"))
    name = f"bench-latency-{uuid.uuid4().hex[:8]}"
    queue = sqs.create_queue(QueueName=name)["QueueUrl"]
    dynamodb.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
    )  # fmt: skip
    body = "x" * 200  # a chunk event's size
    counter = iter(range(10**9))
    try:
        results = {"sqsSend": _median_ms(lambda: sqs.send_message(QueueUrl=queue, MessageBody=body))}
        sqs.purge_queue(QueueUrl=queue)
        for _ in range(LOOPS + WARMUP_CALLS):
            sqs.send_message(QueueUrl=queue, MessageBody=body)

        def receive_and_delete() -> None:
            message = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=1)["Messages"][0]
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])

        results["sqsReceiveDelete"] = _median_ms(receive_and_delete)
        results["dynamodbPut"] = _median_ms(lambda: dynamodb.put_item(
            TableName=name, Item={"pk": {"S": str(next(counter))}, "phase": {"S": "transform"}}))
        results["putEvents"] = _median_ms(lambda: events.put_events(Entries=[
            {"Source": "bench", "DetailType": "ChunkExtracted", "Detail": '{"taskId": "t", "chunk": 1}'}]))
    finally:
        sqs.delete_queue(QueueUrl=queue)
        dynamodb.delete_table(TableName=name)
    return results


def ministack_command() -> str | None:
    peer = _REPO / ".venv-peer" / "bin" / "ministack"
    return str(peer) if peer.is_file() else shutil.which("ministack")


def section(ours: dict[str, float]) -> dict[str, Any]:
    """Ours (measured), MiniStack's (same run if installed, else the issue's), and the verdict per call."""
    command = ministack_command()
    peer: dict[str, float] | None = None
    peer_source = "issue 14's figures (MiniStack 1.5.33, this machine); MiniStack is not installed here"
    if command is not None:
        try:
            with ministack(Path(command)) as endpoint:
                peer = measure(endpoint)
            peer_source = f"measured in this run ({command})"
        except Exception as error:  # the issue's figures still give the comparison
            peer_source += f"; starting it failed: {error}"
    reference = peer or MINISTACK_ISSUE_MS
    return {
        "loops": LOOPS,
        "calls": CALLS,
        "oursMs": ours,
        "oursBeforeMs": OURS_BEFORE_MS,
        "ministackMs": reference,
        "ministackSource": peer_source,
        "issueMinistackMs": MINISTACK_ISSUE_MS,
        "atOrBelowMinistack": {name: ours[name] <= reference[name] for name in CALLS},
        "atOrBelowIssueFigures": {name: ours[name] <= MINISTACK_ISSUE_MS[name] for name in CALLS},
    }
