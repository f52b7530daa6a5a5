"""`busline dlq list|show|replay|purge`: the dead-letter queues of the extract, transform and load phases.

Reading a DLQ must not consume it: messages are received with a visibility timeout (out of sight while we
look) and made visible again afterwards, except those replayed, which are deleted only once their copy
is safely in the source queue.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any

import typer
from botocore.exceptions import BotoCoreError, ClientError
from busline_core.dead_letters import parse_body
from busline_core.tasks_repo import TasksRepository
from rich.console import Console
from rich.table import Table

from busline.cli.endpoints import (
    PHASES,
    Deployment,
    EndpointsError,
    EndpointsOption,
    QueuePair,
    RegionOption,
    StackOption,
    resolve,
)
from busline.cli.progress_view import add_plain_row

app = typer.Typer(no_args_is_help=True, help="Inspect, replay and purge dead-letter queues.")
console = Console()
err_console = Console(stderr=True)

# Long enough to scan a DLQ of a few thousand messages; if the CLI dies, messages reappear after this.
HOLD_SECONDS = 300
RECEIVE_BATCH = 10
MOVE_TASK_UNSUPPORTED = frozenset({
    "InvalidAction", "NotImplemented", "UnsupportedOperation", "AccessDenied", "AccessDeniedException",
})

QueueOption = Annotated[
    str | None,
    typer.Option("--queue", help="Only this DLQ: a phase (extract/transform/load), a queue name or URL."),
]


@dataclass(frozen=True)
class DlqMessage:
    pair: QueuePair
    message_id: str
    body: str
    attributes: dict[str, str]
    message_attributes: dict[str, Any]
    task_id: str | None
    phase: str
    chunk: int | None
    detail_type: str | None

    @property
    def receive_count(self) -> int:
        return int(self.attributes.get("ApproximateReceiveCount", "0"))

    @property
    def sent_at(self) -> str:
        stamp = self.attributes.get("SentTimestamp")
        if not stamp:
            return ""
        return datetime.fromtimestamp(int(stamp) / 1000, tz=UTC).strftime("%m-%d %H:%M:%SZ")


def parse_message(pair: QueuePair, raw: dict[str, Any]) -> DlqMessage:
    body = raw.get("Body", "")
    parsed = parse_body(body)  # the layer's parser: the watchdog reads DLQs exactly the same way
    return DlqMessage(
        pair=pair,
        message_id=raw["MessageId"],
        body=body,
        attributes=raw.get("Attributes", {}),
        message_attributes=raw.get("MessageAttributes", {}),
        task_id=parsed.task_id,
        phase=parsed.phase or pair.phase,
        chunk=parsed.chunk,
        detail_type=parsed.detail_type,
    )


class DlqScan:
    """Receive every message of one DLQ once, keeping each out of sight until release() (or deletion)."""

    def __init__(self, sqs: Any, pair: QueuePair, *, long_poll: bool, hold_seconds: int = HOLD_SECONDS) -> None:
        self.sqs = sqs
        self.pair = pair
        self.long_poll = long_poll
        self.hold_seconds = hold_seconds
        self._held: dict[str, str] = {}  # message id -> receipt handle, for messages we made invisible
        self._seen: set[str] = set()

    def __enter__(self) -> DlqScan:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def messages(self) -> Iterator[DlqMessage]:
        expected = queue_depth(self.sqs, self.pair.dlq_url)[0]
        while True:
            # Short polls may miss messages on AWS (they sample servers); long-poll while some are unaccounted.
            wait = 1 if self.long_poll and len(self._seen) < expected else 0
            response = self.sqs.receive_message(
                QueueUrl=self.pair.dlq_url,
                MaxNumberOfMessages=RECEIVE_BATCH,
                VisibilityTimeout=self.hold_seconds,
                WaitTimeSeconds=wait,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            received = response.get("Messages", [])
            fresh = []
            for raw in received:
                self._held[raw["MessageId"]] = raw["ReceiptHandle"]
                if raw["MessageId"] not in self._seen:
                    fresh.append(raw)
            if not fresh:
                # Nothing new: the queue is drained, or held messages came back after HOLD_SECONDS.
                return
            for raw in fresh:
                self._seen.add(raw["MessageId"])
                yield parse_message(self.pair, raw)

    def delete(self, message: DlqMessage) -> None:
        receipt = self._held.pop(message.message_id)
        self.sqs.delete_message(QueueUrl=self.pair.dlq_url, ReceiptHandle=receipt)

    def release(self) -> None:
        held = list(self._held.items())
        self._held.clear()
        for start in range(0, len(held), RECEIVE_BATCH):
            entries = [
                {"Id": str(index), "ReceiptHandle": receipt, "VisibilityTimeout": 0}
                for index, (_, receipt) in enumerate(held[start:start + RECEIVE_BATCH])
            ]
            self.sqs.change_message_visibility_batch(QueueUrl=self.pair.dlq_url, Entries=entries)


def queue_depth(sqs: Any, queue_url: str) -> tuple[int, int]:
    """(visible, in flight) — ApproximateNumberOfMessages and ...NotVisible."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


