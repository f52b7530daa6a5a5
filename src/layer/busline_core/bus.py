"""Publishing facts: EventBridge (the ETL's own bus) and SNS (humans and alarms)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import boto3
from pydantic import BaseModel

from . import correlation
from .contracts import EVENT_SOURCE, TaskFinished
from .errors import PublishFailed

PUT_EVENTS_BATCH = 10  # the PutEvents limit per call


class EventPublisher:
    def __init__(self, events_client: Any, bus_name: str) -> None:
        self._events = events_client
        self._bus_name = bus_name

    @classmethod
    def for_bus(cls, bus_name: str) -> EventPublisher:
        return cls(boto3.client("events"), bus_name)

    def publish(self, detail_type: str, detail: BaseModel) -> None:
        self.publish_many([(detail_type, detail)])

    def publish_many(self, events: Iterable[tuple[str, BaseModel]]) -> int:
        """Publish in batches of 10; raise PublishFailed if EventBridge refused any entry."""
        entries = [self._entry(detail_type, detail) for detail_type, detail in events]
        for start in range(0, len(entries), PUT_EVENTS_BATCH):
            self._put(entries[start : start + PUT_EVENTS_BATCH])
        return len(entries)

    def _entry(self, detail_type: str, detail: BaseModel) -> dict[str, str]:
        return {
            "Source": EVENT_SOURCE,
            "DetailType": detail_type,
            "Detail": correlation.stamped(detail).model_dump_json(),
            "EventBusName": self._bus_name,
        }

    def _put(self, batch: Sequence[dict[str, str]]) -> None:
        response = self._events.put_events(Entries=list(batch))
        if response.get("FailedEntryCount", 0):
            failures = [
                f"{entry['DetailType']}: {result.get('ErrorCode')} {result.get('ErrorMessage', '')}".strip()
                for entry, result in zip(batch, response.get("Entries", []), strict=False)
                if result.get("ErrorCode")
            ]
            raise PublishFailed(
                f"EventBridge bus {self._bus_name} refused {response['FailedEntryCount']} of {len(batch)} "
                f"events: {'; '.join(failures)}"
            )


class Notifier:
    """SNS notification when a task finishes; a blank topic ARN turns it off.

    One message per task, in two forms (MessageStructure json): the TaskFinished JSON for machines
    (SQS, HTTPS, Lambda subscribers) and a few lines a person reads for e-mail. Its attributes (status,
    pipeline, scheduleId) let a subscription filter: a schedule's own address gets only its runs."""

    def __init__(self, sns_client: Any, topic_arn: str, web_origin: str = "") -> None:
        self._sns = sns_client
        self._topic_arn = topic_arn
        self._web_origin = web_origin.rstrip("/")

    @classmethod
    def for_topic(cls, topic_arn: str, web_origin: str = "") -> Notifier:
        return cls(boto3.client("sns") if topic_arn else None, topic_arn, web_origin)

    def task_finished(self, finished: TaskFinished) -> bool:
        if not self._topic_arn:
            return False
        attributes = {
            "status": {"DataType": "String", "StringValue": finished.status.value},
            "taskId": {"DataType": "String", "StringValue": finished.taskId},
        }
        if finished.pipeline:
            attributes["pipeline"] = {"DataType": "String", "StringValue": finished.pipeline}
        if finished.scheduledBy is not None:
            attributes["scheduleId"] = {"DataType": "String", "StringValue": finished.scheduledBy.scheduleId}
        self._sns.publish(
            TopicArn=self._topic_arn,
            Subject=notification_subject(finished)[:100],
            Message=json.dumps({"default": finished.model_dump_json(), "email": self.email_text(finished)}),
            MessageStructure="json",
            MessageAttributes=attributes,
        )
        return True

    def page_url(self, task_id: str) -> str | None:
        return f"{self._web_origin}/#task={task_id}" if self._web_origin else None

    def email_text(self, finished: TaskFinished) -> str:
        counts = finished.counts
        lines = [
            f"Pipeline: {finished.pipeline or 'ad hoc'}",
            f"Status: {finished.status.value}",
            f"Rows: {counts.read:,} read, {counts.filtered:,} filtered, {counts.rejected:,} rejected, "
            f"{counts.loaded:,} loaded, {counts.deleted:,} deleted",
        ]
        if finished.durationSeconds is not None:
            lines.append(f"Duration: {finished.durationSeconds:,.1f} s")
        if finished.scheduledBy is not None:
            lines.append(
                f"Started by schedule {finished.scheduledBy.scheduleId}, due {finished.scheduledBy.scheduledTime}"
            )
        if finished.retried is not None:
            retried = finished.retried
            lines.append(
                f"Offered again from the previous run: {retried.offered:,} rows, {retried.recovered:,} recovered, "
                f"{retried.rejectedAgain:,} rejected again"
            )
        if finished.error is not None:
            lines.append(f"Error: {finished.error.message}")
        url = self.page_url(finished.taskId)
        lines.append(f"Task: {url}" if url else f"Task: {finished.taskId}")
        return "\n".join(lines) + "\n"


def notification_subject(finished: TaskFinished) -> str:
    return f"Busline {finished.pipeline or 'task'} {finished.status.value}"
