"""When a step's handled failure is tried again: an exponential backoff with jitter, in seconds.

A record whose step raised (a transient error it caught: a dependency that answered 5xx, a lock, a
deliberate fault) is made visible again after about 1 s, 2 s, 4 s ... (capped) instead of after the
queue's whole visibility timeout, so a blip costs seconds. The receive count and the DLQ still decide
when to give up. A crash, a kill or a timeout returns no answer, so SQS waits out the visibility
timeout, as on AWS: that is what the visibility timeout is for.
"""

from __future__ import annotations

import random
from typing import Final

import boto3

RETRY_FIRST_SECONDS: Final = 1
RETRY_MAX_SECONDS: Final = 30  # past a few attempts a longer wait only delays the task, not the fault
RETRY_JITTER: Final = 0.25  # +/- this share of the delay, so chunks failed together do not retry together


def retry_delay_seconds(attempt: int, rng: random.Random | None = None) -> int:
    """Seconds until delivery `attempt + 1` of a record whose delivery `attempt` (1-based) failed."""
    base = min(RETRY_MAX_SECONDS, RETRY_FIRST_SECONDS * 2 ** max(0, attempt - 1))
    spread = (rng or random).uniform(1 - RETRY_JITTER, 1 + RETRY_JITTER)
    return max(1, min(RETRY_MAX_SECONDS, round(base * spread)))


class StepQueue:
    """The queue feeding a step, for the one call a step makes on it: delaying a record's next delivery."""

    def __init__(self, sqs_client: object, queue_url: str) -> None:
        self._sqs = sqs_client
        self.queue_url = queue_url

    @classmethod
    def for_url(cls, queue_url: str) -> StepQueue:
        return cls(boto3.client("sqs"), queue_url)

    def deliver_again_in(self, receipt_handle: str, seconds: int) -> None:
        self._sqs.change_message_visibility(  # type: ignore[attr-defined]
            QueueUrl=self.queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=seconds
        )