def select_pairs(deployment: Deployment, queue: str | None) -> list[QueuePair]:
    pairs = deployment.queue_pairs()
    if queue is None:
        return pairs
    wanted = queue.strip()
    for pair in pairs:
        if wanted.lower() == pair.phase or wanted in {pair.dlq_name, pair.dlq_url, pair.queue_name, pair.queue_url}:
            return [pair]
    known = ", ".join(f"{pair.phase} ({pair.dlq_name})" for pair in pairs)
    raise typer.BadParameter(f"no dead-letter queue matches {queue!r}; known: {known}", param_hint="--queue")


class TaskErrors:
    """The error recorded on each task, read through the layer's own repository, once per task."""

    def __init__(self, deployment: Deployment) -> None:
        table_name = deployment.tasks_table_name()
        self._table_name = table_name
        self._tasks = TasksRepository(deployment.resource("dynamodb").Table(table_name)) if table_name else None
        self._cache: dict[str, str] = {}

    def for_task(self, task_id: str | None) -> str:
        if task_id is None or self._tasks is None:
            return ""
        if task_id not in self._cache:
            self._cache[task_id] = self._lookup(task_id)
        return self._cache[task_id]

    def _lookup(self, task_id: str) -> str:
        assert self._tasks is not None
        try:
            state = self._tasks.get(task_id)
        except (ClientError, BotoCoreError) as error:
            return f"(tasks table {self._table_name}: {error})"
        if state is None:
            return "(task not in the tasks table)"
        if state.error is None:
            return ""
        where = f"phase {state.error.phase.value}" + (f", chunk {state.error.chunk}" if state.error.chunk is not None else "")
        return f"{where}: {state.error.message}"


