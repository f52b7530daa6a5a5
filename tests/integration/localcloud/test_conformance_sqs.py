"""SQS event source: partial batch failures, the DLQ, MaximumConcurrency, and Timeout + retry."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conformance_support import Aws, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def max_overlap(intervals: list[tuple[int, int]]) -> int:
    """Most intervals open at one instant; one ending exactly when another starts does not overlap it."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    open_now = peak = 0
    for _, change in edges:  # at equal times -1 sorts before +1, so touching intervals never count twice
        open_now += change
        peak = max(peak, open_now)
    return peak


def receive_all(aws: Aws, queue_url: str, expected: int, timeout_s: float) -> list[dict[str, Any]]:
    """Receive (and hide for 60 s) messages until `expected` arrived, then one more empty poll."""
    received: list[dict[str, Any]] = []

    def poll() -> bool:
        response = aws.sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1, VisibilityTimeout=60
        )
        received.extend(response.get("Messages", []))
        return len(received) >= expected

    wait_until(poll, timeout_s, f"{expected} messages in {queue_url}", interval_s=0)
    extra = aws.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    return received + extra.get("Messages", [])


def test_partial_batch_failure_deletes_good_records_and_dead_letters_bad_ones(
    aws: Aws, run_id: str, warm_batch_function: None
) -> None:
    # Given 10 messages of which 3 ask BatchFunction to fail them (maxReceiveCount 2, VisibilityTimeout 2)
    work_queue, dead_letters = aws.outputs["WorkQueueUrl"], aws.outputs["WorkDeadLetterQueueUrl"]
    bad = {1, 4, 8}
    aws.send_json_batch(work_queue, [{"run": run_id, "n": n, "fail": n in bad} for n in range(10)])

    # When the local cloud has polled until the bad ones ran out of receives
    wait_until(lambda: aws.queue_depth(dead_letters)[0] == len(bad), 60, "3 messages in the DLQ")
    aws.wait_drained(work_queue, 30)

    # Then each good record was handled exactly once (receive 1) and each bad one exactly twice (1, 2)
    attempts: dict[int, list[int]] = {}
    for item in aws.records(f"batch-attempt#{run_id}"):
        attempts.setdefault(int(item["n"]), []).append(int(item["receiveCount"]))
    assert {n: sorted(counts) for n, counts in attempts.items()} == {
        n: ([1, 2] if n in bad else [1]) for n in range(10)
    }
    # And the DLQ holds exactly the 3 bad messages, the work queue nothing
    assert aws.queue_depth(dead_letters) == (3, 0)
    assert aws.queue_depth(work_queue) == (0, 0)
    dead = receive_all(aws, dead_letters, expected=3, timeout_s=10)
    assert sorted(json.loads(message["Body"])["n"] for message in dead) == sorted(bad)
    aws.sqs.delete_message_batch(
        QueueUrl=dead_letters,
        Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(dead)],
    )


def test_maximum_concurrency_caps_overlapping_invocations(
    aws: Aws, run_id: str, warm_batch_function: None
) -> None:
    # Given 30 messages, each invocation sleeping 0.5 s (BatchSize 5, MaximumConcurrency 2;
    # the runtime alone would allow 4 workers for this function)
    work_queue = aws.outputs["WorkQueueUrl"]
    aws.send_json_batch(work_queue, [{"run": run_id, "n": n, "sleep": 0.5} for n in range(30)])

    # When they have all been processed
    wait_until(lambda: len(aws.records(f"batch-attempt#{run_id}")) >= 30, 60, "30 processed messages")
    aws.wait_drained(work_queue, 30)

    # Then every message was handled once, in batches of at most 5
    attempts = aws.records(f"batch-attempt#{run_id}")
    assert sorted(int(item["n"]) for item in attempts) == list(range(30))
    invocations = aws.records(f"batch-invocation#{run_id}")
    sizes = [int(item["size"]) for item in invocations]
    assert sum(sizes) == 30
    assert [size for size in sizes if not 1 <= size <= 5] == []
    # And at most 2 invocations ever ran at once - and 2 did (the cap is used, not just respected)
    intervals = [(int(item["started"]), int(item["ended"])) for item in invocations]
    assert max_overlap(intervals) == 2


def test_handler_over_its_timeout_is_killed_and_retried(aws: Aws, run_id: str) -> None:
    # Given TimeoutFunction (Timeout 1 s) sleeps 3 s on the first attempt for a message (queue visibility 10 s)
    timeout_queue = aws.outputs["TimeoutQueueUrl"]
    aws.sqs.send_message(QueueUrl=timeout_queue, MessageBody=json.dumps({"run": run_id}))

    # When the message has been handled to completion
    def done() -> dict[str, Any] | None:
        return next((item for item in aws.records(f"timeout#{run_id}") if item["sk"] == "done"), None)

    finished = wait_until(done, 40, "TimeoutFunction to finish the message")
    aws.wait_drained(timeout_queue, 15)

    # Then the first attempt was killed at its Timeout (never woke up) and the retry succeeded
    records = {item["sk"]: item for item in aws.records(f"timeout#{run_id}")}
    assert sorted(records) == ["attempt#1", "attempt#2", "attempts", "done"]
    assert int(records["attempts"]["attempts"]) == 2
    assert int(finished["attempt"]) == 2
    assert int(records["attempt#1"]["receiveCount"]) == 1
    assert int(records["attempt#2"]["receiveCount"]) == 2
    assert 0 < int(records["attempt#1"]["remainingMs"]) <= 1000
    # And nothing went to its DLQ
    assert aws.queue_depth(aws.outputs["TimeoutDeadLetterQueueUrl"]) == (0, 0)
