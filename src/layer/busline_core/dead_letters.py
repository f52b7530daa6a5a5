"""Look at what sits in the dead-letter queues without taking it away from `busline dlq replay`.

A record normally fails its task on its last delivery (steps.record_final_failure). When that last
delivery dies before the handler runs (a crash, a timeout, a killed container), the message still
lands in the DLQ but nobody told the task; the watchdog reads the DLQs to close that gap.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import boto3

PEEK_ROUNDS = 10  # x 10 messages per queue and watchdog tick
HIDE_SECONDS = 30  # long enough that consecutive receives return other messages


@dataclass(frozen=True)
class DeadLetter:
    queue_url: str
    task_id: str
    phase: str | None
    chunk: int | None
    receive_count: int


class DeadLetterQueues:
    def __init__(self, sqs_client: Any, queue_urls: Sequence[str]) -> None:
        self._sqs = sqs_client
        self.queue_urls = [url for url in queue_urls if url]

    @classmethod
    def from_urls(cls, comma_separated: str) -> DeadLetterQueues:
        return cls(boto3.client("sqs"), comma_separated.split(","))

    def peek(self) -> Iterator[DeadLetter]:
        for url in self.queue_urls:
            yield from self._peek_queue(url)

    def _peek_queue(self, url: str) -> Iterator[DeadLetter]:
        handles: list[str] = []
        try:
            for _ in range(PEEK_ROUNDS):
                messages = self._sqs.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=HIDE_SECONDS,
                    AttributeNames=["ApproximateReceiveCount"],
                ).get("Messages", [])
                if not messages:
                    break
                for message in messages:
                    handles.append(message["ReceiptHandle"])
                    letter = _parse(url, message)
                    if letter is not None:
                        yield letter
        finally:
            # Put everything back at once: peeking must not delay a replay.
            for start in range(0, len(handles), 10):
                self._sqs.change_message_visibility_batch(
                    QueueUrl=url,
                    Entries=[
                        {"Id": str(index), "ReceiptHandle": handle, "VisibilityTimeout": 0}
                        for index, handle in enumerate(handles[start:start + 10])
                    ],
                )


def _parse(url: str, message: dict[str, Any]) -> DeadLetter | None:
    try:
        detail = json.loads(message["Body"])["detail"]
        task_id = str(detail["taskId"])
    except (ValueError, KeyError, TypeError):
        return None  # not one of ours: `busline dlq show` will show it to a person
    chunk = detail.get("chunk")
    return DeadLetter(
        queue_url=url,
        task_id=task_id,
        phase=detail.get("phase"),
        chunk=chunk if isinstance(chunk, int) else None,
        receive_count=int(message.get("Attributes", {}).get("ApproximateReceiveCount", 0)),
    )
