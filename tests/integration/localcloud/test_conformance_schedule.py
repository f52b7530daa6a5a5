"""Schedules: rate(1 minute) with --schedule-scale 60 fires once a second with the scheduled-event shape."""

from __future__ import annotations

import time
from typing import Any

import pytest
from conformance_support import Aws, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

# Firings due while ScheduleFunction's first workers cold-start are queued and then run back to back
# (as EventBridge's async invocations would); only the steady state after that shows the period.
SETTLE_S = 5.0
WATCHED_FIRINGS = 5


def test_rate_schedule_fires_once_per_scaled_period(aws: Aws) -> None:
    # Given ScheduleFunction on rate(1 minute), a cloud started with --schedule-scale 60, and a warm worker
    wait_until(lambda: len(aws.records("schedule")) >= 1, 45, "the first schedule firing")
    steady_from_us = (time.time() + SETTLE_S) * 1_000_000

    # When we watch 5 firings of the steady state
    def watched() -> list[dict[str, Any]] | None:
        markers = [item for item in aws.records("schedule") if int(item["at"]) >= steady_from_us]
        return markers[:WATCHED_FIRINGS] if len(markers) >= WATCHED_FIRINGS else None

    markers = wait_until(watched, SETTLE_S + 20, f"{WATCHED_FIRINGS} steady-state schedule firings")

    # Then consecutive firings are one scaled period (1 s) apart, not faster, not slower
    times_s = [int(item["at"]) / 1_000_000 for item in markers]
    gaps = [round(later - earlier, 2) for earlier, later in zip(times_s, times_s[1:], strict=False)]
    assert [gap for gap in gaps if not 0.5 <= gap <= 1.5] == [], f"gaps between firings: {gaps}"
    # And each firing got a scheduled event naming its rule
    assert {(item["detailType"], item["source"]) for item in markers} == {("Scheduled Event", "aws.events")}
    rules = [item["resources"] for item in markers]
    assert [arns for arns in rules if len(arns) != 1 or ":rule/" not in arns[0]] == []
