"""One function per step of the ETL; the thin handlers in src/*/app.py call these.

Every step may run more than once for the same input (SQS at-least-once delivery, Lambda retries,
DLQ redrives, the local cloud's chaos mode). Steps are therefore written to be re-runnable: outputs
go to deterministic S3 keys, follow-up events are published before the chunk is counted (a crash in
between re-publishes, and downstream counting absorbs the duplicate), and every counter and status
transition is a conditional write in TasksRepository.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Any, Protocol, TypeVar

from aws_lambda_powertools import Logger
from pydantic import BaseModel, ValidationError

from .bus import EventPublisher, Notifier
from .connections import ConnectionsRepository, WebSocketPusher
from .contracts import (
    CHUNK_EXTRACTED,
    CHUNK_TRANSFORMED,
    PHASE_COMPLETED,
    TASK_SUBMITTED,
    ChunkExtracted,
    ChunkTransformed,
    Phase,
    PhaseCompleted,
    PipelineRequest,
    RejectPage,
    SubmitTaskRequest,
    TaskFinished,
    TaskPage,
    TaskSnapshot,
    TaskStatus,
    TaskSubmitted,
)
from .dead_letters import DeadLetterQueues
from .errors import BuslineError, ChunkFailed, InvalidTask, LoadFailed, SourceUnreadable, TaskNotFound
from .pipelines import expand_pipeline
from .sources import iter_chunks, iter_records, open_source
from .spec import JoinSpec, OutputColumn, TargetSpec, TaskSpec, output_columns
from .storage import ChunkStore
from .tasks_repo import TasksRepository, epoch_ms, item_from_stream_image, snapshot_from_item, utc_now
from .transform import ReferenceTable, transform_rows

logger = Logger(child=True)

ADHOC_PIPELINE = "adhoc"
MAX_PAGE_SIZE = 1000
# ChunkExtracted events are sent in PutEvents batches, but never held back longer than this, so the
# transform of the first chunks overlaps the extract of the next ones.
EXTRACT_FLUSH_SECONDS = 0.25
WARM_SPEC_CACHE = 64


class Warehouse(Protocol):
    """What the load step needs of warehouse.Warehouse (a fake stands in for it in unit tests)."""

    def ensure_table(self, target: TargetSpec, columns: list[OutputColumn]) -> None: ...

    def load_chunk(
        self,
        task_id: str,
        chunk: int,
        target: TargetSpec,
        columns: list[OutputColumn],
        rows: list[dict[str, Any]],
    ) -> Any: ...  # a LoadOutcome(rows, already_loaded)


@dataclass
class WarmCache:
    """Per-container memory: reused across invocations of a warm Lambda, never shared between them."""

    specs: OrderedDict[str, TaskSpec] = field(default_factory=OrderedDict)
    references: dict[tuple[Any, ...], ReferenceTable] = field(default_factory=dict)
    ensured_tables: set[tuple[str, str]] = field(default_factory=set)
    warehouse: Warehouse | None = None


def no_faults() -> frozenset[str]:
    return frozenset()


@dataclass
class Deps:
    """Everything a step touches; built once per container by wiring.build_deps (tests build their own)."""

    tasks: TasksRepository
    publisher: EventPublisher | None = None
    notifier: Notifier | None = None
    chunks: ChunkStore | None = None
    s3: Any = None  # the S3 client sources are read with
    connections: ConnectionsRepository | None = None
    pusher: WebSocketPusher | None = None
    warehouse_factory: Callable[[], Warehouse] | None = None
    data_bucket: str = ""
    chunk_rows: int = 20000  # default chunkRows when a request does not say
    stall_seconds: int = 300
    dead_letters: DeadLetterQueues | None = None  # the watchdog's view of the step DLQs
    faults: Callable[[], frozenset[str]] = no_faults
    clock: Callable[[], datetime] = utc_now
    cache: WarmCache = field(default_factory=WarmCache)


T = TypeVar("T")


def _need(value: T | None, what: str) -> T:
    if value is None:
        raise BuslineError(f"this function is not wired with {what}")
    return value


# --- API ------------------------------------------------------------------------------------------


def _field_errors(error: ValidationError) -> list[dict[str, str]]:
    found = []
    for detail in error.errors():
        location = [str(part) for part in detail["loc"]]
        if location and location[0] in ("spec", "pipeline"):
            location = location[1:]  # the union's tag, not a field of the request
        found.append({"field": ".".join(location) or "body", "message": detail["msg"]})
    return found


def _invalid(error: ValidationError, prefix: str = "") -> InvalidTask:
    errors = _field_errors(error)
    if prefix:
        errors = [{**entry, "field": f"{prefix}.{entry['field']}"} for entry in errors]
    summary = "; ".join(f"{entry['field']}: {entry['message']}" for entry in errors)
    return InvalidTask(f"invalid task: {summary}", errors=errors)


def _resolve_spec(
    request: SubmitTaskRequest | PipelineRequest | TaskSpec | Mapping[str, Any], deps: Deps
) -> tuple[str, TaskSpec]:
    if isinstance(request, Mapping):
        try:
            request = SubmitTaskRequest.model_validate(request)
        except ValidationError as error:
            raise _invalid(error) from error
    body = request.root if isinstance(request, SubmitTaskRequest) else request
    if isinstance(body, PipelineRequest):
        params = dict(body.params)
        params.setdefault("chunkRows", deps.chunk_rows)
        try:
            spec = expand_pipeline(body.pipeline, params, deps.data_bucket)
        except ValidationError as error:
            raise _invalid(error, "params") from error
        except InvalidTask:
            raise  # pipelines.InvalidPipeline already names the field
        except ValueError as error:
            raise InvalidTask(str(error), errors=[{"field": "pipeline", "message": str(error)}]) from error
        return body.pipeline, spec
    spec = body
    if "chunkRows" not in spec.model_fields_set:
        spec = spec.model_copy(update={"chunkRows": deps.chunk_rows})
    return ADHOC_PIPELINE, spec


def submit_task(
    request: SubmitTaskRequest | PipelineRequest | TaskSpec | Mapping[str, Any], owner: str, deps: Deps
) -> TaskSnapshot:
    """Validate, record (ACCEPTED) and announce a task; invalid requests record and publish nothing."""
    pipeline, spec = _resolve_spec(request, deps)
    spec_json = spec.model_dump_json(by_alias=True)
    try:
        # A spec built in code (or by a pipeline with odd params) is held to the same rules as a body.
        TaskSpec.model_validate_json(spec_json)
    except ValidationError as error:
        raise _invalid(error) from error

    task_id = str(uuid.uuid4())
    item = deps.tasks.create(task_id, owner, pipeline, spec_json, deps.clock())
    try:
        _need(deps.publisher, "an event bus").publish(TASK_SUBMITTED, TaskSubmitted(taskId=task_id))
    except Exception as error:
        # Without the event nothing will ever run it: say so on the task instead of leaving it ACCEPTED.
        deps.tasks.fail(
            task_id, Phase.EXTRACT, None, f"could not publish TaskSubmitted: {error}", terminal=True
        )
        raise
    logger.info("task accepted", extra={"task_id": task_id, "pipeline": pipeline, "owner": owner})
    return snapshot_from_item(item)


def _owned_item(task_id: str, deps: Deps, owner: str | None) -> dict[str, Any]:
    item = deps.tasks.get(task_id)
    if item is None or (owner is not None and item.get("owner") != owner):
        raise TaskNotFound(task_id)
    return item


def get_task(task_id: str, deps: Deps, owner: str | None = None) -> TaskSnapshot:
    return snapshot_from_item(_owned_item(task_id, deps, owner))


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidTask(
            f"limit: must be between 1 and {MAX_PAGE_SIZE}, got {limit}",
            errors=[{"field": "limit", "message": f"must be between 1 and {MAX_PAGE_SIZE}"}],
        )


def list_tasks(owner: str, limit: int, next_token: str | None, deps: Deps) -> TaskPage:
    _check_limit(limit)
    items, token = deps.tasks.list_by_owner(owner, limit, next_token)
    return TaskPage(items=[snapshot_from_item(item) for item in items], nextToken=token)


def list_rejects(
    task_id: str, limit: int, next_token: str | None, deps: Deps, owner: str | None = None
) -> RejectPage:
    _check_limit(limit)
    _owned_item(task_id, deps, owner)
    items, token = _need(deps.chunks, "a chunk store").iter_rejects(
        ChunkStore.rejects_prefix(task_id), after=next_token, limit=limit
    )
    return RejectPage(items=items, nextToken=token)


# --- the ETL steps --------------------------------------------------------------------------------


def _check_fault_switch(phase: Phase, deps: Deps) -> None:
    if f"{phase.value}:fail" in deps.faults():
        raise ChunkFailed(f"deliberate fault: the fault switch says {phase.value}:fail")


def _spec_of(task_id: str, deps: Deps, item: Mapping[str, Any] | None = None) -> TaskSpec | None:
    specs = deps.cache.specs
    if task_id in specs:
        specs.move_to_end(task_id)
        return specs[task_id]
    if item is None:
        item = deps.tasks.get(task_id)
        if item is None:
            return None
    spec = TaskSpec.model_validate_json(item["spec"])
    specs[task_id] = spec
    while len(specs) > WARM_SPEC_CACHE:
        specs.popitem(last=False)
    return spec


def _publish(deps: Deps, events: Iterable[tuple[str, BaseModel]]) -> None:
    _need(deps.publisher, "an event bus").publish_many(events)


def _announce_finished(task_id: str, deps: Deps) -> TaskFinished | None:
    """TaskSucceeded/TaskFailed on the bus and the SNS notification, from the task as it is now."""
    item = deps.tasks.get(task_id)
    if item is None:
        return None
    snapshot = snapshot_from_item(item)
    finished = TaskFinished(
        taskId=task_id, status=snapshot.status, counts=snapshot.counts, error=snapshot.error
    )
    _publish(deps, [(finished.detail_type, finished)])
    if deps.notifier is not None:
        deps.notifier.task_finished(finished)
    deps.tasks.mark_announced(task_id, snapshot.status)
    logger.info("task finished", extra={"task_id": task_id, "status": snapshot.status.value})
    return finished


def _advance(task_id: str, deps: Deps, item: Mapping[str, Any] | None) -> None:
    """After any counter changed: extract completed? -> transform done == total -> load done == total.

    `item` must have been read after this caller's own write, so the last writer always sees every
    chunk; the conditional writes make sure each completion happens (and is announced) once.
    """
    if item is None:
        item = deps.tasks.get(task_id)
    if item is None:
        return
    if (
        item.get("status") == TaskStatus.SUCCEEDED.value
        and item.get("announced") != TaskStatus.SUCCEEDED.value
    ):
        # The completion was written but its announcement died with the caller: at least once.
        _announce_finished(task_id, deps)
        return
    if item.get("status") == TaskStatus.FAILED.value or "extract_completedAt" not in item:
        return
    transform_completed = "transform_completedAt" in item
    if not transform_completed and int(item["transform_done"]) == int(item["transform_total"]):
        if deps.tasks.try_complete_phase(task_id, Phase.TRANSFORM):
            _publish(
                deps,
                [
                    (
                        PHASE_COMPLETED,
                        PhaseCompleted(
                            taskId=task_id, phase=Phase.TRANSFORM, chunks=int(item["transform_total"])
                        ),
                    )
                ],
            )
            transform_completed = True
        else:
            # Someone else completed it (or a failure intervened): decide on load from fresh state.
            item = deps.tasks.get(task_id) or item
            transform_completed = "transform_completedAt" in item
    if (
        transform_completed
        and "load_completedAt" not in item
        and int(item["load_done"]) == int(item["load_total"])
        and deps.tasks.try_complete_phase(task_id, Phase.LOAD)
    ):
        _publish(
            deps,
            [
                (
                    PHASE_COMPLETED,
                    PhaseCompleted(taskId=task_id, phase=Phase.LOAD, chunks=int(item["load_total"])),
                )
            ],
        )
        _announce_finished(task_id, deps)


def _fail_terminally(task_id: str, phase: Phase, message: str, deps: Deps) -> None:
    if deps.tasks.fail(task_id, phase, None, message, terminal=True):
        _announce_finished(task_id, deps)


def extract_task(detail: TaskSubmitted, deps: Deps) -> int:
    """Stream the source into chunks in S3 and announce each chunk; returns the rows read."""
    task_id = detail.taskId
    item = deps.tasks.get(task_id)
    if item is None:
        logger.warning("TaskSubmitted for an unknown task: ignored", extra={"task_id": task_id})
        return 0
    if item["status"] == TaskStatus.SUCCEEDED.value:
        _advance(task_id, deps, item)  # only re-announces, if the announcement was lost
        return int(item.get("count_read", 0))
    if item["status"] == TaskStatus.FAILED.value and item.get("error_terminal"):
        return 0
    if "extract_completedAt" in item:
        # A redelivery after the work was done: only make sure nothing after it was left undone.
        _advance(task_id, deps, deps.tasks.clear_failure(task_id, Phase.EXTRACT, None) or item)
        return int(item.get("count_read", 0))
    _check_fault_switch(Phase.EXTRACT, deps)
    spec = _spec_of(task_id, deps, item)
    assert spec is not None  # the item exists
    store = _need(deps.chunks, "a chunk store")
    deps.tasks.start_phase(task_id, Phase.EXTRACT)

    pending: list[tuple[str, BaseModel]] = []
    oldest_pending = 0.0
    chunks = read = 0

    def flush() -> None:
        _publish(deps, pending)
        pending.clear()
        deps.tasks.extract_progress(task_id, chunks, read)

    source = spec.source
    try:
        with open_source(source.uri, deps.s3) as stream:
            records = iter_records(
                stream,
                source.format,
                name_hint=source.uri,
                delimiter=source.delimiter,
                null_values=source.nullValues,
            )
            if source.limit is not None:
                records = islice(records, source.limit)
            for index, rows in enumerate(iter_chunks(records, spec.chunkRows)):
                key = ChunkStore.chunk_key(task_id, Phase.EXTRACT.value, index)
                store.put_rows(key, rows)
                chunks, read = index + 1, read + len(rows)
                if not pending:
                    oldest_pending = time.monotonic()
                pending.append(
                    (CHUNK_EXTRACTED, ChunkExtracted(taskId=task_id, chunk=index, key=key, rows=len(rows)))
                )
                if len(pending) >= 10 or time.monotonic() - oldest_pending >= EXTRACT_FLUSH_SECONDS:
                    flush()
    except SourceUnreadable as error:
        # The same bytes will not read better on a retry: fail now, no redelivery needed.
        logger.warning("source unreadable", extra={"task_id": task_id, "error": str(error)})
        _fail_terminally(task_id, Phase.EXTRACT, str(error), deps)
        return read
    if pending:
        _publish(deps, pending)
        pending.clear()

    completed = deps.tasks.complete_extract(task_id, chunks, read)
    if completed is not None:
        _publish(
            deps, [(PHASE_COMPLETED, PhaseCompleted(taskId=task_id, phase=Phase.EXTRACT, chunks=chunks))]
        )
        if completed.get("status") == TaskStatus.FAILED.value:
            completed = deps.tasks.clear_failure(task_id, Phase.EXTRACT, None) or completed
    _advance(task_id, deps, completed)
    return read


def _reference(join: JoinSpec, deps: Deps) -> ReferenceTable:
    key_columns = list(join.on.values())
    cache_key = (join.uri, join.format, join.delimiter, tuple(join.nullValues), tuple(key_columns))
    table = deps.cache.references.get(cache_key)
    if table is None:
        with open_source(join.uri, deps.s3) as stream:
            records = iter_records(
                stream, join.format, name_hint=join.uri, delimiter=join.delimiter, null_values=join.nullValues
            )
            try:
                table = ReferenceTable.from_records(records, key_columns)
            except ValueError as error:
                raise SourceUnreadable(join.uri, f"join {join.name}: {error}") from error
        deps.cache.references[cache_key] = table
    return table


def _after_chunk_counted(
    task_id: str, phase: Phase, chunk: int, deps: Deps, item: Mapping[str, Any] | None
) -> None:
    if item is None:
        # Already counted by an earlier delivery, which may have died before the completion check
        # or may be the chunk a DLQ replay is retrying: clear its failure, then check completions.
        item = deps.tasks.clear_failure(task_id, phase, chunk)
    _advance(task_id, deps, item)


def transform_chunk(detail: ChunkExtracted, deps: Deps) -> int:
    """Type, filter and join one chunk; returns the rows that go on to load."""
    started = deps.clock()
    _check_fault_switch(Phase.TRANSFORM, deps)
    task_id = detail.taskId
    spec = _spec_of(task_id, deps)
    if spec is None:
        logger.warning("ChunkExtracted for an unknown task: ignored", extra={"task_id": task_id})
        return 0
    store = _need(deps.chunks, "a chunk store")
    refs = {join.name: _reference(join, deps) for join in spec.joins}
    rows = store.get_rows(detail.key)
    result = transform_rows(rows, spec, refs, first_row=detail.chunk * spec.chunkRows + 1)

    key = ChunkStore.chunk_key(task_id, Phase.TRANSFORM.value, detail.chunk)
    store.put_rows(key, result.rows)
    store.put_rejects(ChunkStore.rejects_key(task_id, detail.chunk), result.rejects)
    _publish(
        deps,
        [
            (
                CHUNK_TRANSFORMED,
                ChunkTransformed(taskId=task_id, chunk=detail.chunk, key=key, rows=len(result.rows)),
            )
        ],
    )
    item = deps.tasks.record_chunk_done(
        task_id,
        Phase.TRANSFORM,
        detail.chunk,
        {"filtered": result.filtered, "rejected": len(result.rejects)},
        started,
    )
    _after_chunk_counted(task_id, Phase.TRANSFORM, detail.chunk, deps, item)
    return len(result.rows)


def _warehouse(deps: Deps) -> Warehouse:
    if deps.cache.warehouse is None:
        deps.cache.warehouse = _need(deps.warehouse_factory, "a warehouse")()
    return deps.cache.warehouse


def load_chunk(detail: ChunkTransformed, deps: Deps) -> int:
    """Write one transformed chunk into the warehouse (exactly once, by its ledger); returns rows loaded."""
    started = deps.clock()
    _check_fault_switch(Phase.LOAD, deps)
    task_id = detail.taskId
    spec = _spec_of(task_id, deps)
    if spec is None:
        logger.warning("ChunkTransformed for an unknown task: ignored", extra={"task_id": task_id})
        return 0
    warehouse = _warehouse(deps)
    columns = output_columns(spec)
    table_id = (spec.target.schema_, spec.target.table)
    if table_id not in deps.cache.ensured_tables:
        warehouse.ensure_table(spec.target, columns)
        deps.cache.ensured_tables.add(table_id)
    rows = _need(deps.chunks, "a chunk store").get_rows(detail.key)
    try:
        outcome = warehouse.load_chunk(task_id, detail.chunk, spec.target, columns, rows)
    except LoadFailed:
        # The table may have been dropped behind this warm container's back: re-ensure on the retry.
        deps.cache.ensured_tables.discard(table_id)
        raise
    loaded = int(outcome.rows)
    item = deps.tasks.record_chunk_done(task_id, Phase.LOAD, detail.chunk, {"loaded": loaded}, started)
    _after_chunk_counted(task_id, Phase.LOAD, detail.chunk, deps, item)
    return loaded


_PHASE_OF_DETAIL: dict[type[BaseModel], Phase] = {
    TaskSubmitted: Phase.EXTRACT,
    ChunkExtracted: Phase.TRANSFORM,
    ChunkTransformed: Phase.LOAD,
}


def record_final_failure(
    detail: TaskSubmitted | ChunkExtracted | ChunkTransformed, error: BaseException | str, deps: Deps
) -> bool:
    """The last delivery of a record failed: the task turns FAILED (phase, chunk, error) and, the
    first time, TaskFailed goes to the bus and SNS. True when this call failed the task."""
    phase = _PHASE_OF_DETAIL[type(detail)]
    chunk = getattr(detail, "chunk", None)
    message = str(error) if isinstance(error, str) else f"{type(error).__name__}: {error}"
    if not deps.tasks.fail(detail.taskId, phase, chunk, message):
        return False
    _announce_finished(detail.taskId, deps)
    return True


# --- progress -------------------------------------------------------------------------------------


def _newest_per_task(images: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    newest: dict[str, dict[str, Any]] = {}
    for image in images:
        item = item_from_stream_image(image)
        task_id = item.get("taskId")
        if not task_id or "status" not in item:
            continue
        current = newest.get(task_id)
        # Later in the batch wins a tie: stream order is write order for one item.
        if current is None or int(item.get("updatedAtMs", 0)) >= int(current.get("updatedAtMs", 0)):
            newest[task_id] = item
    return newest


def _send(connection_id: str, payload: Mapping[str, Any], deps: Deps) -> bool:
    if _need(deps.pusher, "a WebSocket endpoint").push(connection_id, payload):
        return True
    _need(deps.connections, "a connections table").remove(connection_id)
    return False


def push_progress(new_images: list[dict[str, Any]], deps: Deps) -> int:
    """Push the newest snapshot of each task in a stream batch to its subscribers; returns messages sent."""
    connections = _need(deps.connections, "a connections table")
    sent = 0
    for task_id, item in _newest_per_task(new_images).items():
        subscribers = connections.for_task(task_id)
        if not subscribers:
            continue
        payload = snapshot_from_item(item).model_dump(mode="json")
        sent += sum(1 for connection_id in subscribers if _send(connection_id, payload, deps))
    return sent


def connect(connection_id: str, deps: Deps) -> None:
    _need(deps.connections, "a connections table").add(connection_id)


def disconnect(connection_id: str, deps: Deps) -> None:
    _need(deps.connections, "a connections table").remove(connection_id)


def subscribe(connection_id: str, task_id: str, deps: Deps) -> bool:
    """Record the subscription and push the current snapshot at once; False for an unknown task."""
    item = deps.tasks.get(task_id)
    if item is None:
        _send(connection_id, {"error": f"task {task_id} not found"}, deps)
        return False
    _need(deps.connections, "a connections table").subscribe(connection_id, task_id)
    _send(connection_id, snapshot_from_item(item).model_dump(mode="json"), deps)
    return True


_PHASE_OF_STATUS = {
    TaskStatus.ACCEPTED.value: Phase.EXTRACT,
    TaskStatus.EXTRACTING.value: Phase.EXTRACT,
    TaskStatus.TRANSFORMING.value: Phase.TRANSFORM,
    TaskStatus.LOADING.value: Phase.LOAD,
}


def watchdog(deps: Deps, now: datetime | None = None) -> int:
    """Fail tasks whose messages were dead-lettered without telling them, and tasks that made no
    progress for STALL_SECONDS (a lost message, a bug); returns how many it failed."""
    active = {str(item["taskId"]): item for item in deps.tasks.list_active()}  # one scan for both checks
    dead_lettered = _fail_dead_lettered(active, deps)
    failed = len(dead_lettered)
    now_ms = epoch_ms(now or deps.clock())
    for task_id, item in active.items():
        if task_id in dead_lettered:
            continue
        idle_ms = now_ms - int(item.get("updatedAtMs", 0))
        if idle_ms < deps.stall_seconds * 1000:
            continue
        phase = _PHASE_OF_STATUS.get(str(item["status"]), Phase.EXTRACT)
        message = f"stalled in {phase.value}: no progress for {idle_ms // 1000} s"
        if deps.tasks.fail_if_stalled(item, phase, message):
            failed += 1
            logger.warning("task stalled", extra={"task_id": item["taskId"], "phase": phase.value})
            _announce_finished(str(item["taskId"]), deps)
    return failed


def _fail_dead_lettered(active: Mapping[str, Any], deps: Deps) -> set[str]:
    """A last delivery that died before the handler ran (crash, timeout) never failed its task;
    returns the ids of the tasks failed here."""
    failed: set[str] = set()
    if deps.dead_letters is None:
        return failed
    for letter in deps.dead_letters.peek():
        if letter.task_id not in active or letter.task_id in failed:
            continue  # finished, already failed, or not ours
        phase = Phase(letter.phase) if letter.phase else Phase.EXTRACT
        message = f"dead-lettered after {letter.receive_count} deliveries: see `busline dlq show --task {letter.task_id}`"
        if deps.tasks.fail(letter.task_id, phase, letter.chunk, message):
            failed.add(letter.task_id)
            logger.warning("task dead-lettered", extra={"task_id": letter.task_id, "phase": phase.value})
            _announce_finished(letter.task_id, deps)
    return failed
