"""EventBridge Scheduler's expressions: when at(), rate() and cron() fire, in a time zone, and what is refused."""

from __future__ import annotations

import datetime as dt

import pytest
from busline_core.schedule_expressions import InvalidScheduleExpression, parse, to_croniter

UTC = dt.UTC


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def test_cron_fires_at_the_local_time_of_its_zone_across_a_daylight_saving_change() -> None:
    # Given 06:00 every day in Paris, asked on the eve of the switch to summer time (29 March 2026)
    expression = parse("cron(0 6 * * ? *)", "Europe/Paris")
    # When the next three runs are listed
    runs = expression.runs_after(at("2026-03-27T12:00:00+00:00"), at("2026-03-27T12:00:00+00:00"), 3)
    # Then each is 06:00 in Paris: 05:00 UTC in winter, 04:00 UTC from the 29th
    assert [run.isoformat() for run in runs] == [
        "2026-03-28T05:00:00+00:00",
        "2026-03-29T04:00:00+00:00",
        "2026-03-30T04:00:00+00:00",
    ]


def test_rate_fires_when_created_then_every_period() -> None:
    # Given rate(15 minutes) created at 10:00:07 UTC
    created = at("2026-12-01T10:00:07+00:00")
    expression = parse("rate(15 minutes)")
    # Then its first run is at creation (no StartDate: AWS starts at once), then each 15 minutes
    assert expression.first_run(created) == created
    runs = expression.runs_after(created, at("2026-12-01T10:20:00+00:00"), 2)
    assert [run.isoformat() for run in runs] == ["2026-12-01T10:30:07+00:00", "2026-12-01T10:45:07+00:00"]


def test_at_fires_once_in_its_zone() -> None:
    # Given a one-time schedule at 18:00 in New York on 24 December
    expression = parse("at(2026-12-24T18:00:00)", "America/New_York")
    # Then it fires at 23:00 UTC, and never after that
    assert expression.next_after(at("2026-12-01T00:00:00+00:00")) == at("2026-12-24T23:00:00+00:00")
    assert expression.next_after(at("2026-12-24T23:00:00+00:00")) is None


def test_the_year_field_limits_cron_to_its_years() -> None:
    # Given noon on 1 January, in 2028 and 2030 only
    expression = parse("cron(0 12 1 1 ? 2028,2030)")
    # Then, from now, it fires on 1 January 2028 and 2030, and then never
    runs = expression.runs_after(at("2026-12-01T00:00:00+00:00"), at("2026-12-01T00:00:00+00:00"), 5)
    assert [run.date().isoformat() for run in runs] == ["2028-01-01", "2030-01-01"]


@pytest.mark.parametrize(
    ("aws", "croniter_form"),
    [
        ("0 12 * * ? *", "0 12 * * *"),
        ("0/15 8-17 ? * MON-FRI *", "0/15 8-17 * * MON-FRI"),
        ("0 10 ? * 2-6 2026", "0 10 * * 1-5"),
        ("30 6 ? * 1,7 *", "30 6 * * 0,6"),
        ("0 9 ? * 6#3 *", "0 9 * * 5#3"),
    ],
)
def test_aws_cron_is_converted_for_croniter(aws: str, croniter_form: str) -> None:
    assert to_croniter(aws.split()) == croniter_form


@pytest.mark.parametrize(
    ("expression", "timezone", "message"),
    [
        ("rate(5 fortnights)", "UTC", "'rate(5 fortnights)' is none of at(yyyy-mm-ddThh:mm:ss)"),
        ("rate(0 minutes)", "UTC", "'rate(0 minutes)': the rate must be a positive number"),
        ("cron(0 12 * * ?)", "UTC", "'cron(0 12 * * ?)' must have 6 fields"),
        ("cron(0 12 * * * *)", "UTC", "exactly one of day-of-month and day-of-week must be '?'"),
        ("cron(99 12 * * ? *)", "UTC", "'cron(99 12 * * ? *)' is not a valid cron expression"),
        ("cron(0 12 * * ? 26)", "UTC", "the year field must be *, a year, a range or a list"),
        ("at(2026-02-30T10:00:00)", "UTC", "'at(2026-02-30T10:00:00)': day is out of range for month"),
        ("rate(1 day)", "Mars/Olympus_Mons", "'Mars/Olympus_Mons' is not an IANA time zone"),
    ],
)
def test_what_scheduler_would_refuse_is_refused_with_the_reason(expression: str, timezone: str, message: str) -> None:
    with pytest.raises(InvalidScheduleExpression) as refused:
        parse(expression, timezone)
    assert message in str(refused.value)


def test_the_run_before_a_due_time_is_one_period_or_one_cron_step_earlier() -> None:
    # Given a run due at 06:00 Paris time on 30 March 2026 (04:00 UTC, summer time since the 29th)
    due = at("2026-03-30T04:00:00+00:00")
    # Then the run before it was due 15 minutes earlier for rate(15 minutes), at 06:00 Paris on the
    # 29th for the daily cron (also summer time), and never for a one-time schedule
    assert parse("rate(15 minutes)").previous_before(due) == at("2026-03-30T03:45:00+00:00")
    assert parse("cron(0 6 * * ? *)", "Europe/Paris").previous_before(due) == at("2026-03-29T04:00:00+00:00")
    assert parse("cron(0 6 * * ? *)", "Europe/Paris").previous_before(at("2026-03-29T04:00:00+00:00")) == at(
        "2026-03-28T05:00:00+00:00"
    )
    assert parse("at(2026-03-30T06:00:00)", "Europe/Paris").previous_before(due) is None
