"""The SNS notification of a finished task: the TaskFinished JSON for machines, a few readable lines for
e-mail (pipeline, status, counts, duration, the link to the task's page), and attributes a subscription
filters on (a schedule's own address gets only that schedule's runs)."""

from __future__ import annotations

import json
from typing import Any

from busline_core.bus import Notifier
from busline_core.contracts import Counts, Phase, ScheduledBy, TaskError, TaskFinished, TaskStatus

from .conftest import Cloud

PAGE = "http://127.0.0.1:3002"


def finished(**changes: Any) -> TaskFinished:
    fields: dict[str, Any] = {
        "taskId": "5f1c2d3e-0000-4000-8000-000000000001",
        "status": TaskStatus.SUCCEEDED,
        "counts": Counts(read=336_776, filtered=8_255, rejected=0, loaded=328_521, deleted=0),
        "pipeline": "flights",
        "durationSeconds": 31.42,
    }
    return TaskFinished(**(fields | changes))


def test_the_email_says_pipeline_status_counts_duration_and_links_to_the_task() -> None:
    # Given a notifier for the page at 127.0.0.1:3002
    notifier = Notifier(None, "arn:aws:sns:us-east-1:123456789012:topic", PAGE)
    # When a scheduled flights run succeeded, and another failed
    succeeded = notifier.email_text(finished(scheduledBy=ScheduledBy(scheduleId="3f9a1c2b7d4e",
                                                                    scheduledTime="2026-12-01T06:00:00Z")))  # fmt: skip
    failed = notifier.email_text(
        finished(status=TaskStatus.FAILED, error=TaskError(phase=Phase.LOAD, chunk=3, message="disk full"))
    )
    # Then the e-mails read
    assert succeeded == (
        "Pipeline: flights\n"
        "Status: SUCCEEDED\n"
        "Rows: 336,776 read, 8,255 filtered, 0 rejected, 328,521 loaded, 0 deleted\n"
        "Duration: 31.4 s\n"
        "Started by schedule 3f9a1c2b7d4e, due 2026-12-01T06:00:00Z\n"
        "Task: http://127.0.0.1:3002/#task=5f1c2d3e-0000-4000-8000-000000000001\n"
    )
    assert failed.splitlines()[1] == "Status: FAILED"
    assert failed.splitlines()[-2:] == [
        "Error: disk full", "Task: http://127.0.0.1:3002/#task=5f1c2d3e-0000-4000-8000-000000000001",
    ]  # fmt: skip


def test_machines_get_the_json_and_a_schedules_address_only_its_runs(cloud: Cloud) -> None:
    # Given the template's topic with its SQS subscriber (conftest), and a queue subscribed the way a
    # schedule's address is: filtered to schedule 3f9a1c2b7d4e
    filtered_url = cloud.sqs.create_queue(QueueName="schedule-3f9a1c2b7d4e")["QueueUrl"]
    filtered_arn = cloud.sqs.get_queue_attributes(QueueUrl=filtered_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    cloud.sns.subscribe(TopicArn=cloud.topic_arn, Protocol="sqs", Endpoint=filtered_arn,
                        Attributes={"FilterPolicy": json.dumps({"scheduleId": ["3f9a1c2b7d4e"]})})  # fmt: skip
    notifier = Notifier(cloud.sns, cloud.topic_arn, PAGE)
    # When a task submitted over the API finishes, then a run of that schedule
    notifier.task_finished(finished())
    notifier.task_finished(finished(scheduledBy=ScheduledBy(scheduleId="3f9a1c2b7d4e",
                                                           scheduledTime="2026-12-01T06:00:00Z")))  # fmt: skip
    # Then the topic's subscriber got both as TaskFinished JSON, with pipeline and duration
    notes = cloud.notifications()
    assert [(note["pipeline"], note["durationSeconds"], note["scheduledBy"]) for note in notes] == [
        ("flights", 31.42, None),
        ("flights", 31.42, {"scheduleId": "3f9a1c2b7d4e", "scheduledTime": "2026-12-01T06:00:00Z"}),
    ]
    # and the schedule's subscriber only the scheduled run
    received = cloud.sqs.receive_message(QueueUrl=filtered_url, MaxNumberOfMessages=10)["Messages"]
    assert [json.loads(json.loads(message["Body"])["Message"])["scheduledBy"]["scheduleId"] for message in received] == [
        "3f9a1c2b7d4e"
    ]
