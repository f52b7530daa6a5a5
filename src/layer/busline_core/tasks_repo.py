"""The task item in DynamoDB: the only code that reads or writes its attributes.

It parses an item into a `TaskState` (task_state.py) and turns each state-machine event into one
conditional UpdateItem: the condition is the event's guard, the update its effect, written against
the item so that two racing callers cannot both pass (DynamoDB applies each UpdateItem atomically).
The write asks for the item as it was (ALL_OLD); the state after it is the transition table's effect
on that, so the caller gets both sides of its own atomic write without reading again.

Item attributes: taskId, owner, pipeline, spec (JSON), status, createdAt, updatedAt, updatedAtMs;
per phase p: p_startedAt, p_completedAt, p_total (known once extract completed), p_done, p_chunks
(transform/load: a number set); count_read|filtered|rejected|loaded; error {phase, chunk, message};
failed (a string set of failing chunks); error_terminal; announced; expiresAt (epoch seconds: the
table's TTL attribute, set once a finished task is announced); commit ("task" or "chunk"; absent on tasks
recorded before commit modes: "chunk"); committedAt; retry_<member> (a map, failure member as in `failed` ->
RetryNotice, of the work waiting for its next delivery; absent on tasks recorded before retries were shown).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
from boto3.dynamodb.conditions import Attr, ConditionBase, Key
from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError

from . import usage
from .contracts import PHASE_ORDER, Counts, Phase, RetryNotice, ScheduledBy, TaskError, TaskStatus
from .dynamo_target import (
    BATCH_GET_KEYS,
    UNPROCESSED_FIRST_WAIT_S,
    UNPROCESSED_MAX_WAIT_S,
    UNPROCESSED_RETRIES,
)
from .errors import ListingUnavailable, TaskAlreadyRecorded
from .limits import MAX_RETRY_NOTICES, MAX_TASK_ID_LENGTH
from .task_state import (
    ACTIVE_STATUSES,
    COUNTERS,
    RETRY_COUNTERS,
    Announced,
    Cancelled,
    ChunkCounted,
    ChunkFailedFinally,
    Committed,
    ExtractCompleted,
    ExtractCompletedWhileFailed,
    ExtractProgressed,
    ExtractStarted,
    FailureCleared,
    Outcome,
    PhaseCompleted,
    PhaseState,
    Recovered,
    RetryCleared,
    RetryScheduled,
    Stalled,
    TaskAbandoned,
    TaskEvent,
    TaskState,
    completion_status,
    decide,
    epoch_ms,
    failure_member,
    in_retry_order,
    iso,
    retry_member,
    retry_notice_shown,
    task_error,
    utc_now,
    validate,
)

Item = dict[str, Any]
# Projects only what a listing filters on (template.yaml): an index projecting the whole item is written again
# at every change of the task, doubling the write units of each chunk's counts; this one only when the status
# changes. A page's items are then read from the table (_whole_items).
OWNER_INDEX = "byOwner"
_TASKS_PAGE_KEY = ("taskId", "owner", "createdAt")
_RETRYING = "retrying"
_FILTERED_QUERIES = 20  # a filter that matches few tasks answers a short page (with a token) rather than wait


class StateMachineDrift(RuntimeError):
    """DynamoDB accepted a write the transition table refuses: the two disagree (a bug, never data)."""


@dataclass(frozen=True)
class _Write:
    update: str
    condition: str
    values: dict[str, Any]
    names: dict[str, str]


_deserializer = TypeDeserializer()


def _no_usable_index(error: ClientError) -> bool:
    """DynamoDB's answer to a query of an index the table lacks ("does not have the specified index"), or is
    still building ("backfilling"). moto answers a missing one ResourceNotFoundException, "Invalid index"."""
    details = error.response.get("Error", {})
    message = str(details.get("Message", "")).lower()
    if details.get("Code") == "ValidationException":
        return "specified index" in message or "backfilling" in message
    return details.get("Code") == "ResourceNotFoundException" and message.startswith("invalid index")


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value)
    if isinstance(value, set):
        return {_plain(member) for member in value}
    return value


def state_from_item(item: Mapping[str, Any]) -> TaskState:
    def phase(name: str) -> PhaseState:
        total = item.get(f"{name}_total")
        return PhaseState(
            done=int(item.get(f"{name}_done", 0)),
            total=None if total is None else int(total),
            chunks=frozenset(int(chunk) for chunk in item.get(f"{name}_chunks", ())),
            started_at=item.get(f"{name}_startedAt"),
            completed_at=item.get(f"{name}_completedAt"),
        )

    raw_error = item.get("error")
    error = None
    if isinstance(raw_error, Mapping):
        chunk = raw_error.get("chunk")
        error = TaskError(
            phase=Phase(raw_error["phase"]),
            chunk=None if chunk is None else int(chunk),
            message=str(raw_error.get("message", "")),
        )
    announced = item.get("announced")
    return TaskState(
        task_id=str(item["taskId"]),
        owner=str(item["owner"]),
        pipeline=str(item["pipeline"]),
        spec_json=str(item.get("spec", "")),
        status=TaskStatus(item["status"]),
        created_at=str(item["createdAt"]),
        updated_at=str(item["updatedAt"]),
        updated_at_ms=int(item.get("updatedAtMs", 0)),
        extract=phase("extract"),
        transform=phase("transform"),
        load=phase("load"),
        counts=Counts(**{name: int(item.get(f"count_{name}", 0)) for name in COUNTERS}),
        error=error,
        failing=frozenset(str(member) for member in item.get("failed", ())),
        error_terminal=bool(item.get("error_terminal", False)),
        announced=None if announced is None else TaskStatus(announced),
        expires_at=None if item.get("expiresAt") is None else int(item["expiresAt"]),
        commit="task" if item.get("commit") == "task" else "chunk",
        committed_at=item.get("committedAt"),
        correlation_id=item.get("correlationId"),
        scheduled_by=None if item.get("scheduledBy") is None else ScheduledBy.model_validate(item["scheduledBy"]),
        retry_of=item.get("retryOf"),
        retry_counts={name: int(item[f"count_{name}"]) for name in RETRY_COUNTERS if f"count_{name}" in item},
        usage=_usage_counts(item),
        retrying=in_retry_order(
            [
                RetryNotice.model_validate({name: _plain(value) for name, value in notice.items()})
                for notice in (item.get(_RETRYING) or {}).values()
                if isinstance(notice, Mapping)
            ]
        ),
    )


def state_from_stream_image(image: Mapping[str, Any]) -> TaskState | None:
    """A stream NewImage (AttributeValue form or already plain) as a TaskState; None if not a task."""
    task_id = image.get("taskId")
    if isinstance(task_id, Mapping) and len(task_id) == 1:
        image = {name: _plain(_deserializer.deserialize(value)) for name, value in image.items()}
    if not image.get("taskId") or "status" not in image:
        return None
    return state_from_item(image)


def item_from_state(state: TaskState) -> Item:
    item: Item = {
        "taskId": state.task_id,
        "owner": state.owner,
        "pipeline": state.pipeline,
        "spec": state.spec_json,
        "status": state.status.value,
        "createdAt": state.created_at,
        "updatedAt": state.updated_at,
        "updatedAtMs": state.updated_at_ms,
        **{f"count_{name}": getattr(state.counts, name) for name in COUNTERS},
    }
    for phase in PHASE_ORDER:
        progress = state.phase(phase)
        # Counters exist from the start so completion conditions can compare them without if_not_exists.
        item[f"{phase}_done"] = progress.done
        optional = {
            f"{phase}_total": progress.total,
            f"{phase}_startedAt": progress.started_at,
            f"{phase}_completedAt": progress.completed_at,
            f"{phase}_chunks": set(progress.chunks) or None,  # DynamoDB has no empty sets
        }
        item.update({name: value for name, value in optional.items() if value is not None})
    if state.error is not None:
        item["error"] = state.error.model_dump(mode="json")
    if state.failing:
        item["failed"] = set(state.failing)
    if state.error_terminal:
        item["error_terminal"] = True
    if state.announced is not None:
        item["announced"] = state.announced.value
    if state.expires_at is not None:
        item["expiresAt"] = state.expires_at
    item["commit"] = state.commit
    if state.committed_at is not None:
        item["committedAt"] = state.committed_at
    if state.correlation_id is not None:
        item["correlationId"] = state.correlation_id
    if state.scheduled_by is not None:
        item["scheduledBy"] = state.scheduled_by.model_dump()
    if state.retry_of is not None:
        item["retryOf"] = state.retry_of
    item.update({f"count_{name}": amount for name, amount in state.retry_counts.items()})
    # always a map, so that RetryScheduled can set one member of it and count them (size())
    item[_RETRYING] = {retry_member(notice): notice.model_dump(mode="json") for notice in state.retrying}
    return item


def _stamp(now: datetime) -> dict[str, Any]:
    return {":now": iso(now), ":nowMs": epoch_ms(now)}


_STAMP = "updatedAt = :now, updatedAtMs = :nowMs"
_EXISTS = "attribute_exists(taskId)"
_EXISTS_AND = f"{_EXISTS} AND"
_FAILED_OR_SUCCEEDED = {":failed": TaskStatus.FAILED.value, ":succeeded": TaskStatus.SUCCEEDED.value}
_FINAL = {**_FAILED_OR_SUCCEEDED, ":cancelled": TaskStatus.CANCELLED.value}
_NOT_FINAL = "NOT #status IN (:failed, :succeeded, :cancelled)"


def _totals(event: ExtractCompleted | ExtractCompletedWhileFailed) -> tuple[str, dict[str, Any]]:
    update = (
        f"SET extract_completedAt = :now, extract_startedAt = if_not_exists(extract_startedAt, :now), "
        f"extract_total = :chunks, extract_done = :chunks, transform_total = :chunks, load_total = :chunks, "
        f"{_STAMP}"
    )
    if event.read is None:  # a source planned in byte ranges: each range adds the rows it reads
        return update, {":chunks": event.chunks}
    return update + ", count_read = :read", {":chunks": event.chunks, ":read": event.read}


def _completion_markers(status: TaskStatus) -> str:
    """A condition true exactly when the task got as far as `status` (progress_status() == status)."""
    markers = []
    for phase in PHASE_ORDER:
        done = status is TaskStatus.SUCCEEDED or PHASE_ORDER.index(phase) < _reached(status)
        markers.append(f"attribute_{'exists' if done else 'not_exists'}({phase}_completedAt)")
        if not done:
            break
    return " AND ".join(markers)


def _reached(status: TaskStatus) -> int:
    """How many phases a task showing `status` has completed."""
    return {TaskStatus.EXTRACTING: 0, TaskStatus.TRANSFORMING: 1, TaskStatus.LOADING: 2, TaskStatus.COMMITTING: 3}[
        status
    ]


def _write_for(event: TaskEvent, now: datetime) -> _Write:
    stamp = _stamp(now)
    match event:
        case ExtractStarted():
            return _Write(
                f"SET {_STAMP}, extract_startedAt = if_not_exists(extract_startedAt, :now), #status = :running",
                f"{_EXISTS_AND} {_NOT_FINAL} AND attribute_not_exists(extract_completedAt)",
                {**stamp, **_FINAL, ":running": TaskStatus.EXTRACTING.value},
                {"#status": "status"},
            )
        case ExtractProgressed():
            return _Write(
                f"SET extract_done = :chunks, count_read = :read, {_STAMP}",
                f"{_EXISTS_AND} attribute_not_exists(extract_completedAt) AND extract_done < :chunks "
                "AND #status <> :cancelled",
                {**stamp, ":chunks": event.chunks, ":read": event.read, ":cancelled": TaskStatus.CANCELLED.value},
                {"#status": "status"},
            )
        case ExtractCompleted():
            update, values = _totals(event)
            return _Write(
                update + ", #status = :transforming",
                f"{_EXISTS_AND} attribute_not_exists(extract_completedAt) AND NOT #status IN (:failed, :cancelled)",
                {**stamp, **values, ":transforming": TaskStatus.TRANSFORMING.value, ":failed": TaskStatus.FAILED.value,
                 ":cancelled": TaskStatus.CANCELLED.value},  # fmt: skip
                {"#status": "status"},
            )
        case ExtractCompletedWhileFailed():
            update, values = _totals(event)
            return _Write(
                update,
                "attribute_not_exists(extract_completedAt) AND #status = :failed",
                {**stamp, **values, ":failed": TaskStatus.FAILED.value},
                {"#status": "status"},
            )
        case ChunkCounted():
            chunks = sorted(event.chunks)
            values = {
                **stamp,
                **{f":chunk{index}": chunk for index, chunk in enumerate(chunks)},
                ":chunkset": set(chunks),
                ":done": len(chunks),
                ":member": {failure_member(event.phase, chunk) for chunk in chunks},
                ":started": event.started_at or stamp[":now"],
            }
            adds = ["#chunks :chunkset", "#done :done"]
            for name, amount in event.counts.items():
                adds.append(f"count_{name} :{name}")
                values[f":{name}"] = amount
            none_counted = " AND ".join(f"NOT contains(#chunks, :chunk{index})" for index in range(len(chunks)))
            return _Write(
                f"ADD {', '.join(adds)} SET {_STAMP}, #started = if_not_exists(#started, :started) "
                "DELETE failed :member",
                f"{_EXISTS_AND} {none_counted}",
                values,
                {
                    "#chunks": f"{event.phase}_chunks",
                    "#done": f"{event.phase}_done",
                    "#started": f"{event.phase}_startedAt",
                },
            )
        case PhaseCompleted():
            previous = PHASE_ORDER[PHASE_ORDER.index(event.phase) - 1]
            commit_values: dict[str, Any] = {}
            commit_condition = ""
            if event.phase is Phase.LOAD:
                commit_values = {":task": "task"}
                commit_condition = (
                    " AND #commit = :task" if event.commit_pending else " AND (attribute_not_exists(#commit) OR #commit <> :task)"
                )
            return _Write(
                f"SET #completed = :now, #started = if_not_exists(#started, :now), #status = :status, {_STAMP}",
                "attribute_exists(#previousCompleted) AND attribute_not_exists(#completed) "
                f"AND #done = #total AND NOT #status IN (:failed, :cancelled){commit_condition}",
                {**stamp, ":status": completion_status(event).value, ":failed": TaskStatus.FAILED.value,
                 ":cancelled": TaskStatus.CANCELLED.value, **commit_values},  # fmt: skip
                {
                    "#completed": f"{event.phase}_completedAt",
                    "#started": f"{event.phase}_startedAt",
                    "#previousCompleted": f"{previous}_completedAt",
                    "#done": f"{event.phase}_done",
                    "#total": f"{event.phase}_total",
                    "#status": "status",
                    **({"#commit": "commit"} if event.phase is Phase.LOAD else {}),
                },
            )
        case ChunkFailedFinally():
            return _Write(
                f"SET #status = :failed, #error = if_not_exists(#error, :error), {_STAMP} ADD failed :member",
                f"{_EXISTS_AND} NOT #status IN (:succeeded, :cancelled)",
                {
                    **stamp,
                    **_FINAL,
                    ":error": _error_value(event.phase, event.chunk, event.message),
                    ":member": {failure_member(event.phase, event.chunk)},
                },
                {"#status": "status", "#error": "error"},
            )
        case FailureCleared():
            member = failure_member(event.phase, event.chunk)
            return _Write(
                f"SET {_STAMP} DELETE failed :member",
                "contains(failed, :memberName)",
                {**stamp, ":member": {member}, ":memberName": member},
                {},
            )
        case Recovered():
            return _Write(
                f"SET #status = :status, {_STAMP} REMOVE #error, expiresAt",
                "#status = :failed AND attribute_not_exists(failed) AND attribute_not_exists(error_terminal) "
                f"AND {_completion_markers(event.status)}",
                {**stamp, ":status": event.status.value, ":failed": TaskStatus.FAILED.value},
                {"#status": "status", "#error": "error"},
            )
        case TaskAbandoned():
            return _Write(
                f"SET #status = :failed, #error = if_not_exists(#error, :error), error_terminal = :true, {_STAMP}",
                f"{_EXISTS_AND} NOT #status IN (:succeeded, :cancelled)",
                {**stamp, **_FINAL, ":error": _error_value(event.phase, None, event.message), ":true": True},
                {"#status": "status", "#error": "error"},
            )
        case Stalled():
            return _Write(
                f"SET #status = :failed, #error = if_not_exists(#error, :error), error_terminal = :true, {_STAMP}",
                f"updatedAtMs = :seen AND {_NOT_FINAL}",
                {
                    **stamp,
                    **_FINAL,
                    ":error": _error_value(event.phase, None, event.message),
                    ":true": True,
                    ":seen": event.seen_updated_at_ms,
                },
                {"#status": "status", "#error": "error"},
            )
        case Announced():
            if event.expires_at is None:
                return _Write("SET announced = :status REMOVE expiresAt", _EXISTS, {":status": event.status.value}, {})
            return _Write(
                "SET announced = :status, expiresAt = :expires",
                _EXISTS,
                {":status": event.status.value, ":expires": event.expires_at},
                {},
            )
        case Committed():
            return _Write(
                f"SET #status = :succeeded, committedAt = :now, count_loaded = :loaded, count_deleted = :deleted, "
                f"{_STAMP} ADD count_rejected :rejected",
                "#status = :committing",
                {
                    **stamp,
                    ":succeeded": TaskStatus.SUCCEEDED.value,
                    ":committing": TaskStatus.COMMITTING.value,
                    ":loaded": event.loaded,
                    ":deleted": event.deleted,
                    ":rejected": event.rejected,
                },
                {"#status": "status"},
            )
        case Cancelled():
            return _Write(
                f"SET #status = :cancelled, {_STAMP}",
                "#status IN (:accepted, :extracting, :transforming, :loading)",
                {
                    **stamp,
                    ":cancelled": TaskStatus.CANCELLED.value,
                    ":accepted": TaskStatus.ACCEPTED.value,
                    ":extracting": TaskStatus.EXTRACTING.value,
                    ":transforming": TaskStatus.TRANSFORMING.value,
                    ":loading": TaskStatus.LOADING.value,
                },
                {"#status": "status"},
            )
        case RetryScheduled():
            notice = RetryNotice(
                phase=event.phase, chunk=event.chunk, attempt=event.attempt, error=event.message, retryAt=event.retry_at
            )
            shown = retry_notice_shown(notice)
            return _Write(
                f"SET #retrying.#member = :notice, {_STAMP}",
                f"{_EXISTS_AND} {_NOT_FINAL} AND (attribute_exists(#retrying.#member) OR size(#retrying) < :room)",
                {**stamp, **_FINAL, ":notice": shown.model_dump(mode="json"), ":room": MAX_RETRY_NOTICES},
                {"#status": "status", "#retrying": _RETRYING, "#member": failure_member(event.phase, event.chunk)},
            )
        case RetryCleared():
            return _Write(
                "REMOVE #retrying.#member",
                "attribute_exists(#retrying.#member)",
                {},
                {"#retrying": _RETRYING, "#member": failure_member(event.phase, event.chunk)},
            )
    raise TypeError(f"not a task event: {event!r}")


_CREATE_CALL = "dynamodb:PutItem"
_UPDATE_CALL = "dynamodb:UpdateItem"
_ADD_CLAUSE = re.compile(r"\bADD ")


# The task item's attributes holding its usage counts (usage.py): "usage:<service>:<operation>", numbers,
# one per counted key, so a write adds to them with ADD and no map has to exist first.
_USAGE_PREFIX = "usage:"


def _usage_attributes(counted: Mapping[str, float]) -> dict[str, Decimal]:
    return {f"{_USAGE_PREFIX}{key}": Decimal(str(round(value, 9))) for key, value in counted.items()}


def _usage_counts(item: Mapping[str, Any]) -> dict[str, float]:
    return {name[len(_USAGE_PREFIX) :]: float(value) for name, value in item.items() if name.startswith(_USAGE_PREFIX)}


def _with_usage(write: _Write, counted: Mapping[str, float]) -> _Write:
    """`write` that also adds the task's counted usage (usage.py): one more ADD term per count, so the
    state change and its counts are one UpdateItem (DynamoDB allows one ADD clause per expression)."""
    if not counted:
        return write
    names, values, terms = dict(write.names), dict(write.values), []
    for index, (attribute, amount) in enumerate(_usage_attributes(counted).items()):
        names[f"#usage{index}"] = attribute
        values[f":usage{index}"] = amount
        terms.append(f"#usage{index} :usage{index}")
    added = ", ".join(terms)
    if _ADD_CLAUSE.search(write.update):
        update = _ADD_CLAUSE.sub(f"ADD {added}, ", write.update, count=1)
    else:
        update = f"{write.update} ADD {added}"
    return _Write(update, write.condition, values, names)


def _error_value(phase: Phase, chunk: int | None, message: str) -> dict[str, Any]:
    return task_error(phase, chunk, message).model_dump(mode="json")


class TasksRepository:
    def __init__(self, table: Any, clock: Any = utc_now) -> None:
        self._table = table
        self._clock = clock

    @classmethod
    def from_table_name(cls, table_name: str) -> TasksRepository:
        return cls(boto3.resource("dynamodb").Table(table_name))

    # --- reads -------------------------------------------------------------------------------

    def get(self, task_id: str) -> TaskState | None:
        if len(task_id) > MAX_TASK_ID_LENGTH:
            return None  # we never issue such an id, and DynamoDB would answer its key with an error
        response = self._table.get_item(Key={"taskId": task_id}, ConsistentRead=True)
        item = response.get("Item")
        return None if item is None else state_from_item(item)

    def phase_standing(self, task_id: str, phase: Phase) -> tuple[bool, frozenset[int]]:
        """(work dropped, as work_dropped says; the chunks counted in `phase`): one consistent read, which
        lets a redelivered chunk skip work an earlier delivery finished."""
        response = self._table.get_item(
            Key={"taskId": task_id},
            ConsistentRead=True,
            ProjectionExpression="error_terminal, #status, #chunks",
            ExpressionAttributeNames={"#status": "status", "#chunks": f"{phase.value}_chunks"},
        )
        item = response.get("Item")
        if item is None:
            return True, frozenset()
        dropped = bool(item.get("error_terminal", False)) or item.get("status") == TaskStatus.CANCELLED.value
        return dropped, frozenset(int(counted) for counted in item.get(f"{phase.value}_chunks", ()))

    def work_dropped(self, task_id: str) -> bool:
        """Whether no work on the task can matter any more: it failed for good, it was cancelled, or it is
        gone (TTL)."""
        response = self._table.get_item(
            Key={"taskId": task_id},
            ConsistentRead=True,
            ProjectionExpression="error_terminal, #status",
            ExpressionAttributeNames={"#status": "status"},
        )
        item = response.get("Item")
        return (
            item is None
            or bool(item.get("error_terminal", False))
            or item.get("status") == TaskStatus.CANCELLED.value
        )

    def list_by_owner(
        self,
        owner: str,
        limit: int,
        start: Mapping[str, Any] | None = None,
        *,
        pipeline: str | None = None,
        status: TaskStatus | None = None,
    ) -> tuple[list[TaskState], dict[str, Any] | None]:
        """Newest first (GSI byOwner, sort key createdAt), only those of `pipeline` and `status` when given;
        `start` is the position a page returned. A filtered page is filled from as many queries as it
        takes (DynamoDB filters after it reads), at most _FILTERED_QUERIES of them."""
        query: dict[str, Any] = {
            "IndexName": OWNER_INDEX,
            "KeyConditionExpression": Key("owner").eq(owner),
            "ScanIndexForward": False,
        }
        condition: ConditionBase | None = None
        if pipeline is not None:
            condition = Attr("pipeline").eq(pipeline)
        if status is not None:
            matches = Attr("status").eq(status.value)
            condition = matches if condition is None else condition & matches
        if condition is not None:
            query["FilterExpression"] = condition
        items: list[Item] = []
        position = None if start is None else dict(start)
        for _ in range(_FILTERED_QUERIES):
            page = {**query, "Limit": limit - len(items)}
            if position is not None:
                page["ExclusiveStartKey"] = position
            try:
                response = self._table.query(**page)
            except ClientError as error:
                if _no_usable_index(error):
                    raise ListingUnavailable(
                        f"the task list is being rebuilt (index {OWNER_INDEX}, an upgrade's deploys): try again "
                        "in a few minutes; every task is still there and can be read by its id"
                    ) from error
                raise
            items += response.get("Items", [])
            last_key = response.get("LastEvaluatedKey")
            position = None if last_key is None else {name: _plain(value) for name, value in last_key.items()}
            if position is None or len(items) >= limit:
                break
        whole = self._whole_items([str(item["taskId"]) for item in items])
        # a task the TTL deleted since the index listed it is left out, as a later page would not show it
        return [state_from_item(whole[item["taskId"]]) for item in items if item["taskId"] in whole], position

    def _whole_items(self, task_ids: Sequence[str]) -> dict[str, Item]:
        """The tasks' items by id, read BATCH_GET_KEYS at a time; keys DynamoDB leaves unprocessed (a
        throttled table) are asked again after a growing wait."""
        # the resource's client: it takes and gives plain values, as the Table does
        client, table = self._table.meta.client, self._table.name
        found: dict[str, Item] = {}
        for start in range(0, len(task_ids), BATCH_GET_KEYS):
            pending: list[dict[str, Any]] = [{"taskId": task_id} for task_id in task_ids[start : start + BATCH_GET_KEYS]]
            for attempt in range(UNPROCESSED_RETRIES + 1):
                if attempt:
                    time.sleep(min(UNPROCESSED_MAX_WAIT_S, UNPROCESSED_FIRST_WAIT_S * 2 ** (attempt - 1)))
                answer = client.batch_get_item(RequestItems={table: {"Keys": pending}})
                for item in answer.get("Responses", {}).get(table, []):
                    found[str(item["taskId"])] = item
                pending = answer.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])
                if not pending:
                    break
            if pending:
                raise RuntimeError(f"dynamodb table {table}: {len(pending)} tasks stayed unprocessed (throttled)")
        return found

    @staticmethod
    def is_owner_position(position: Mapping[str, Any], owner: str) -> bool:
        """Whether `position` is a list_by_owner position of `owner`'s listing."""
        return (
            set(position) == set(_TASKS_PAGE_KEY)
            and all(isinstance(position[name], str) for name in _TASKS_PAGE_KEY)
            and position["owner"] == owner
        )

    def list_active(self) -> Iterator[TaskState]:
        """Non-final tasks (a scan: the watchdog runs once a minute over a small table)."""
        scan: dict[str, Any] = {"FilterExpression": Attr("status").is_in([s.value for s in ACTIVE_STATUSES])}
        while True:
            response = self._table.scan(**scan)
            yield from (state_from_item(item) for item in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return
            scan["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    # --- writes ------------------------------------------------------------------------------

    def create(self, state: TaskState, *, prepaid: tuple[str, ...] = ()) -> TaskState:
        """Record a new task; its item starts with the usage counted for it so far, this PutItem and the
        `prepaid` calls the caller is about to make for it (the API's PutEvents)."""
        paid = (_CREATE_CALL, *prepaid)
        counted = usage.METER.take(state.task_id, prepaid=paid)
        item = {**item_from_state(state), **_usage_attributes(counted)}
        try:
            self._table.put_item(Item=item, ConditionExpression="attribute_not_exists(taskId)")
        except Exception as error:
            usage.METER.give_back(state.task_id, counted, prepaid=paid)
            if isinstance(error, ClientError) and _refused_by_condition(error):
                raise TaskAlreadyRecorded(state.task_id) from error
            raise
        return state.model_copy(update={"usage": counted})

    def apply(self, task_id: str, event: TaskEvent) -> Outcome | None:
        """Apply one state-machine event as one conditional UpdateItem; None when the table refuses it.

        The item's updatedAtMs never goes back, which watchers order snapshots by: a writer whose clock
        is behind the stamp stored (two workers writing within the same few milliseconds, the later one
        stamped first) is refused by the stamp's condition and writes again just after that stamp."""
        validate(event)
        now = self._clock()
        for _ in range(_STAMP_ATTEMPTS):
            counted = usage.METER.take(task_id, prepaid=(_UPDATE_CALL,))
            write = _with_usage(_write_for(event, now), counted)
            request: dict[str, Any] = {
                "Key": {"taskId": task_id},
                "UpdateExpression": write.update,
                "ConditionExpression": f"({write.condition}) AND {_STAMP_NOT_BEHIND}",
                "ReturnValues": "ALL_OLD",
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                "ExpressionAttributeValues": {**write.values, ":nowMs": epoch_ms(now)},
            }
            if write.names:
                request["ExpressionAttributeNames"] = write.names
            try:
                response = self._table.update_item(**request)
                break
            except ClientError as error:
                # refused or failed, the write carried none of the counts: they wait for the next one
                usage.METER.give_back(task_id, counted, prepaid=(_UPDATE_CALL,))
                if not _refused_by_condition(error):
                    raise
                stored = _stored_stamp(error)
                if stored is None or stored <= epoch_ms(now):
                    return None  # the event's own condition refused it
                now = max(self._clock(), _EPOCH + timedelta(milliseconds=stored + 1))
        else:
            # other writers kept stamping ahead of this one: never drop the event, SQS delivers it again
            raise StampContention(f"{type(event).__name__} for {task_id}: {_STAMP_ATTEMPTS} writes stamped behind")
        before = state_from_item(response["Attributes"])
        after = decide(before, event, now)
        if after is None:
            raise StateMachineDrift(f"{type(event).__name__} was written to {task_id} but the table refuses it")
        return Outcome(before=before, after=after)


# updatedAtMs never goes back (TasksRepository.apply); a writer behind it tries again this often at most
_STAMP_NOT_BEHIND = "(attribute_not_exists(updatedAtMs) OR updatedAtMs <= :nowMs)"
_STAMP_ATTEMPTS = 10
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class StampContention(RuntimeError):
    """Every attempt of a write found the item stamped later than itself (tasks_repo.apply): retried as a
    whole, never taken for a refusal."""


def _stored_stamp(error: ClientError) -> int | None:
    """The item's updatedAtMs, from a refused write's ALL_OLD item (low-level format); None without one."""
    stamp = error.response.get("Item", {}).get("updatedAtMs")  # type: ignore[attr-defined]
    if isinstance(stamp, dict):
        stamp = stamp.get("N")
    return None if stamp is None else int(stamp)


def _refused_by_condition(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"