class Throttle:
    """Spaces calls to at most `per_second` (None: no limit)."""

    def __init__(self, per_second: float | None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._interval = 1.0 / per_second if per_second else 0.0
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0

    def wait(self) -> None:
        if not self._interval:
            return
        now = self._clock()
        if now < self._next:
            self._sleep(self._next - now)
            now = self._next
        self._next = now + self._interval


def _deployment(endpoints: Path | None, stack: str | None, region: str | None) -> Deployment:
    try:
        deployment = resolve(endpoints_file=endpoints, stack=stack, region=region)
        deployment.queue_pairs()
    except EndpointsError as error:
        err_console.print(str(error), style="red", markup=False)
        raise typer.Exit(1) from None
    return deployment


def _sqs_failure(action: str, queue_name: str, error: Exception) -> typer.Exit:
    detail = error.response["Error"].get("Message", str(error)) if isinstance(error, ClientError) else str(error)
    err_console.print(f"{action} {queue_name} failed: {detail}", style="red", markup=False)
    return typer.Exit(1)


@app.command("list")
def list_dlqs(endpoints: EndpointsOption = None, stack: StackOption = None, region: RegionOption = None) -> None:
    """Every DLQ with its depth and the source queue it belongs to."""
    deployment = _deployment(endpoints, stack, region)
    sqs = deployment.client("sqs")
    table = Table(title="Dead-letter queues")
    for column in ("phase", "dead-letter queue", "depth", "in flight", "source queue", "source depth"):
        numeric = "depth" in column or column == "in flight"
        table.add_column(column, justify="right" if numeric else "left", overflow="fold")
    for pair in deployment.queue_pairs():
        try:
            visible, in_flight = queue_depth(sqs, pair.dlq_url)
            source_visible, _ = queue_depth(sqs, pair.queue_url)
        except (ClientError, BotoCoreError) as error:
            raise _sqs_failure("reading", pair.dlq_name, error) from None
        add_plain_row(table, pair.phase, pair.dlq_name, visible, in_flight, pair.queue_name, source_visible)
    console.print(table)


@app.command("show")
def show(
    queue: QueueOption = None,
    task: Annotated[str | None, typer.Option("--task", help="Only messages of this task id.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many messages per DLQ.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print the messages as JSON.")] = False,
    endpoints: EndpointsOption = None,
    stack: StackOption = None,
    region: RegionOption = None,
) -> None:
    """Messages in the DLQs with task, phase, chunk, receive count and the task's last error (not consumed)."""
    deployment = _deployment(endpoints, stack, region)
    pairs = select_pairs(deployment, queue)
    sqs = deployment.client("sqs")
    errors = TaskErrors(deployment)
    rows: list[dict[str, Any]] = []
    for pair in pairs:
        try:
            with DlqScan(sqs, pair, long_poll=not deployment.is_local) as scan:
                shown = 0
                for message in scan.messages():
                    if task is not None and message.task_id != task:
                        continue
                    shown += 1
                    rows.append({
                        "queue": pair.dlq_name, "messageId": message.message_id, "taskId": message.task_id,
                        "phase": message.phase, "chunk": message.chunk, "detailType": message.detail_type,
                        "receiveCount": message.receive_count, "sentAt": message.sent_at,
                        "lastError": errors.for_task(message.task_id),
                    })
                    if shown >= limit:
                        break
        except (ClientError, BotoCoreError) as error:
            raise _sqs_failure("reading", pair.dlq_name, error) from None
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    queues = ", ".join(pair.dlq_name for pair in pairs)
    table = Table(title=f"Dead-lettered messages in {queues} (left in place)")
    for column in ("message", "task", "phase", "chunk", "receives", "sent", "last error"):
        table.add_column(column, overflow="fold", no_wrap=column in {"phase", "chunk", "receives"})
    for row in rows:
        add_plain_row(
            table,
            row["messageId"], row["taskId"] or "?", row["phase"],
            "" if row["chunk"] is None else str(row["chunk"]), str(row["receiveCount"]), row["sentAt"],
            row["lastError"],
        )
    console.print(table)
    console.print(f"{len(rows)} message(s) shown; all are still in their DLQ.")


@app.command("replay")
def replay(
    queue: QueueOption = None,
    task: Annotated[str | None, typer.Option("--task", help="Only messages of this task id.")] = None,
    phase: Annotated[str | None, typer.Option("--phase", help="Only messages of this phase.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would move; move nothing.")] = False,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Move at most this many messages.")] = None,
    rate: Annotated[
        float | None, typer.Option("--rate", min=0.01, help="At most this many messages per second.")
    ] = None,
    endpoints: EndpointsOption = None,
    stack: StackOption = None,
    region: RegionOption = None,
) -> None:
    """Send dead-lettered messages back to their source queue (same body and attributes), then delete them."""
    if phase is not None and phase not in PHASES:
        raise typer.BadParameter(f"{phase!r} is not one of {', '.join(PHASES)}", param_hint="--phase")
    deployment = _deployment(endpoints, stack, region)
    pairs = select_pairs(deployment, queue)
    sqs = deployment.client("sqs")
    unfiltered = task is None and phase is None and limit is None and not dry_run
    if unfiltered and deployment.aws_endpoint is None:
        remaining = []
        for pair in pairs:
            try:
                if not _start_move_task(sqs, pair, rate):
                    remaining.append(pair)
            except (ClientError, BotoCoreError) as error:
                raise _sqs_failure("starting a message move task for", pair.dlq_name, error) from None
        pairs = remaining
    throttle = Throttle(rate)
    would_move: list[DlqMessage] = []
    moved_total = 0
    for pair in pairs:
        moved = 0
        try:
            with DlqScan(sqs, pair, long_poll=not deployment.is_local) as scan:
                for message in scan.messages():
                    if (task is not None and message.task_id != task) or (phase is not None and message.phase != phase):
                        continue  # stays held, made visible again when the scan ends
                    if dry_run:
                        would_move.append(message)
                    else:
                        throttle.wait()
                        _send_to_source(sqs, message)
                        moved += 1
                        moved_total += 1
                        _delete_replayed(scan, message)
                    if limit is not None and len(would_move) + moved_total >= limit:
                        break
        except (ClientError, BotoCoreError) as error:
            console.print(f"moved {moved} message(s) from {pair.dlq_name} to {pair.queue_name} before the failure")
            raise _sqs_failure("replaying", pair.dlq_name, error) from None
        if not dry_run:
            console.print(f"moved {moved} message(s) from {pair.dlq_name} to {pair.queue_name}")
        if limit is not None and len(would_move) + moved_total >= limit:
            break
    if dry_run:
        _print_dry_run(would_move)
    else:
        console.print(f"moved {moved_total} message(s) in total")


def _start_move_task(sqs: Any, pair: QueuePair, rate: float | None) -> bool:
    """AWS moves a whole DLQ server-side; False when this endpoint (e.g. moto) cannot, so we move it ourselves."""
    if rate is not None and rate < 1:
        return False  # a move task's slowest rate is 1 message/s; our own loop can go slower
    arns = {
        url: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        for url in (pair.dlq_url, pair.queue_url)
    }
    request: dict[str, Any] = {"SourceArn": arns[pair.dlq_url], "DestinationArn": arns[pair.queue_url]}
    if rate is not None:
        request["MaxNumberOfMessagesPerSecond"] = max(1, min(500, int(rate)))
    try:
        handle = sqs.start_message_move_task(**request)["TaskHandle"]
    except NotImplementedError:
        return False
    except ClientError as error:
        code = error.response["Error"].get("Code", "")
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        if code in MOVE_TASK_UNSUPPORTED or status >= 500:
            err_console.print(f"{pair.dlq_name}: message move task unavailable ({code}); moving messages one by one",
                              style="yellow", markup=False)
            return False
        raise
    visible, _ = queue_depth(sqs, pair.dlq_url)
    console.print(f"moving ~{visible} message(s) from {pair.dlq_name} to {pair.queue_name} "
                  f"(SQS message move task {handle}; follow it with `busline dlq list`)")
    return True


def _send_to_source(sqs: Any, message: DlqMessage) -> None:
    request: dict[str, Any] = {"QueueUrl": message.pair.queue_url, "MessageBody": message.body}
    attributes = {
        name: {key: value[key] for key in ("DataType", "StringValue", "BinaryValue") if key in value}
        for name, value in message.message_attributes.items()
    }
    if attributes:
        request["MessageAttributes"] = attributes
    if message.pair.queue_url.endswith(".fifo"):
        request["MessageGroupId"] = message.attributes.get("MessageGroupId", message.task_id or "busline")
        request["MessageDeduplicationId"] = message.attributes.get("MessageDeduplicationId", message.message_id)
    sqs.send_message(**request)


def _delete_replayed(scan: DlqScan, message: DlqMessage) -> None:
    try:
        scan.delete(message)
    except ClientError as error:
        # Already re-sent: a leftover copy is harmless (the steps are idempotent), so warn and go on.
        err_console.print(f"{message.message_id} was replayed but could not be deleted from "
                          f"{message.pair.dlq_name}: {error}", style="yellow", markup=False)


def _print_dry_run(messages: list[DlqMessage]) -> None:
    table = Table(title="Dry run: would replay")
    for column in ("from", "to", "message", "task", "phase", "chunk"):
        table.add_column(column)
    for message in messages:
        chunk = "" if message.chunk is None else message.chunk
        add_plain_row(table, message.pair.dlq_name, message.pair.queue_name, message.message_id,
                      message.task_id or "?", message.phase, chunk)
    console.print(table)
    console.print(f"dry run: would move {len(messages)} message(s); moved 0")


@app.command("purge")
def purge(
    queue: QueueOption = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    endpoints: EndpointsOption = None,
    stack: StackOption = None,
    region: RegionOption = None,
) -> None:
    """Delete every message in the DLQs (all, or --queue). Asks first unless --yes."""
    deployment = _deployment(endpoints, stack, region)
    pairs = select_pairs(deployment, queue)
    sqs = deployment.client("sqs")
    depths: dict[str, int] = {}
    for pair in pairs:
        try:
            depths[pair.dlq_name] = queue_depth(sqs, pair.dlq_url)[0]
        except (ClientError, BotoCoreError) as error:
            raise _sqs_failure("reading", pair.dlq_name, error) from None
    summary = ", ".join(f"{name} ({depth})" for name, depth in depths.items())
    if not yes and not typer.confirm(f"Purge {sum(depths.values())} message(s) from {summary}? This cannot be undone"):
        err_console.print("nothing purged")
        raise typer.Exit(1)
    for pair in pairs:
        try:
            sqs.purge_queue(QueueUrl=pair.dlq_url)
        except ClientError as error:
            if error.response["Error"].get("Code", "").endswith("PurgeQueueInProgress"):
                err_console.print(f"{pair.dlq_name} was purged less than 60 s ago; try again later",
                                  style="red", markup=False)
                raise typer.Exit(1) from None
            raise _sqs_failure("purging", pair.dlq_name, error) from None
        console.print(f"purged {pair.dlq_name} ({depths[pair.dlq_name]} message(s))")
