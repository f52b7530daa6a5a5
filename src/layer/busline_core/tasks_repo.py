"""The task item in DynamoDB: task state, per-phase fan-in counters and the TaskSnapshot view.

Exactly-once is the point of this module: SQS delivers at least once, Lambda retries, a DLQ can be
redriven. Every counter and every status transition is therefore one conditional UpdateItem:
- a chunk is counted by adding its number to `<phase>_chunks` (a number set) under the condition that
  it is not there yet, so a redelivered chunk changes nothing;
- a phase completes (and the task turns SUCCEEDED) under `attribute_not_exists(<phase>_completedAt)`,
  so of two racing callers exactly one wins and publishes the follow-up events.

Item attributes: taskId, owner, pipeline, spec (JSON), status, createdAt, updatedAt, updatedAtMs;
per phase p: p_startedAt, p_completedAt, p_total (chunks, known once extract completed), p_done,
p_chunks (transform/load); count_read|filtered|rejected|loaded; error {phase, chunk, message};
failed (string set of "<phase>:<chunk>" still failing); error_terminal (no chunk can recover it).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import boto3
from boto3.dynamodb.conditions import Attr, Key
from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError

from .contracts import (
    PHASE_ORDER,
    Counts,
    Phase,
    PhaseProgress,
    Phases,
    PhaseTiming,
    TaskError,
    TaskSnapshot,
    TaskStatus,
)
from .errors import InvalidTask

Item = dict[str, Any]
TaskRef = str | Mapping[str, Any]  # a task id or a task item

COUNTERS = ("read", "filtered", "rejected", "loaded")
ACTIVE_STATUSES = (TaskStatus.ACCEPTED, TaskStatus.EXTRACTING, TaskStatus.TRANSFORMING, TaskStatus.LOADING)


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _task_id(task: TaskRef) -> str:
    return task if isinstance(task, str) else str(task["taskId"])


def _failure_member(phase: Phase, chunk: int | None) -> str:
    return f"{phase.value}:{chunk}" if chunk is not None else phase.value


def _is_conditional_failure(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def _int(value: Any, default: int = 0) -> int:
    return default if value is None else int(value)


def status_for_progress(item: Mapping[str, Any]) -> TaskStatus:
    """The status a non-failed task shows for how far it got (used when a failure is cleared)."""
    if "extract_completedAt" not in item:
        return TaskStatus.EXTRACTING
    if "transform_completedAt" not in item:
        return TaskStatus.TRANSFORMING
    if "load_completedAt" not in item:
        return TaskStatus.LOADING
    return TaskStatus.SUCCEEDED


_deserializer = TypeDeserializer()


def item_from_stream_image(image: Mapping[str, Any]) -> Item:
    """A stream NewImage as a plain item, whether still in AttributeValue form or already deserialized."""
    task_id = image.get("taskId")
    if isinstance(task_id, Mapping) and len(task_id) == 1:
        return {name: _deserializer.deserialize(value) for name, value in image.items()}
    return dict(image)


def encode_token(last_key: Mapping[str, Any]) -> str:
    plain = {name: (int(value) if isinstance(value, Decimal) else value) for name, value in last_key.items()}
    return base64.urlsafe_b64encode(json.dumps(plain, separators=(",", ":")).encode()).decode()


def decode_token(token: str, field: str = "nextToken") -> dict[str, Any]:
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError) as error:
        raise InvalidTask(
            f"{field}: not a valid page token", errors=[{"field": field, "message": "invalid token"}]
        ) from error
    if not isinstance(decoded, dict):
        raise InvalidTask(
            f"{field}: not a valid page token", errors=[{"field": field, "message": "invalid token"}]
        )
    return decoded


class TasksRepository:
    def __init__(self, table: Any, clock: Callable[[], datetime] = utc_now) -> None:
        self._table = table
        self._clock = clock

    @classmethod
    def from_table_name(cls, table_name: str) -> TasksRepository:
        return cls(boto3.resource("dynamodb").Table(table_name))

    # --- reads -------------------------------------------------------------------------------

    def get(self, task_id: str) -> Item | None:
        response = self._table.get_item(Key={"taskId": task_id}, ConsistentRead=True)
        return response.get("Item")

    def list_by_owner(
        self, owner: str, limit: int, next_token: str | None = None
    ) -> tuple[list[Item], str | None]:
        """Newest first (GSI byOwner, sort key createdAt); the token is opaque to callers."""
        query: dict[str, Any] = {
            "IndexName": "byOwner",
            "KeyConditionExpression": Key("owner").eq(owner),
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if next_token:
            query["ExclusiveStartKey"] = decode_token(next_token)
        response = self._table.query(**query)
        last_key = response.get("LastEvaluatedKey")
        return list(response.get("Items", [])), encode_token(last_key) if last_key else None

    def list_active(self) -> Iterator[Item]:
        """Non-terminal tasks (a scan: the watchdog runs once a minute over a small table)."""
        scan: dict[str, Any] = {"FilterExpression": Attr("status").is_in([s.value for s in ACTIVE_STATUSES])}
        while True:
            response = self._table.scan(**scan)
            yield from response.get("Items", [])
            if "LastEvaluatedKey" not in response:
                return
            scan["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    # --- writes ------------------------------------------------------------------------------

    def _stamp(self) -> dict[str, Any]:
        now = self._clock()
        return {":now": iso(now), ":nowMs": epoch_ms(now)}

    def _update(
        self,
        task: TaskRef,
        expression: str,
        condition: str,
        names: dict[str, str],
        values: dict[str, Any],
        returns: str = "ALL_NEW",
    ) -> Item | None:
        """One conditional UpdateItem; None when the condition did not hold."""
        request: dict[str, Any] = {
            "Key": {"taskId": _task_id(task)},
            "UpdateExpression": expression,
            "ConditionExpression": condition,
            "ReturnValues": returns,
            "ExpressionAttributeValues": values,
        }
        if names:
            request["ExpressionAttributeNames"] = names
        try:
            response = self._table.update_item(**request)
        except ClientError as error:
            if _is_conditional_failure(error):
                return None
            raise
        return dict(response.get("Attributes", {}))

    def create(self, task_id: str, owner: str, pipeline: str, spec_json: str, created_at: datetime) -> Item:
        item: Item = {
            "taskId": task_id,
            "owner": owner,
            "pipeline": pipeline,
            "spec": spec_json,
            "status": TaskStatus.ACCEPTED.value,
            "createdAt": iso(created_at),
            "updatedAt": iso(created_at),
            "updatedAtMs": epoch_ms(created_at),
            # Counters start at 0 so completion conditions can compare them without if_not_exists.
            "extract_done": 0,
            "transform_done": 0,
            "load_done": 0,
            **{f"count_{name}": 0 for name in COUNTERS},
        }
        self._table.put_item(Item=item, ConditionExpression="attribute_not_exists(taskId)")
        return item

    def start_phase(self, task: TaskRef, phase: Phase) -> Item | None:
        """Stamp the phase start once; extract also moves ACCEPTED -> EXTRACTING."""
        values = {
            **self._stamp(),
            ":failed": TaskStatus.FAILED.value,
            ":succeeded": TaskStatus.SUCCEEDED.value,
        }
        expression = "SET updatedAt = :now, updatedAtMs = :nowMs, #started = if_not_exists(#started, :now)"
        if phase is Phase.EXTRACT:
            expression += ", #status = :running"
            values[":running"] = TaskStatus.EXTRACTING.value
        return self._update(
            task,
            expression,
            "attribute_exists(taskId) AND NOT #status IN (:failed, :succeeded) AND attribute_not_exists(#completed)",
            {"#status": "status", "#started": f"{phase}_startedAt", "#completed": f"{phase}_completedAt"},
            values,
        )

    def extract_progress(self, task: TaskRef, chunks: int, read: int) -> Item | None:
        """Chunks extracted so far, for the progress view; monotonic, ignored after completion."""
        return self._update(
            task,
            "SET extract_done = :chunks, count_read = :read, updatedAt = :now, updatedAtMs = :nowMs",
            "attribute_not_exists(extract_completedAt) AND extract_done < :chunks",
            {},
            {**self._stamp(), ":chunks": chunks, ":read": read},
        )

    def complete_extract(self, task: TaskRef, chunks: int, read: int) -> Item | None:
        """Record the chunk count (the fan-in totals) once; None if extract had already completed."""
        values = {
            **self._stamp(),
            ":chunks": chunks,
            ":read": read,
            ":transforming": TaskStatus.TRANSFORMING.value,
            ":failed": TaskStatus.FAILED.value,
        }
        base = (
            "SET extract_completedAt = :now, extract_startedAt = if_not_exists(extract_startedAt, :now), "
            "extract_total = :chunks, extract_done = :chunks, transform_total = :chunks, load_total = :chunks, "
            "count_read = :read, updatedAt = :now, updatedAtMs = :nowMs"
        )
        item = self._update(
            task,
            base + ", #status = :transforming",
            "attribute_exists(taskId) AND attribute_not_exists(extract_completedAt) AND #status <> :failed",
            {"#status": "status"},
            values,
        )
        if item is not None:
            return item
        # A FAILED task keeps its status (a chunk may still recover it), but the totals are facts.
        del values[":transforming"], values[":failed"]
        return self._update(
            task, base, "attribute_exists(taskId) AND attribute_not_exists(extract_completedAt)", {}, values
        )

    def record_chunk_done(
        self,
        task: TaskRef,
        phase: Phase,
        chunk: int,
        counts: Mapping[str, int],
        started_at: datetime | None = None,
    ) -> Item | None:
        """Count a chunk of transform/load once. Returns the updated item, or None: already counted.

        The same write clears the chunk from `failed`, so a DLQ replay of a failed chunk recovers the
        task; the status itself is restored by a second, conditional write only in that rare case.
        """
        if phase is Phase.EXTRACT:
            raise ValueError("extract is counted by complete_extract, not per chunk")
        unknown = set(counts) - set(COUNTERS)
        if unknown:
            raise ValueError(f"unknown counters {sorted(unknown)}; expected some of {COUNTERS}")
        stamp = self._stamp()
        values: dict[str, Any] = {
            **stamp,
            ":chunk": chunk,
            ":chunkset": {chunk},
            ":one": 1,
            ":member": {_failure_member(phase, chunk)},
            ":started": iso(started_at) if started_at else stamp[":now"],
        }
        adds = ["#chunks :chunkset", "#done :one"]
        for name, amount in counts.items():
            adds.append(f"count_{name} :{name}")
            values[f":{name}"] = amount
        item = self._update(
            task,
            f"ADD {', '.join(adds)} "
            "SET updatedAt = :now, updatedAtMs = :nowMs, #started = if_not_exists(#started, :started) "
            "DELETE failed :member",
            "attribute_exists(taskId) AND NOT contains(#chunks, :chunk)",
            {"#chunks": f"{phase}_chunks", "#done": f"{phase}_done", "#started": f"{phase}_startedAt"},
            values,
        )
        if item is not None and item.get("status") == TaskStatus.FAILED.value:
            return self._recover(item) or item
        return item

    def clear_failure(self, task: TaskRef, phase: Phase, chunk: int | None) -> Item | None:
        """A chunk that failed before now succeeded (e.g. counted earlier, or a replayed extract):
        forget its failure, and restore the task's status if nothing else is failing."""
        item = self._update(
            task,
            "SET updatedAt = :now, updatedAtMs = :nowMs DELETE failed :member",
            "contains(failed, :memberName)",
            {},
            {
                **self._stamp(),
                ":member": {_failure_member(phase, chunk)},
                ":memberName": _failure_member(phase, chunk),
            },
        )
        if item is None:
            return None
        return self._recover(item) or item

    def _recover(self, item: Item) -> Item | None:
        return self._update(
            item,
            "SET #status = :status, updatedAt = :now, updatedAtMs = :nowMs REMOVE #error",
            "#status = :failed AND attribute_not_exists(failed) AND attribute_not_exists(error_terminal)",
            {"#status": "status", "#error": "error"},
            {**self._stamp(), ":status": status_for_progress(item).value, ":failed": TaskStatus.FAILED.value},
        )

    def try_complete_phase(self, task: TaskRef, phase: Phase) -> bool:
        """Complete transform or load if all its chunks are done; True for the one caller that did it.

        Transform needs extract completed (totals known); load needs transform completed and makes
        the task SUCCEEDED in the same write.
        """
        if phase is Phase.EXTRACT:
            raise ValueError("extract completes through complete_extract")
        previous = PHASE_ORDER[PHASE_ORDER.index(phase) - 1]
        status = TaskStatus.SUCCEEDED if phase is Phase.LOAD else TaskStatus.LOADING
        item = self._update(
            task,
            "SET #completed = :now, #started = if_not_exists(#started, :now), #status = :status, "
            "updatedAt = :now, updatedAtMs = :nowMs",
            "attribute_exists(#previousCompleted) AND attribute_not_exists(#completed) "
            "AND #done = #total AND #status <> :failed",
            {
                "#completed": f"{phase}_completedAt",
                "#started": f"{phase}_startedAt",
                "#previousCompleted": f"{previous}_completedAt",
                "#done": f"{phase}_done",
                "#total": f"{phase}_total",
                "#status": "status",
            },
            {**self._stamp(), ":status": status.value, ":failed": TaskStatus.FAILED.value},
            returns="NONE",
        )
        return item is not None

    def fail(
        self, task: TaskRef, phase: Phase, chunk: int | None, message: str, *, terminal: bool = False
    ) -> bool:
        """Mark the task FAILED (the first error is kept); True when this call is what failed it.

        A non-terminal failure is remembered per chunk in `failed`; when every failing chunk has
        succeeded again the task goes back to its phase status. `terminal` failures (unreadable source,
        stalled task) never recover.
        """
        values: dict[str, Any] = {
            **self._stamp(),
            ":failed": TaskStatus.FAILED.value,
            ":succeeded": TaskStatus.SUCCEEDED.value,
            ":error": {"phase": phase.value, "chunk": chunk, "message": message[:2000]},
        }
        expression = "SET #status = :failed, #error = if_not_exists(#error, :error), updatedAt = :now, updatedAtMs = :nowMs"
        if terminal:
            expression += ", error_terminal = :true"
            values[":true"] = True
        else:
            expression += " ADD failed :member"
            values[":member"] = {_failure_member(phase, chunk)}
        old = self._update(
            task,
            expression,
            "attribute_exists(taskId) AND #status <> :succeeded",
            {"#status": "status", "#error": "error"},
            values,
            returns="ALL_OLD",
        )
        return old is not None and old.get("status") != TaskStatus.FAILED.value

    def fail_if_stalled(self, task: Mapping[str, Any], phase: Phase, message: str) -> bool:
        """Fail a task only if it made no progress since `task` was read (its updatedAtMs is unchanged)."""
        values: dict[str, Any] = {
            **self._stamp(),
            ":failed": TaskStatus.FAILED.value,
            ":seen": task["updatedAtMs"],
            ":error": {"phase": phase.value, "chunk": None, "message": message},
            ":true": True,
        }
        return (
            self._update(
                task,
                "SET #status = :failed, #error = if_not_exists(#error, :error), error_terminal = :true, "
                "updatedAt = :now, updatedAtMs = :nowMs",
                "updatedAtMs = :seen AND #status <> :failed AND #status <> :succeeded",
                {"#status": "status", "#error": "error"},
                {**values, ":succeeded": TaskStatus.SUCCEEDED.value},
                returns="NONE",
            )
            is not None
        )

    def mark_announced(self, task: TaskRef, status: TaskStatus) -> None:
        """Remember which final status was announced, so a retry re-announces only a lost one."""
        self._update(
            task,
            "SET announced = :status",
            "attribute_exists(taskId)",
            {},
            {":status": status.value},
            returns="NONE",
        )

    # --- views -------------------------------------------------------------------------------

    @staticmethod
    def snapshot(item: Mapping[str, Any]) -> TaskSnapshot:
        return snapshot_from_item(item)


