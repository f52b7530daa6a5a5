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
WATCHED_FIRINGS = 8
# Each firing is timed when the handler starts, so dispatch jitter on a busy machine moves single
# firings by a fraction of a second (gaps of 0.2 + 0.8 s were seen); the mean period over 7 gaps is
# immune to that, and a skipped or doubled firing still shows (mean ~2 s or ~0.5 s, a gap >= 2 s).
MEAN_PERIOD_RANGE_S = (0.8, 1.25)
MAX_GAP_S = 2.0


def test_rate_schedule_fires_once_per_scaled_period(aws: Aws) -> None:
    # Given ScheduleFunction on rate(1 minute), a cloud started with --schedule-scale 60, and a warm worker
    wait_until(lambda: len(aws.records("schedule")) >= 1, 45, "the first schedule firing")
    steady_from_us = (time.time() + SETTLE_S) * 1_000_000

    # When we watch 8 firings of the steady state
    def watched() -> list[dict[str, Any]] | None:
        markers = [item for item in aws.records("schedule") if int(item["at"]) >= steady_from_us]
        return markers[:WATCHED_FIRINGS] if len(markers) >= WATCHED_FIRINGS else None

    markers = wait_until(watched, SETTLE_S + 20, f"{WATCHED_FIRINGS} steady-state schedule firings")

    # Then they come once per scaled period (1 s): none skipped, none doubled
    times_s = [int(item["at"]) / 1_000_000 for item in markers]
    gaps = [round(later - earlier, 2) for earlier, later in zip(times_s, times_s[1:], strict=False)]
    mean_period = (times_s[-1] - times_s[0]) / (len(times_s) - 1)
    low, high = MEAN_PERIOD_RANGE_S
    assert low <= mean_period <= high, f"mean period {mean_period:.2f} s, gaps {gaps}"
    assert max(gaps) < MAX_GAP_S, f"gaps between firings: {gaps}"
    # And each firing got a scheduled event naming its rule
    assert {(item["detailType"], item["source"]) for item in markers} == {("Scheduled Event", "aws.events")}
    rules = [item["resources"] for item in markers]
    assert [arns for arns in rules if len(arns) != 1 or ":rule/" not in arns[0]] == []
