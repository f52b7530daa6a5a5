"""Rich rendering of task snapshots (the JSON of GET /tasks/{id} and of every WebSocket progress message)."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

PHASES = ("extract", "transform", "load")
COUNT_NAMES = ("read", "filtered", "rejected", "loaded", "deleted")
TERMINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})


def add_plain_row(table: Table, *cells: object) -> None:
    """Add cells as plain text: task errors and queue names may contain [brackets] that are not markup."""
    table.add_row(*(Text(str(cell)) for cell in cells))


def is_terminal(snapshot: dict[str, Any]) -> bool:
    return snapshot.get("status") in TERMINAL_STATUSES


def _phase(snapshot: dict[str, Any], phase: str) -> dict[str, Any]:
    phases = snapshot.get("phases") or {}
    value = phases.get(phase) or {}
    return value if isinstance(value, dict) else {}


def _count(snapshot: dict[str, Any], name: str) -> int:
    counts = snapshot.get("counts") or {}
    value = counts.get(name) if isinstance(counts, dict) else None
    return int(value) if isinstance(value, int | float) else 0


def counts_line(snapshot: dict[str, Any]) -> str:
    return "  ".join(f"{name} {_count(snapshot, name):,}" for name in COUNT_NAMES)


def failure_text(snapshot: dict[str, Any]) -> str:
    """One line naming phase, chunk and message of a failed task (the error object may be partial)."""
    error = snapshot.get("error")
    if not error:
        return "failed (no error recorded)"
    if not isinstance(error, dict):
        return str(error)
    where = []
    if error.get("phase"):
        where.append(f"phase {error['phase']}")
    if error.get("chunk") is not None:
        where.append(f"chunk {error['chunk']}")
    prefix = ", ".join(where)
    message = error.get("message") or "no message"
    return f"{prefix}: {message}" if prefix else str(message)


def retry_lines(snapshot: dict[str, Any]) -> list[str]:
    """One line per piece of work waiting for its next delivery: a user never waits in silence."""
    lines = []
    for notice in snapshot.get("retrying") or []:
        if not isinstance(notice, dict):
            continue
        where = str(notice.get("phase", "?"))
        if notice.get("chunk") is not None:
            where += f" chunk {notice['chunk']}"
        lines.append(
            f"retrying {where}: attempt {notice.get('attempt', '?')} failed ({notice.get('error', '')}); "
            f"next at {notice.get('retryAt', '?')}"
        )
    return lines


def cost_text(snapshot: dict[str, Any]) -> str | None:
    """"$0.000412 on AWS (lambda $…, …; …)": the task's estimated cost, so far while it runs."""
    cost = snapshot.get("cost")
    if not isinstance(cost, dict) or not isinstance(cost.get("usd"), int | float):
        return None
    by_service = cost.get("byService")
    services: dict[str, Any] = by_service if isinstance(by_service, dict) else {}
    shares = ", ".join(f"{name} ${usd:.6f}" for name, usd in sorted(services.items(), key=lambda item: -item[1]))
    so_far = "" if is_terminal(snapshot) else " so far"
    text = f"${cost['usd']:.6f} on AWS{so_far}"
    if shares:
        text += f" ({shares})"
    details = f"{cost.get('requests', 0):,} requests, {cost.get('lambdaGbSeconds', 0)} Lambda GB-s"
    unpriced = cost.get("unpriced") or {}
    if unpriced:
        details += f"; not priced: {', '.join(sorted(unpriced))}"
    return f"{text}; {details}; {cost.get('prices', '')}"


def counts_table(snapshot: dict[str, Any]) -> Table:
    table = Table(title=f"Task {snapshot.get('taskId', '?')}: {snapshot.get('status', '?')}")
    for name in COUNT_NAMES:
        table.add_column(name, justify="right")
    add_plain_row(table, *(f"{_count(snapshot, name):,}" for name in COUNT_NAMES))
    return table


def phases_table(snapshot: dict[str, Any]) -> Table:
    timings = snapshot.get("timings") or {}
    table = Table(title="Phases")
    for column in ("phase", "chunks done", "status", "seconds"):
        table.add_column(column)
    for phase in PHASES:
        state = _phase(snapshot, phase)
        total = state.get("total")
        done = state.get("done", 0)
        seconds = (timings.get(phase) or {}).get("seconds") if isinstance(timings, dict) else None
        add_plain_row(
            table,
            phase,
            f"{done}/{total}" if total is not None else f"{done}/?",
            str(state.get("status", "")),
            f"{seconds:.1f}" if isinstance(seconds, int | float) else "",
        )
    return table