def _phase_progress(
    item: Mapping[str, Any], phase: Phase, status: TaskStatus, error: TaskError | None
) -> PhaseProgress:
    total = item.get(f"{phase}_total")
    done = _int(item.get(f"{phase}_done"))
    if f"{phase}_completedAt" in item:
        state = "completed"
    elif status is TaskStatus.FAILED and error is not None and error.phase is phase:
        state = "failed"
    elif f"{phase}_startedAt" in item or done > 0:
        state = "running"
    else:
        state = "pending"
    return PhaseProgress(done=done, total=None if total is None else int(total), status=state)


def _timing(item: Mapping[str, Any], phase: Phase) -> PhaseTiming | None:
    started = item.get(f"{phase}_startedAt")
    completed = item.get(f"{phase}_completedAt")
    if started is None and completed is None:
        return None
    seconds = None
    if started and completed:
        elapsed = datetime.fromisoformat(completed) - datetime.fromisoformat(started)
        seconds = round(max(elapsed.total_seconds(), 0.0), 3)
    return PhaseTiming(startedAt=started, completedAt=completed, seconds=seconds)


def snapshot_from_item(item: Mapping[str, Any]) -> TaskSnapshot:
    status = TaskStatus(item["status"])
    raw_error = item.get("error")
    error = None
    if status is TaskStatus.FAILED and isinstance(raw_error, Mapping):
        chunk = raw_error.get("chunk")
        error = TaskError(
            phase=Phase(raw_error["phase"]),
            chunk=None if chunk is None else int(chunk),
            message=str(raw_error.get("message", "")),
        )
    timings = {phase.value: timing for phase in PHASE_ORDER if (timing := _timing(item, phase)) is not None}
    return TaskSnapshot(
        taskId=item["taskId"],
        owner=item["owner"],
        pipeline=item["pipeline"],
        status=status,
        createdAt=item["createdAt"],
        updatedAt=item["updatedAt"],
        updatedAtMs=_int(item.get("updatedAtMs")),
        phases=Phases(**{phase.value: _phase_progress(item, phase, status, error) for phase in PHASE_ORDER}),
        counts=Counts(**{name: _int(item.get(f"count_{name}")) for name in COUNTERS}),
        timings=timings,
        error=error,
    )
