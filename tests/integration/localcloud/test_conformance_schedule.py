"""Schedules: rate(1 minute) with --schedule-scale 60 fires once a second with the scheduled-event shape."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
from conformance_support import Aws, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

# Firings due while ScheduleFunction's first workers cold-start are queued and then run back to back
# (as EventBridge's async invocations would); the steady state after that is what is watched.
SETTLE_S = 5.0
WATCHED_FIRINGS = 8
PERIOD = dt.timedelta(minutes=1)  # rate(1 minute), on the schedule's own (scaled) clock


def test_rate_schedule_fires_once_per_scaled_period(aws: Aws) -> None:
    # Given ScheduleFunction on rate(1 minute), a cloud started with --schedule-scale 60, and a warm worker
    wait_until(lambda: len(aws.records("schedule")) >= 1, 45, "the first schedule firing")
    steady_from_us = (time.time() + SETTLE_S) * 1_000_000

    # When we watch 8 firings of the steady state
    def watched() -> list[dict[str, Any]] | None:
        markers = [item for item in aws.records("schedule") if int(item["at"]) >= steady_from_us]
        return markers[:WATCHED_FIRINGS] if len(markers) >= WATCHED_FIRINGS else None

    markers = wait_until(watched, SETTLE_S + 20, f"{WATCHED_FIRINGS} steady-state schedule firings")

    # Then each scheduled minute fired exactly once: the events' times step by one period, none
    # skipped, none doubled (counted on the events themselves, not on this machine's clock)
    scheduled = sorted(dt.datetime.fromisoformat(item["time"].replace("Z", "+00:00")) for item in markers)
    assert [later - earlier for earlier, later in zip(scheduled, scheduled[1:], strict=False)] == [PERIOD] * (
        WATCHED_FIRINGS - 1
    )
    # And each firing got a scheduled event naming its rule
    assert {(item["detailType"], item["source"]) for item in markers} == {("Scheduled Event", "aws.events")}
    rules = [item["resources"] for item in markers]
    assert [arns for arns in rules if len(arns) != 1 or ":rule/" not in arns[0]] == []
