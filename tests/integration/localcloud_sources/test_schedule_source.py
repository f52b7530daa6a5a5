"""Scheduler: rate and cron expressions on a scaled clock, the scheduled-event shape, target Input."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest
from sources_helpers import ACCOUNT, REGION, Harness, wait_until

from busline.localcloud.event_sources import Scheduler, build_event_sources
from busline.localcloud.model import LocalCloudError, ScheduleSpec
from busline.localcloud.runtime import FunctionRuntime

pytestmark = pytest.mark.integration

RULE_ARN = f"arn:aws:events:{REGION}:{ACCOUNT}:rule/nightly"


def test_rate_schedule_fires_on_the_scaled_clock_with_the_scheduled_event(
    harness: Harness, runtime_for: Callable[..., FunctionRuntime]
) -> None:
    # Given rate(1 minute) at 60x speed: one firing per real second
    harness.add_function("CronFunction", "handlers.scheduled")
    harness.model.schedules = [ScheduleSpec("Nightly", "CronFunction", "rate(1 minute)", rule_arn=RULE_ARN)]
    runtime = runtime_for()
    (scheduler,) = build_event_sources(harness.model, runtime, None, schedule_scale=60)
    # A warm worker, so the handler's timestamp is the firing time and not a cold start on a busy machine
    assert runtime.invoke("CronFunction", {"warm-up": True}, trigger="test").ok

    # When it runs
    started = time.time()
    scheduler.start()
    try:
        wait_until(lambda: len(harness.records()) >= 2, 6, "the first firing")
    finally:
        scheduler.stop()

    # Then it fired within ~2 s with EventBridge's scheduled-event shape
    first = harness.records()[1]
    assert first["at"] - started < 2.5
    event = first["event"]
    assert set(event) == {"version", "id", "detail-type", "source", "account", "time", "region", "resources",
                          "detail"}
    assert (event["version"], event["detail-type"], event["source"]) == ("0", "Scheduled Event", "aws.events")
    assert (event["account"], event["region"], event["resources"], event["detail"]) == (
        ACCOUNT, REGION, [RULE_ARN], {})
    assert event["time"].endswith("Z")


def test_target_input_replaces_the_event(harness: Harness, runtime_for: Callable[..., FunctionRuntime]) -> None:
    harness.add_function("CronFunction", "handlers.scheduled")
    harness.model.schedules = [ScheduleSpec("Job", "CronFunction", "rate(2 minutes)", input={"job": "cleanup"})]
    scheduler = Scheduler(harness.model, runtime_for(), None, schedule_scale=120)
    scheduler.start()
    try:
        wait_until(lambda: len(harness.records()) >= 1, 4, "the first firing")
    finally:
        scheduler.stop()
    assert harness.records()[0]["event"] == {"job": "cleanup"}


def test_cron_schedule_fires(harness: Harness, runtime_for: Callable[..., FunctionRuntime]) -> None:
    # Given an every-minute AWS cron at 60x speed
    harness.add_function("CronFunction", "handlers.scheduled")
    harness.model.schedules = [ScheduleSpec("EveryMinute", "CronFunction", "cron(* * * * ? *)")]
    scheduler = Scheduler(harness.model, runtime_for(), None, schedule_scale=60)
    scheduler.start()
    try:
        # Then it fires within about a second of real time
        wait_until(lambda: len(harness.records()) >= 1, 4, "the first cron firing")
    finally:
        scheduler.stop()
    assert harness.records()[0]["event"]["detail-type"] == "Scheduled Event"


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("rate(5 fortnights)", "Bad: 'rate(5 fortnights)' is none of at(yyyy-mm-ddThh:mm:ss)"),
        ("cron(0 12 * * ?)", "Bad: 'cron(0 12 * * ?)' must have 6 fields"),
        ("cron(99 12 * * ? *)", "Bad: 'cron(99 12 * * ? *)' is not a valid cron expression"),
        ("at(2026-12-24T18:00:00)", "Bad: an EventBridge rule takes rate() or cron(), not at()"),
    ],
)
def test_bad_expression_names_the_schedule(harness: Harness, runtime_for: Callable[..., FunctionRuntime],
                                           expression: str, message: str) -> None:
    harness.model.schedules = [ScheduleSpec("Bad", "CronFunction", expression)]
    with pytest.raises(LocalCloudError, match=re.escape(message)):
        Scheduler(harness.model, runtime_for(), None)
