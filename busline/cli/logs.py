"""`busline logs TASK_ID`: a task's log lines from every function, in time order.

A line is the task's when it carries the task's correlation id (correlation.py binds it in every function
for every record it works on) or the task's id. The task is read over the REST API first, as its owner:
an operator's id of another owner's task finds nothing, as everywhere else.

Where the lines are: a local cloud writes each function's lines to `<data dir>/logs/<Function>.log` (the
data dir holds endpoints.json); a deployed stack's lines are in its functions' CloudWatch log groups,
searched with one Logs Insights query.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# The keys every Powertools line has: not worth repeating on each printed line.
_STANDARD_KEYS = frozenset(
    {
        "level", "location", "message", "timestamp", "service", "cold_start", "function_name",
        "function_memory_size", "function_arn", "function_request_id", "xray_trace_id", "correlation_id",
        "task_id", "exception", "exception_name", "stack_trace", "sampling_rate",
    }
)  # fmt: skip
# Ids are letters, digits and a few separators (correlation.py); anything else never reaches a query.
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")
INSIGHTS_POLL_S = 1.0
INSIGHTS_LIMIT = 10_000  # Logs Insights' most rows per query


@dataclass(frozen=True, order=True)
class LogLine:
    at: datetime
    function: str
    level: str = field(compare=False)
    message: str = field(compare=False)
    fields: dict[str, Any] = field(compare=False, default_factory=dict)

    def render(self) -> str:
        extras = " ".join(f"{name}={_short(value)}" for name, value in self.fields.items())
        stamp = self.at.astimezone(UTC).strftime("%H:%M:%S.%f")[:-3]
        return f"{stamp}  {self.function:<20} {self.level:<7} {self.message}{'  ' + extras if extras else ''}"


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 200 else text[:199] + "…"


def safe_id(value: str) -> bool:
    return bool(_SAFE_ID.match(value))


# --- a local cloud's files -------------------------------------------------------------------------


def parse_line(function: str, raw: str) -> tuple[LogLine, str | None, str | None] | None:
    """(line, its correlation id, its task id), or None for a line that is not a Powertools JSON line
    (START/END/REPORT and the runtime's own)."""
    if not raw.startswith("{"):
        return None
    try:
        record = json.loads(raw)
        at = datetime.strptime(str(record["timestamp"]), "%Y-%m-%d %H:%M:%S,%f%z")
    except (ValueError, KeyError, TypeError):
        return None
    fields = {name: value for name, value in record.items() if name not in _STANDARD_KEYS and value is not None}
    if record.get("exception"):
        fields["exception"] = str(record["exception"]).strip().splitlines()[-1]
    line = LogLine(at, function, str(record.get("level", "")), str(record.get("message", "")), fields)
    return line, record.get("correlation_id"), record.get("task_id")


class LocalLogs:
    """Reads each function's log file from where it stopped last time (for --follow)."""

    def __init__(self, logs_dir: Path) -> None:
        self.logs_dir = logs_dir
        self._offsets: dict[Path, int] = {}

    def new_lines(self, correlation_id: str | None, task_id: str) -> list[LogLine]:
        found: list[LogLine] = []
        for path in sorted(self.logs_dir.glob("*.log")):
            with path.open("rb") as stream:
                stream.seek(self._offsets.get(path, 0))
                data = stream.read()
            complete = data[: data.rfind(b"\n") + 1]  # a line still being written is read next time
            self._offsets[path] = self._offsets.get(path, 0) + len(complete)
            for raw in complete.decode("utf-8", errors="replace").splitlines():
                parsed = parse_line(path.stem, raw)
                if parsed is None:
                    continue
                line, line_correlation, line_task = parsed
                if line_task == task_id or (correlation_id is not None and line_correlation == correlation_id):
                    found.append(line)
        return sorted(found)


# --- a deployed stack's CloudWatch Logs ------------------------------------------------------------


def insights_query(correlation_id: str | None, task_id: str) -> str:
    if not safe_id(task_id) or (correlation_id is not None and not safe_id(correlation_id)):
        raise ValueError("a task id or correlation id with characters a log query cannot carry")
    match = f'task_id = "{task_id}"'
    if correlation_id is not None:
        match = f'correlation_id = "{correlation_id}" or {match}'
    return (
        "fields @timestamp, @log, level, message, chunk, exception"
        f" | filter {match}"
        f" | sort @timestamp asc | limit {INSIGHTS_LIMIT}"
    )


def insights_lines(
    client: Any,
    log_groups: list[str],
    correlation_id: str | None,
    task_id: str,
    since: datetime,
    until: datetime,
    sleep: Callable[[float], None] = time.sleep,
) -> list[LogLine]:
    """The task's lines between `since` and `until`, from one Logs Insights query over `log_groups`."""
    started = client.start_query(
        logGroupNames=log_groups,
        startTime=int(since.timestamp()),
        endTime=int(until.timestamp()) + 1,
        queryString=insights_query(correlation_id, task_id),
    )
    while True:
        answer = client.get_query_results(queryId=started["queryId"])
        if answer["status"] not in ("Scheduled", "Running"):
            break
        sleep(INSIGHTS_POLL_S)
    if answer["status"] != "Complete":
        raise RuntimeError(f"the Logs Insights query ended {answer['status']}")
    lines = []
    for row in answer.get("results", []):
        values = {cell["field"]: cell["value"] for cell in row}
        at = datetime.strptime(values["@timestamp"], "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
        function = values.get("@log", "").rsplit("/", 1)[-1]  # account:/aws/lambda/<function name>
        fields = {name: values[name] for name in ("chunk", "exception") if values.get(name)}
        lines.append(LogLine(at, function, values.get("level", ""), values.get("message", ""), fields))
    return sorted(lines)


def stack_log_groups(cloudformation: Any, stack: str) -> list[str]:
    """The stack's functions' log groups (template.yaml declares one per function)."""
    groups: list[str] = []
    paginator = cloudformation.get_paginator("list_stack_resources")
    for page in paginator.paginate(StackName=stack):
        groups += [
            resource["PhysicalResourceId"]
            for resource in page["StackResourceSummaries"]
            if resource["ResourceType"] == "AWS::Logs::LogGroup"
            and resource["PhysicalResourceId"].startswith("/aws/lambda/")
        ]
    return sorted(groups)


# --- following ------------------------------------------------------------------------------------


def follow(
    read: Callable[[], Iterable[LogLine]],
    finished: Callable[[], bool],
    *,
    poll_s: float = 1.0,
    grace_s: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[LogLine]:
    """Lines as they come, until the task has finished and `grace_s` more passed (the last lines of a
    finishing function are written just after its final state)."""
    ended_at: float | None = None
    while True:
        yield from read()
        if ended_at is None and finished():
            ended_at = time.monotonic()
        if ended_at is not None and time.monotonic() - ended_at >= grace_s:
            yield from read()
            return
        sleep(poll_s)


def created_at(snapshot: dict[str, Any]) -> datetime:
    text = str(snapshot.get("createdAt") or "")
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return datetime.now(UTC) - timedelta(days=1)