def task_detail(snapshot: dict[str, Any]) -> RenderableType:
    header = Table.grid(padding=(0, 2))
    header.add_column(style="bold")
    header.add_column()
    for label, key in (("Task", "taskId"), ("Pipeline", "pipeline"), ("Owner", "owner"), ("Status", "status"),
                       ("Created", "createdAt"), ("Updated", "updatedAt")):
        add_plain_row(header, label, snapshot.get(key) or "")
    scheduled = snapshot.get("scheduledBy")
    if isinstance(scheduled, dict):
        add_plain_row(header, "Started by", f"schedule {scheduled.get('scheduleId')}, due {scheduled.get('scheduledTime')}")
    retried = snapshot.get("retried")
    if isinstance(retried, dict):
        add_plain_row(
            header, "Offered again",
            f"{retried.get('offered', 0):,} rows rejected by {retried.get('of')}: {retried.get('recovered', 0):,} "
            f"recovered, {retried.get('rejectedAgain', 0):,} rejected again",
        )  # fmt: skip
    if snapshot.get("commit") == "task":
        committed = snapshot.get("committedAt")
        add_plain_row(header, "Commit", f"task: visible at once, {committed}" if committed else "task: rows visible when it succeeds")
    if snapshot.get("correlationId"):
        add_plain_row(header, "Correlation id", f"{snapshot['correlationId']} (busline logs {snapshot.get('taskId', '')})")
    cost = cost_text(snapshot)
    if cost:
        add_plain_row(header, "Cost", cost)
    parts: list[RenderableType] = [header, phases_table(snapshot), counts_table(snapshot)]
    parts.extend(Text(line, style="yellow") for line in retry_lines(snapshot))
    if snapshot.get("status") == "FAILED" or snapshot.get("error"):
        parts.append(Text(f"Error: {failure_text(snapshot)}", style="red"))
    return Group(*parts)


def _param_text(name: str, prop: dict[str, Any]) -> str:
    kinds = [prop.get("type"), *(choice.get("type") for choice in prop.get("anyOf", []) if isinstance(choice, dict))]
    kind = "|".join(str(k) for k in kinds if k and k != "null") or "any"
    default = f" = {prop['default']}" if "default" in prop and prop["default"] is not None else ""
    return f"{name}: {kind}{default}"


def pipelines_table(items: list[dict[str, Any]]) -> Table:
    table = Table(title=f"{len(items)} pipeline(s)")
    for column in ("name", "parameters", "description"):
        table.add_column(column)
    for item in items:
        schema = item.get("params") if isinstance(item.get("params"), dict) else {}
        properties = schema.get("properties", {}) if isinstance(schema, dict) else {}
        params = ", ".join(_param_text(name, prop) for name, prop in properties.items() if isinstance(prop, dict))
        add_plain_row(table, item.get("name", "?"), params, item.get("description", ""))
    return table


def tasks_table(items: list[dict[str, Any]]) -> Table:
    table = Table(title=f"{len(items)} task(s), newest first")
    for column in ("task", "pipeline", "status", "created", "updated", "read", "loaded", "error"):
        table.add_column(column, justify="right" if column in {"read", "loaded"} else "left")
    for item in items:
        add_plain_row(
            table,
            str(item.get("taskId", "")),
            str(item.get("pipeline") or "ad hoc"),
            str(item.get("status", "")),
            str(item.get("createdAt", "")),
            str(item.get("updatedAt", "")),
            f"{_count(item, 'read'):,}",
            f"{_count(item, 'loaded'):,}",
            failure_text(item) if item.get("error") else "",
        )
    return table


class ProgressView:
    """A live bar per phase plus a counts line, fed with snapshots as they arrive."""

    def __init__(self, console: Console, task_id: str) -> None:
        self._console = console
        self._progress = Progress(
            TextColumn("{task.description:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("chunks  {task.fields[status]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self._bars: dict[str, TaskID] = {
            phase: self._progress.add_task(phase, total=None, status="") for phase in PHASES
        }
        self._counts = Text("")
        self._retries = Text("", style="yellow")
        self._title = Text(f"Task {task_id}", style="bold")
        self._live = Live(Group(self._title, self._progress, self._counts, self._retries), console=console,
                          refresh_per_second=8, transient=False)

    def __enter__(self) -> ProgressView:
        self._live.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._live.__exit__(exc_type, exc, tb)
        if not self._console.is_terminal:
            self._console.line()  # off a terminal Live prints its last frame without a final newline

    def update(self, snapshot: dict[str, Any]) -> None:
        for phase, bar in self._bars.items():
            state = _phase(snapshot, phase)
            total = state.get("total")
            done = int(state.get("done") or 0)
            self._progress.update(
                bar,
                completed=done,
                # Until extract finishes nobody knows how many chunks there will be: an open-ended bar.
                total=int(total) if isinstance(total, int | float) else None,
                status=str(state.get("status") or ""),
            )
        self._title.plain = f"Task {snapshot.get('taskId', '?')}: {snapshot.get('status', '?')}"
        self._counts.plain = counts_line(snapshot)
        self._retries.plain = "\n".join(retry_lines(snapshot))
        self._live.refresh()
