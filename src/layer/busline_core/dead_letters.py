"""Look at what sits in the dead-letter queues without taking it away from `busline dlq replay`.

A record normally fails its task on its last delivery (etl_steps.record_final_failure). When that last
delivery dies before the handler runs (a crash, a timeout, a killed container), the message still
lands in the DLQ but nobody told the task; the watchdog reads the DLQs to close that gap.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import boto3
from pydantic import BaseModel, ConfigDict

PEEK_ROUNDS = 10  # x 10 messages per queue and watchdog tick
HIDE_SECONDS = 30  # long enough that consecutive receives return other messages


class DeadLetter(BaseModel):
    model_config = ConfigDict(frozen=True)

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


class DeadLetterBody(BaseModel):
    model_config = ConfigDict(frozen=True)

    """What a dead-lettered message says about itself (the CLI's `busline dlq` reads it the same way)."""

    detail_type: str | None
    task_id: str | None
    phase: str | None  # None for TaskSubmitted: the queue says which phase it belongs to
    chunk: int | None


def parse_body(body: str) -> DeadLetterBody:
    """The body is the EventBridge event a rule delivered; its detail names task, phase and chunk.
    A body that is not one of ours gives a DeadLetterBody of Nones (a person can still look at it)."""
    try:
        event = json.loads(body)
    except ValueError:
        event = None
    detail: dict[str, Any] = {}
    detail_type = None
    if isinstance(event, dict):
        raw_type = event.get("detail-type")
        detail_type = raw_type if isinstance(raw_type, str) else None
        inner = event.get("detail")
        detail = inner if isinstance(inner, dict) else event
    task_id, phase, chunk = detail.get("taskId"), detail.get("phase"), detail.get("chunk")
    return DeadLetterBody(
        detail_type=detail_type,
        task_id=str(task_id) if task_id else None,
        phase=str(phase) if phase else None,
        chunk=int(chunk) if isinstance(chunk, int | float) and not isinstance(chunk, bool) else None,
    )


def _parse(url: str, message: dict[str, Any]) -> DeadLetter | None:
    body = parse_body(message.get("Body", ""))
    if body.task_id is None:
        return None  # not one of ours: `busline dlq show` will show it to a person
    return DeadLetter(
        queue_url=url,
        task_id=body.task_id,
        phase=body.phase,
        chunk=body.chunk,
        receive_count=int(message.get("Attributes", {}).get("ApproximateReceiveCount", 0)),
    )
