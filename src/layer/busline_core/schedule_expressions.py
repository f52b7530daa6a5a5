"""EventBridge Scheduler's schedule expressions (at, rate, cron) in a time zone: parsed, checked, and
asked when they fire next.

The one home of the rules: the API checks a schedule with them before creating it and shows its next
runs; the local cloud fires schedules by them (it is not deployed, but it imports this module so that
both sides agree to the second). AWS's syntax, from the Scheduler user guide ("Schedule types"):
  at(yyyy-mm-ddThh:mm:ss)             once, in the schedule's time zone
  rate(value minute|minutes|hour|hours|day|days)   starts when the schedule is created
  cron(minutes hours day-of-month month day-of-week year)   day-of-week 1-7 = SUN-SAT; one of the two
                                      day fields must be `?`
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

_AT = re.compile(r"^at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)$")
_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_CRON = re.compile(r"^cron\((.*)\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
_YEARS = re.compile(r"^(\*|\?|\d{4}(-\d{4})?(,\d{4}(-\d{4})?)*)$")
# cron's year field may name a year far ahead; looking further than this for a match is not worth it
_SEARCH_YEARS = 200


class InvalidScheduleExpression(ValueError):
    """The expression or the time zone is not one EventBridge Scheduler takes; the message says why."""


@dataclass(frozen=True)
class ScheduleExpression:
    text: str
    timezone: str
    kind: str  # "at", "rate" or "cron"
    _at: dt.datetime | None = None
    _period_s: int | None = None
    _cron: str | None = None
    _years: frozenset[int] | None = None  # None: every year

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def period_s(self) -> int | None:
        return self._period_s

    def first_run(self, created: dt.datetime) -> dt.datetime | None:
        """When a schedule created at `created` (aware) fires first: a rate schedule at once, as AWS does
        without a StartDate; the others at their first time on or after it."""
        if self._period_s is not None:
            return created
        return self.next_after(created - dt.timedelta(microseconds=1))

    def next_after(self, after: dt.datetime) -> dt.datetime | None:
        """The first firing strictly after `after` (aware), in UTC; None once an at() has passed."""
        if self._at is not None:
            return self._at.astimezone(dt.UTC) if self._at > after else None
        if self._period_s is not None:
            raise InvalidScheduleExpression("a rate schedule's next run depends on when it started: use runs_after")
        if self._cron is None:
            raise InvalidScheduleExpression(f"{self.text!r} has no cron fields")
        local = after.astimezone(self.zone)
        iterator = croniter(self._cron, local)
        limit = local.year + _SEARCH_YEARS
        while True:
            candidate: dt.datetime = iterator.get_next(dt.datetime)
            if candidate.year > limit:
                return None
            if self._years is None or candidate.year in self._years:
                return candidate.astimezone(dt.UTC)

    def previous_before(self, due: dt.datetime) -> dt.datetime | None:
        """The firing before the one due at `due` (aware), in UTC; None for an at(), which fires once.
        A rate schedule's is one period earlier (it may predate the schedule: then no run was due)."""
        if self._at is not None:
            return None
        if self._period_s is not None:
            return (due - dt.timedelta(seconds=self._period_s)).astimezone(dt.UTC)
        if self._cron is None:
            return None
        local = due.astimezone(self.zone)
        iterator = croniter(self._cron, local)
        limit = local.year - _SEARCH_YEARS
        while True:
            candidate: dt.datetime = iterator.get_prev(dt.datetime)
            if candidate.year < limit:
                return None
            if self._years is None or candidate.year in self._years:
                return candidate.astimezone(dt.UTC)

    def runs_after(self, started: dt.datetime, after: dt.datetime, count: int) -> list[dt.datetime]:
        """Up to `count` firings strictly after `after` of a schedule that started at `started`."""
        runs: list[dt.datetime] = []
        if self._period_s is not None:
            period = dt.timedelta(seconds=self._period_s)
            elapsed = max((after - started) // period + 1, 0)
            upcoming = started + elapsed * period
            while len(runs) < count:
                runs.append(upcoming.astimezone(dt.UTC))
                upcoming += period
            return runs
        cursor = after
        while len(runs) < count:
            found = self.next_after(cursor)
            if found is None:
                break
            runs.append(found)
            cursor = found
        return runs


def parse(text: str, timezone: str = "UTC") -> ScheduleExpression:
    expression = text.strip()
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidScheduleExpression(
            f"{timezone!r} is not an IANA time zone (e.g. UTC, Europe/Paris, America/New_York)"
        ) from None
    at = _AT.match(expression)
    if at:
        try:
            moment = dt.datetime.fromisoformat(at.group(1)).replace(tzinfo=zone)
        except ValueError as error:
            raise InvalidScheduleExpression(f"{expression!r}: {error}") from None
        return ScheduleExpression(expression, timezone, "at", _at=moment)
    rate = _RATE.match(expression)
    if rate:
        amount = int(rate.group(1))
        if amount <= 0:
            raise InvalidScheduleExpression(f"{expression!r}: the rate must be a positive number")
        return ScheduleExpression(
            expression, timezone, "rate", _period_s=amount * _UNIT_SECONDS[rate.group(2).rstrip("s")]
        )
    cron = _CRON.match(expression)
    if cron:
        fields = cron.group(1).split()
        if len(fields) != 6:
            raise InvalidScheduleExpression(
                f"{expression!r} must have 6 fields: minutes hours day-of-month month day-of-week year"
            )
        if (fields[2] == "?") == (fields[4] == "?"):
            raise InvalidScheduleExpression(
                f"{expression!r}: exactly one of day-of-month and day-of-week must be '?'"
            )
        if not _YEARS.match(fields[5]):
            raise InvalidScheduleExpression(f"{expression!r}: the year field must be *, a year, a range or a list")
        converted = to_croniter(fields)
        if not croniter.is_valid(converted):
            raise InvalidScheduleExpression(f"{expression!r} is not a valid cron expression")
        return ScheduleExpression(expression, timezone, "cron", _cron=converted, _years=_years(fields[5]))
    raise InvalidScheduleExpression(
        f"{expression!r} is none of at(yyyy-mm-ddThh:mm:ss), rate(N minutes|hours|days) and cron(6 fields)"
    )


def to_croniter(fields: list[str]) -> str:
    """AWS cron (6 fields, `?`, day-of-week 1-7 = SUN-SAT) -> croniter's 5 fields (0-6 = SUN-SAT)."""
    minutes, hours, day_of_month, month, day_of_week, _year = (field.replace("?", "*") for field in fields)

    def shift(match: re.Match[str]) -> str:
        return str(int(match.group(0)) - 1)

    # Numbers that are days, not step sizes (after /) nor occurrence counts (after #).
    day_of_week = re.sub(r"(?<![/#\d])\d+", shift, day_of_week)
    return " ".join((minutes, hours, day_of_month, month, day_of_week))


def _years(field: str) -> frozenset[int] | None:
    if field in ("*", "?"):
        return None
    years: set[int] = set()
    for part in field.split(","):
        first, _, last = part.partition("-")
        years.update(range(int(first), int(last or first) + 1))
    return frozenset(years)
