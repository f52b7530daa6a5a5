"""The ETL steps: extract a task's source into chunks, transform a chunk, load a chunk.

Every step may run more than once for the same input (SQS at-least-once delivery, Lambda retries,
DLQ redrives, the local cloud's chaos mode), so each is re-runnable: outputs go to deterministic S3
keys, follow-up events are published before the chunk is counted (a crash in between re-publishes,
and the conditional count downstream absorbs the duplicate), and what the count means for the task
is lifecycle.py's business.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import timedelta
from itertools import islice
from typing import Any, BinaryIO, TypeVar, cast

import pyarrow as pa
from aws_lambda_powertools import Logger
from pydantic import BaseModel

from . import correlation, usage
from .batch_end import ChunkDone
from .contracts import (
    CHUNK_EXTRACTED,
    CHUNK_TRANSFORMED,
    SOURCE_READING_PAUSED,
    SOURCE_STAGING_PAUSED,
    ChunkExtracted,
    ChunkTransformed,
    Phase,
    PhaseCompleted,
    ReadingCheckpoint,
    Reject,
    SourceRange,
    TaskFinished,
    TaskStatus,
    TaskSubmitted,
)
from .deps import DynamoDbTarget, ExtractDeps, LoadDeps, StepDeps, TaskPlan, TransformDeps, Warehouse
from .errors import BuslineError, ChunkFailed, LoadFailed, SourceOverLimit, SourceUnreadable
from .limits import MAX_CHUNKS_PER_TASK, MAX_REJECTS_KEPT_PER_CHUNK, MAX_ROWS_PER_TASK
from .pipelines import hook_of
from .ranges import ByteRange, Fetch, header_of, plan_ranges, range_table, splittable
from .readers import (
    OpenedAt,
    RecordEnds,
    ResumePoint,
    iter_chunks,
    iter_records,
    open_source,
    open_source_at,
    refuse_stored_size,
    s3_location,
)
from .spec import JoinSpec, SourceSpec, TaskSpec, output_columns
from .staging import Paused, Staged, must_stage, stage_source
from .storage import ChunkStore, raw_table_from_records
from .task_state import (
    ChunkCounted,
    Committed,
    ExtractProgressed,
    ExtractStarted,
    RetryScheduled,
    TaskState,
    iso,
)
from .transform import ReferenceTable, apply_hook, transform_table

logger = Logger(child=True)

# ChunkExtracted events are sent in PutEvents batches, but never held back longer than this, so the
# transform of the first chunks overlaps the extract of the next ones.
EXTRACT_FLUSH_SECONDS = 0.25
EXTRACT_FLUSH_EVENTS = 10  # the PutEvents batch
WARM_TASK_CACHE = 64
# reference tables a warm container keeps (per task and join): a few tasks' worth
WARM_REFERENCES = 16
# A source is read in parallel byte ranges only when it makes at least this many: below that, one
# reader costs fewer calls than a plan, and is done as soon.
MIN_PLANNED_RANGES = 3
# Ranges are sized to hold about chunkRows records, judged from the lines of the source's first bytes;
# never so small that the calls per range outweigh its work.
RANGE_SAMPLE_BYTES = 64 * 1024
MIN_RANGE_BYTES = 256 * 1024
# A CSV header up to this size travels in each range's event, saving every range a GET of it.
MAX_HEADER_IN_EVENT = 4096
# The time a reader that pauses keeps in hand for its last chunk's events and the one that resumes it; three
# times the slowest chunk seen, if more.
MIN_READING_RESERVE_SECONDS = 10.0
# where a row offered again (retryRejects) and rejected again is said to be: it has no row in this source
OFFERED_AGAIN_AT = "offered again from the previous run"

LoadDetail = ChunkTransformed | PhaseCompleted | TaskFinished  # what LoadQueue carries (contracts.LoadRecord)
Detail = TypeVar("Detail", TaskSubmitted, ChunkExtracted, LoadDetail)
StepDepsT = TypeVar("StepDepsT", bound=StepDeps)

PHASE_OF_DETAIL: dict[type[BaseModel], Phase] = {
    TaskSubmitted: Phase.EXTRACT,
    ChunkExtracted: Phase.TRANSFORM,
    ChunkTransformed: Phase.LOAD,
    PhaseCompleted: Phase.LOAD,  # load completed: merge the staged task (commit "task")
    TaskFinished: Phase.LOAD,  # TaskCancelled: throw away what it staged
}


def _check_fault_switch(phase: Phase, deps: StepDeps) -> None:
    if f"{phase.value}:fail" in deps.faults():
        raise ChunkFailed(f"deliberate fault: the fault switch says {phase.value}:fail")


def _plan_of(task_id: str, phase: Phase, chunk: int, deps: StepDeps) -> TaskPlan | None | _Counted:
    """The task's owner and spec, from this warm container's cache or the task; None when there is no
    work to do for it: no such task (or TTL deleted it), or it failed for good (an over-limit source,
    say), so its chunks still in flight are neither written to S3 nor loaded. _COUNTED when an earlier
    delivery of this chunk finished this phase's work: a redelivery (SQS, a DLQ replay) has nothing to
    redo, and so each chunk is announced and loaded once without an idempotency record of its own."""
    plans = deps.cache.tasks
    if task_id in plans:
        dropped, counted = deps.batch.standing(task_id, phase, lambda: deps.tasks.phase_standing(task_id, phase))
        if dropped:
            return None
        if chunk in counted:
            return _COUNTED
        plans.move_to_end(task_id)
        return plans[task_id]
    state = deps.tasks.get(task_id)
    if state is None or state.error_terminal or state.status is TaskStatus.CANCELLED:
        return None
    counted = frozenset(state.phase(phase).chunks)
    deps.batch.standing(task_id, phase, lambda: (False, counted))
    if chunk in counted:
        return _COUNTED
    plan = TaskPlan(
        owner=state.owner, spec=TaskSpec.model_validate_json(state.spec_json), pipeline=state.pipeline
    )
    plans[task_id] = plan
    while len(plans) > WARM_TASK_CACHE:
        plans.popitem(last=False)
    return plan


class _Counted:
    """_plan_of's answer for a chunk an earlier delivery counted."""


_COUNTED = _Counted()


@dataclass(frozen=True)
class ChunkWork:
    """What transform and load both start from: the chunk's task (owner, spec) and its rows."""

    owner: str
    spec: TaskSpec
    table: pa.Table
    started_at: str
    pipeline: str


def _chunk_prologue(detail: ChunkExtracted | ChunkTransformed, deps: StepDeps) -> ChunkWork | None:
    """The fault switch, the task's spec and the chunk's rows; None for a task that does not exist."""
    started_at = iso(deps.clock())
    phase = PHASE_OF_DETAIL[type(detail)]
    _check_fault_switch(phase, deps)
    plan = _plan_of(detail.taskId, phase, detail.chunk, deps)
    if plan is None:
        logger.warning(
            f"{type(detail).__name__} for a task that is gone or failed for good: ignored",
            extra={"task_id": detail.taskId},
        )
        return None
    if isinstance(plan, _Counted):
        # the earlier delivery may have died before the completion check, or this is a DLQ replay of it
        logger.info(f"{type(detail).__name__} counted by an earlier delivery: nothing to redo")
        deps.lifecycle.chunk_redelivered(detail.taskId, phase, detail.chunk)
        return None
    if isinstance(detail, ChunkExtracted) and detail.range is not None:
        table = _read_range(detail.chunk, detail.range, plan.spec.source, deps)
    else:
        table = deps.chunks.get_table(detail.key)
    return ChunkWork(
        owner=plan.owner, spec=plan.spec, table=table, started_at=started_at, pipeline=plan.pipeline
    )


# --- extract --------------------------------------------------------------------------------------


def extract_task(detail: TaskSubmitted, deps: ExtractDeps) -> int:
    """Stream the source into chunks in S3 and announce each chunk; returns the rows read."""
    task_id = detail.taskId
    state = deps.tasks.get(task_id)
    if state is None or state.status is TaskStatus.CANCELLED:
        logger.warning(
            "TaskSubmitted for a task that is gone or cancelled: ignored", extra={"task_id": task_id}
        )
        return 0
    if state.status is TaskStatus.SUCCEEDED:
        deps.lifecycle.advance(task_id, state)  # only re-announces, if the announcement was lost
        return state.counts.read
    if state.status is TaskStatus.FAILED and state.error_terminal:
        return 0
    if state.extract.completed:
        deps.lifecycle.extract_redelivered(task_id)
        return state.counts.read
    _check_fault_switch(Phase.EXTRACT, deps)
    spec = TaskSpec.model_validate_json(state.spec_json)
    starting = detail.staging is None and detail.reading is None
    if starting:
        deps.tasks.apply(task_id, ExtractStarted())
    # (a staging or reading that resumes announced them already, and only needs to know how many)
    offered = _offer_rejects_again(task_id, state, spec, deps, announce=starting)
    source = spec.source
    if detail.reading is not None:
        staged = ChunkStore.staged_source_key(task_id, source.format)
        uri = f"s3://{deps.chunks.bucket}/{staged}" if must_stage(source) else source.uri
        return _extract_by_one_reader(task_id, spec, uri, deps, first_chunk=offered, resume=detail.reading)
    planned = _plan_source_ranges(task_id, spec, deps, first_chunk=offered)
    if planned is not None:
        deps.lifecycle.extract_completed(task_id, offered + planned, read=None)
        return 0
    if not must_stage(source):
        return _extract_by_one_reader(task_id, spec, source.uri, deps, first_chunk=offered)
    staging = stage_source(
        task_id, source, deps.chunks, allow_loopback_http=deps.allow_loopback_http,
        remaining_seconds=deps.remaining_seconds, resume=detail.staging,
    )  # fmt: skip
    if isinstance(staging, Paused):
        deps.publisher.publish(
            SOURCE_STAGING_PAUSED, TaskSubmitted(taskId=task_id, staging=staging.checkpoint)
        )
        return 0
    if isinstance(staging, Staged):
        planned = _announce_ranges(task_id, spec, deps, deps.chunks.bucket, staging, first_chunk=offered)
        if planned is not None:
            deps.lifecycle.extract_completed(task_id, offered + planned, read=None)
            _delete_if_dropped(task_id, [staging.key], deps)
            return 0
        return _extract_by_one_reader(
            task_id, spec, f"s3://{deps.chunks.bucket}/{staging.key}", deps, first_chunk=offered
        )
    small = nullcontext(OpenedAt(cast(BinaryIO, io.BytesIO(staging.data)), 0, None))
    return _extract_by_one_reader(task_id, spec, source.uri, deps, first_chunk=offered, opened=small)


def _offer_rejects_again(
    task_id: str, state: TaskState, spec: TaskSpec, deps: ExtractDeps, *, announce: bool
) -> int:
    """The rows the previous run of the task's schedule rejected (retryRejects), as this task's first chunks:
    their chunk numbers come before the source's, so on a key both hold, the source's row is the later one
    and wins an upsert. Returns how many chunks (0 without a previous run). Only the rejects that run kept
    (MAX_REJECTS_KEPT_PER_CHUNK a chunk) can be offered; each is offered as the record it was kept as."""
    previous_id = state.retry_of
    if previous_id is None:
        return 0
    previous = deps.tasks.get(previous_id)
    if previous is None or previous.owner != state.owner:
        return 0
    records = (_as_record(reject.data) for reject in deps.chunks.all_rejects(previous_id))
    events: list[tuple[str, BaseModel]] = []
    for index, rows in enumerate(iter_chunks(records, spec.chunkRows)):
        key = ChunkStore.chunk_key(task_id, Phase.EXTRACT.value, index)
        if announce:
            deps.chunks.put_table(key, raw_table_from_records(rows))
        events.append(
            (
                CHUNK_EXTRACTED,
                ChunkExtracted(taskId=task_id, chunk=index, key=key, rows=len(rows), offeredAgain=True),
            )
        )
    if announce:
        for first in range(0, len(events), EXTRACT_FLUSH_EVENTS):
            deps.publisher.publish_many(events[first : first + EXTRACT_FLUSH_EVENTS])
        logger.info(
            "rejects offered again", extra={"task_id": task_id, "of": previous_id, "chunks": len(events)}
        )
    return len(events)


def _as_record(data: Mapping[str, Any]) -> dict[str, str | None]:
    """A kept reject as a source record again: text as it was read; a value a later step had typed (a hook's
    or the warehouse's reject) spelled as a source would spell it."""
    return {
        name: None if value is None else value if isinstance(value, str)
        else ("true" if value else "false") if isinstance(value, bool) else str(value)
        for name, value in data.items()
    }  # fmt: skip


def _extract_by_one_reader(
    task_id: str,
    spec: TaskSpec,
    uri: str,
    deps: ExtractDeps,
    *,
    first_chunk: int = 0,
    resume: ReadingCheckpoint | None = None,
    opened: AbstractContextManager[OpenedAt] | None = None,
) -> int:
    """Parse the whole source at `uri` here, chunk after chunk, announcing chunks while the next ones are
    read; the source's chunks are numbered from `first_chunk` (after the rows offered again).

    No source size meets Lambda's 15-minute wall: before the invocation runs out of time the reader stops
    after a chunk and publishes SourceReadingPaused with where that chunk ended (ReadingCheckpoint); the next
    invocation opens the source at that byte (readers.open_source_at) and goes on. A re-run from the same
    checkpoint stores the same chunks under the same keys, since chunks are cut every chunkRows records."""
    publisher = deps.publisher
    written: list[str] = []
    pending: list[tuple[str, BaseModel]] = []
    oldest_pending = 0.0
    chunks, read = (resume.chunks, resume.rows) if resume else (first_chunk, 0)
    source = spec.source
    slowest = 0.0
    opening = opened or open_source_at(
        uri, deps.chunks.s3_client, offset=resume.offset if resume else 0,
        etag=resume.etag if resume else None, allow_loopback_http=deps.allow_loopback_http,
    )  # fmt: skip
    ends = RecordEnds()
    with opening as at:
        records = iter_records(
            at.stream, source.format, name_hint=source.uri, delimiter=source.delimiter,
            null_values=source.nullValues, ends=ends, resume=_resume_point(uri, spec, deps, resume),
        )  # fmt: skip
        if source.limit is not None:
            records = islice(records, source.limit - read)
        chunk_started = time.monotonic()
        for rows in iter_chunks(records, spec.chunkRows):
            chunk = chunks
            _check_task_size(source.uri, spec.chunkRows, chunks=chunk + 1, rows=read + len(rows))
            key = ChunkStore.chunk_key(task_id, Phase.EXTRACT.value, chunk)
            deps.chunks.put_table(key, raw_table_from_records(rows))
            written.append(key)
            first_row = read + 1 if first_chunk else None
            chunks, read = chunk + 1, read + len(rows)
            if not pending:
                oldest_pending = time.monotonic()
            pending.append(
                (
                    CHUNK_EXTRACTED,
                    ChunkExtracted(taskId=task_id, chunk=chunk, key=key, rows=len(rows), firstRow=first_row),
                )
            )
            slowest = max(slowest, time.monotonic() - chunk_started)
            # (a source given `opened` is small and in memory: nothing to open again, nor time to run out)
            # (a short chunk is the last: the source or its limit ended, so there is nothing to go on with)
            more = len(rows) == spec.chunkRows and (source.limit is None or read < source.limit)
            if more and opened is None and deps.remaining_seconds() < max(MIN_READING_RESERVE_SECONDS, 3 * slowest):
                end, lines = ends.after_last()
                checkpoint = ReadingCheckpoint(
                    offset=at.start + end, lines=lines + (resume.lines if resume else 0),
                    chunks=chunks, rows=read, etag=at.etag,
                )  # fmt: skip
                publisher.publish_many(pending)
                deps.tasks.apply(task_id, ExtractProgressed(chunks, read))
                publisher.publish(SOURCE_READING_PAUSED, TaskSubmitted(taskId=task_id, reading=checkpoint))
                logger.info("reading paused", extra={"task_id": task_id, "offset": checkpoint.offset})
                return read
            if (
                len(pending) >= EXTRACT_FLUSH_EVENTS
                or time.monotonic() - oldest_pending >= EXTRACT_FLUSH_SECONDS
            ):
                publisher.publish_many(pending)
                pending.clear()
                if deps.tasks.apply(task_id, ExtractProgressed(chunks, read)) is None and _delete_if_dropped(
                    task_id, written, deps
                ):
                    return read  # cancelled while it was read: stop here
            chunk_started = time.monotonic()
    publisher.publish_many(pending)
    deps.lifecycle.extract_completed(task_id, max(chunks, first_chunk), read)
    _delete_if_dropped(task_id, written, deps)
    return read


def _resume_point(
    uri: str, spec: TaskSpec, deps: ExtractDeps, resume: ReadingCheckpoint | None
) -> ResumePoint | None:
    """What a reader going on from `resume` must know: a CSV's columns, read again from its header line."""
    if resume is None:
        return None
    source = spec.source
    header: tuple[str, ...] | None = None
    if source.format == "csv":
        with open_source_at(
            uri,
            deps.chunks.s3_client,
            offset=0,
            etag=resume.etag,
            allow_loopback_http=deps.allow_loopback_http,
        ) as at:
            first = next(
                iter_records(
                    at.stream, "csv", name_hint=source.uri, delimiter=source.delimiter, null_values=()
                ),
                None,
            )
        if first is None:
            raise SourceUnreadable(source.uri, "it changed while it was read: its header is gone")
        header = tuple(first)
    return ResumePoint(header=header, lines=resume.lines)


def _delete_if_dropped(task_id: str, keys: list[str], deps: StepDeps) -> bool:
    """The task was cancelled (or failed for good) while this step worked: delete what it wrote for it,
    which the cancel's clean-up (etl_steps.discard_cancelled) missed if it ran first. True if it did."""
    if not keys or not deps.tasks.work_dropped(task_id):
        return False
    deps.chunks.delete_keys(keys)
    return True


def _plan_source_ranges(task_id: str, spec: TaskSpec, deps: StepDeps, *, first_chunk: int = 0) -> int | None:
    """Announce one ChunkExtracted per byte range of a plain object in S3 and return how many; None for a
    source that is staged first (compressed, or on an http(s) server: staging.py), one that one reader must
    read (a JSON array, CSV with multiline fields, a `limit`, a row count no range can apply: the reader that
    pauses, _extract_by_one_reader), or a small one.
    The planner reads no rows: the transform of each range reads its records (ranges.py), in parallel."""
    source = spec.source
    location = s3_location(source.uri)
    if (
        location is None
        or source.limit is not None
        or not splittable(source.format, source.uri, source.multilineFields)
    ):
        return None
    bucket, key = location
    try:
        head = deps.chunks.s3_client.head_object(Bucket=bucket, Key=key)
    except Exception:  # the one reader then fails with the full story (missing, denied...)
        return None
    size, etag = int(head["ContentLength"]), head.get("ETag")
    refuse_stored_size(source.uri, size, "the object")
    return _announce_ranges(
        task_id, spec, deps, bucket, Staged(key, size, etag), staged=False, first_chunk=first_chunk
    )


def _announce_ranges(
    task_id: str,
    spec: TaskSpec,
    deps: StepDeps,
    bucket: str,
    target: Staged,
    *,
    staged: bool = True,
    first_chunk: int = 0,
) -> int | None:
    """The ranges of one object (the source itself, or its staged copy when `staged`), announced as chunks
    numbered from `first_chunk`; None when it makes fewer than MIN_PLANNED_RANGES."""
    source = spec.source
    size, etag = target.size, target.etag
    fetch = _ranged_fetch(deps, bucket, target.key, etag, source.uri)
    sample = fetch(0, min(size, RANGE_SAMPLE_BYTES)) if size else b""
    bytes_per_record = len(sample) / max(1, sample.count(b"\n"))
    ranges = plan_ranges(size, max(MIN_RANGE_BYTES, int(bytes_per_record * spec.chunkRows)))
    if len(ranges) < MIN_PLANNED_RANGES:
        return None
    _check_task_size(source.uri, spec.chunkRows, chunks=first_chunk + len(ranges), rows=0)
    header = None
    if source.format == "csv":
        line = header_of(fetch, size, name_hint=source.uri)
        header = (
            line.decode("utf-8", "strict") if len(line) <= MAX_HEADER_IN_EVENT and line.isascii() else None
        )
    events: list[tuple[str, BaseModel]] = [
        (
            CHUNK_EXTRACTED,
            ChunkExtracted(
                taskId=task_id,
                chunk=first_chunk + byte_range.index,
                key="",
                rows=0,
                range=SourceRange(
                    start=byte_range.start,
                    end=byte_range.end,
                    size=size,
                    etag=etag,
                    header=header,
                    staged=target.key if staged else None,
                ),
            ),
        )  # fmt: skip
        for byte_range in ranges
    ]
    for first in range(0, len(events), EXTRACT_FLUSH_EVENTS):
        deps.publisher.publish_many(events[first : first + EXTRACT_FLUSH_EVENTS])
    logger.info(
        "source planned in byte ranges", extra={"task_id": task_id, "ranges": len(ranges), "bytes": size}
    )
    return len(ranges)


def _ranged_fetch(deps: StepDeps, bucket: str, key: str, etag: str | None, uri: str) -> Fetch:
    """Ranged GETs of one version of an object: if it is replaced meanwhile, the read fails for good
    instead of mixing two versions' bytes."""
    s3 = deps.chunks.s3_client
    condition = {"IfMatch": etag} if etag else {}

    def fetch(start: int, end: int) -> bytes:
        try:
            response = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{end - 1}", **condition)
        except Exception as error:
            code = getattr(error, "response", {}).get("Error", {}).get("Code", "")
            if code in ("PreconditionFailed", "412", "NoSuchKey", "404"):
                raise SourceUnreadable(
                    uri, "the object changed or was deleted while it was read in ranges"
                ) from error
            raise
        body: bytes = response["Body"].read()
        return body

    return fetch


def _read_range(chunk: int, planned: SourceRange, source: SourceSpec, deps: StepDeps) -> pa.Table:
    location = (deps.chunks.bucket, planned.staged) if planned.staged else s3_location(source.uri)
    if location is None:
        raise SourceUnreadable(source.uri, "a byte range of a source that is not in S3")
    fetch = _ranged_fetch(deps, *location, planned.etag, source.uri)
    return range_table(
        fetch, ByteRange(planned.start, planned.end, chunk), planned.size, source.format,
        header=None if planned.header is None else planned.header.encode("utf-8"),
        name_hint=source.uri, delimiter=source.delimiter, null_values=source.nullValues,
    )  # fmt: skip


def _located_in_range(rejects: list[Reject], chunk: int, planned: SourceRange) -> list[Reject]:
    """Rejects of a range carry no source row number (the rows before the range are never counted), so
    they say where they are instead: the range's bytes and the record's position in it."""
    return [
        Reject(
            row=None,
            at=f"record {reject.row:,} of bytes {planned.start:,} to {planned.end - 1:,} (range {chunk})",
            reason=reject.reason,
            data=reject.data,
        )
        for reject in rejects
    ]


def _check_task_size(uri: str, chunk_rows: int, *, chunks: int, rows: int) -> None:
    """Refuse the chunk that takes a task past its size limits, before it is stored or announced."""
    if chunks > MAX_CHUNKS_PER_TASK:
        raise SourceOverLimit(
            uri,
            "MAX_CHUNKS_PER_TASK",
            f"more than {MAX_CHUNKS_PER_TASK:,} chunks of {chunk_rows:,} rows: raise chunkRows or split the source",
        )
    if rows > MAX_ROWS_PER_TASK:
        raise SourceOverLimit(
            uri, "MAX_ROWS_PER_TASK", f"more than {MAX_ROWS_PER_TASK:,} rows: split the source"
        )


# --- transform ------------------------------------------------------------------------------------


def _reference(join: JoinSpec, deps: TransformDeps, task_id: str) -> ReferenceTable:
    """The join's reference table, read once per task by a warm container: a task joins the file as it was
    when the task first read it, and the next task reads it again (it may have been fixed meanwhile)."""
    key_columns = list(join.on.values())
    cache_key = (task_id, join.uri, join.format, join.delimiter, tuple(join.nullValues), tuple(key_columns))
    table = deps.cache.references.get(cache_key)
    if table is None:
        with open_source(
            join.uri, deps.chunks.s3_client, allow_loopback_http=deps.allow_loopback_http
        ) as stream:
            records = iter_records(
                stream, join.format, name_hint=join.uri, delimiter=join.delimiter, null_values=join.nullValues
            )
            try:
                table = ReferenceTable.from_records(records, key_columns)
            except ValueError as error:
                raise SourceUnreadable(join.uri, f"join {join.name}: {error}") from error
        deps.cache.references[cache_key] = table
        while len(deps.cache.references) > WARM_REFERENCES:
            del deps.cache.references[next(iter(deps.cache.references))]  # the oldest
    return table


def transform_chunk(detail: ChunkExtracted, deps: TransformDeps) -> int:
    """Type, filter and join one chunk; returns the rows that go on to load."""
    work = _chunk_prologue(detail, deps)
    if work is None:
        return 0
    task_id, spec = detail.taskId, work.spec
    refs = {join.name: _reference(join, deps, task_id) for join in spec.joins}
    planned = detail.range
    first_row = 1 if planned is not None else detail.firstRow or detail.chunk * spec.chunkRows + 1
    result = transform_table(work.table, spec, refs, first_row=first_row)
    if planned is not None:
        result.rejects = _located_in_range(result.rejects, detail.chunk, planned)
    if detail.offeredAgain:
        result.rejects = [
            reject.model_copy(update={"row": None, "at": OFFERED_AGAIN_AT}) for reject in result.rejects
        ]
    hook = hook_of(work.pipeline)
    if hook is not None:
        result = apply_hook(result, hook)
    rejects = result.rejects

    key = ChunkStore.chunk_key(task_id, Phase.TRANSFORM.value, detail.chunk)
    deps.chunks.put_table(key, result.table)
    # Every reject is counted; only the first ones are kept, so a source of garbage cannot fill the bucket.
    kept = rejects[:MAX_REJECTS_KEPT_PER_CHUNK]
    deps.chunks.put_rejects(ChunkStore.rejects_key(task_id, detail.chunk), kept)
    transformed = ChunkTransformed(
        taskId=task_id,
        chunk=detail.chunk,
        key=key,
        rows=result.table.num_rows,
        offeredAgain=detail.offeredAgain,
    )
    counts = {"filtered": result.filtered, "rejected": len(result.rejects)}
    if detail.offeredAgain:
        # not the source's rows: counted apart (a row filtered now is offered and neither of the others)
        counts = {"offered": work.table.num_rows, "rejected_again": len(result.rejects)}
    if planned is not None:
        counts["read"] = work.table.num_rows  # the planner counted no rows: each range counts its own
    _chunk_done(
        ChunkDone(
            task_id,
            ChunkCounted(Phase.TRANSFORM, detail.chunk, counts, work.started_at),
            correlation.current(),
            announcement=(CHUNK_TRANSFORMED, transformed),
            output_key=key,
        ),
        deps,
    )
    return int(result.table.num_rows)


# --- load -----------------------------------------------------------------------------------------


def _warehouse(deps: LoadDeps) -> Warehouse:
    if deps.cache.warehouse is None:
        deps.cache.warehouse = deps.warehouse_factory()
    return deps.cache.warehouse


def load_step(detail: LoadDetail, deps: LoadDeps) -> int:
    """What LoadQueue carries: a chunk to load, a task whose chunks are all staged, a cancelled task."""
    if isinstance(detail, ChunkTransformed):
        return load_chunk(detail, deps)
    if isinstance(detail, PhaseCompleted):
        return commit_task(detail, deps)
    return discard_cancelled(detail, deps)


def _ensured_warehouse(owner: str, spec: TaskSpec, deps: LoadDeps) -> Warehouse:
    warehouse = _warehouse(deps)
    table_id = (owner, spec.target.table)
    if table_id not in deps.cache.ensured_tables:
        warehouse.ensure_table(owner, spec.target, output_columns(spec))
        deps.cache.ensured_tables.add(table_id)
    return warehouse


def _dynamo_target(deps: LoadDeps) -> DynamoDbTarget:
    if deps.cache.dynamo_target is None:
        deps.cache.dynamo_target = deps.dynamo_target_factory()
    return deps.cache.dynamo_target


def load_chunk(detail: ChunkTransformed, deps: LoadDeps) -> int:
    """Write one transformed chunk into the target, or stage it for the task's commit (exactly once, by
    its ledger); returns rows loaded (or staged)."""
    work = _chunk_prologue(detail, deps)
    if work is None:
        return 0
    spec, owner = work.spec, work.owner
    if spec.target.kind == "dynamodb":
        outcome = _dynamo_target(deps).load_chunk(
            detail.taskId, detail.chunk, owner, spec.target, output_columns(spec), work.table
        )
    else:
        warehouse = _ensured_warehouse(owner, spec, deps)
        try:
            outcome = warehouse.load_chunk(
                detail.taskId, detail.chunk, owner, spec.target, output_columns(spec), work.table
            )
        except LoadFailed:
            # The table may have been dropped (or unmapped) behind this warm container's back: re-ensure
            # on the retry.
            deps.cache.ensured_tables.discard((owner, spec.target.table))
            raise
    if outcome.rejects:
        deps.chunks.put_rejects(ChunkStore.load_rejects_key(detail.taskId, detail.chunk), outcome.rejects)
    # A staged chunk is not in the target yet: the commit counts what the merge loads.
    counts = (
        {}
        if spec.target.commit == "task"
        else {"recovered": outcome.rows, "rejected_again": outcome.rejected}
        if detail.offeredAgain
        else {"loaded": outcome.rows, "deleted": outcome.deleted, "rejected": outcome.rejected}
    )
    _chunk_done(
        ChunkDone(
            detail.taskId, ChunkCounted(Phase.LOAD, detail.chunk, counts, work.started_at), correlation.current()
        ),
        deps,
    )
    return int(outcome.rows)


def commit_task(detail: PhaseCompleted, deps: LoadDeps) -> int:
    """Merge a COMMITTING task's staged rows into its target, at once (warehouse.commit_task)."""
    if detail.phase is not Phase.LOAD:
        return 0
    _check_fault_switch(Phase.LOAD, deps)
    task_id = detail.taskId
    state = deps.lifecycle.commit_due(task_id)
    if state is None:
        # committed already (a redelivery), or a task that commits chunk by chunk: only make sure the
        # end was announced
        deps.lifecycle.advance(task_id, None)
        return 0
    spec = TaskSpec.model_validate_json(state.spec_json)
    warehouse = _ensured_warehouse(state.owner, spec, deps)
    outcome = warehouse.commit_task(task_id, state.owner, spec.target, output_columns(spec))
    if outcome.rejects:
        deps.chunks.put_rejects(ChunkStore.commit_rejects_key(task_id), outcome.rejects)
    deps.lifecycle.committed(
        task_id, Committed(loaded=outcome.rows, deleted=outcome.deleted, rejected=outcome.rejected)
    )
    logger.info(
        "task committed",
        extra={
            "task_id": task_id,
            "loaded": outcome.rows,
            "deleted": outcome.deleted,
            "rejected": outcome.rejected,
        },
    )
    return int(outcome.rows)


def discard_cancelled(detail: TaskFinished, deps: LoadDeps) -> int:
    """A cancelled task: drop its staging table (nothing may be staged for it again) and its chunks, then
    tell its owner. The target is as it was: a task committing "task" never touched it."""
    task_id = detail.taskId
    state = deps.tasks.get(task_id)
    if state is None or state.status is not TaskStatus.CANCELLED:
        return 0
    spec = TaskSpec.model_validate_json(state.spec_json)
    if spec.target.commit == "task":
        _warehouse(deps).discard_task(task_id, state.owner, spec.target)
    deps.chunks.delete_chunks(task_id)
    deps.lifecycle.cancelled_cleaned_up(task_id)
    return 0


# --- the end of a batch (batch_end.py) -----------------------------------------------------------


def _chunk_done(done: ChunkDone, deps: StepDeps) -> None:
    if deps.batch.is_open:
        deps.batch.add(done)
    else:
        _finish_chunks(done.task_id, [done], deps)


def finish_batch(deps: StepDeps) -> list[tuple[Any, Exception]]:
    """Announce and count what the batch's chunks left, once per task; the records whose finishing
    failed, with its error (the caller reports them failed, and SQS delivers them again)."""
    failed: list[tuple[Any, Exception]] = []
    for task_id, finished in deps.batch.close():
        done = [chunk for _, chunk in finished]
        correlation.bind(done[0].correlation_id)
        try:
            # its calls are the task's (usage.py); the invocation was shared by its records already
            with usage.METER.working_on(task_id, invocation_share=0.0):
                _finish_chunks(task_id, done, deps)
        except Exception as error:
            logger.exception("finishing the batch's chunks failed", extra={"task_id": task_id})
            failed.extend((record, error) for record, _ in finished)
    return failed


def _finish_chunks(task_id: str, done: list[ChunkDone], deps: StepDeps) -> None:
    # the same chunk twice in one batch (EventBridge delivers at least once): the same work, counted once
    unique = list({(chunk.count.phase, chunk.count.chunk): chunk for chunk in done}.values())
    announcements = [chunk.announcement for chunk in unique if chunk.announcement is not None]
    if announcements:
        deps.publisher.publish_many(announcements)
    counted = None
    for phase in dict.fromkeys(chunk.count.phase for chunk in unique):
        counts = [chunk.count for chunk in unique if chunk.count.phase is phase]
        counted = deps.lifecycle.chunks_counted(counts, task_id) or counted
    if counted is not None and counted.status is TaskStatus.CANCELLED:
        # cancelled while they ran: load will not read them
        keys = [chunk.output_key for chunk in unique if chunk.output_key is not None]
        if keys:
            deps.chunks.delete_keys(keys)


# --- failures -------------------------------------------------------------------------------------


def record_retry(
    detail: TaskSubmitted | ChunkExtracted | LoadDetail,
    error: BaseException,
    attempt: int,
    delay: int,
    deps: StepDeps,
) -> None:
    """Show on the task that this work failed and when it is tried again (retries.py decides when)."""
    chunk = detail.chunk if isinstance(detail, ChunkExtracted | ChunkTransformed) else None
    retry_at = iso(deps.clock() + timedelta(seconds=delay))
    event = RetryScheduled(PHASE_OF_DETAIL[type(detail)], chunk, attempt, _shown_error(error), retry_at)
    deps.lifecycle.retry_scheduled(detail.taskId, event)


def record_final_failure(
    detail: TaskSubmitted | ChunkExtracted | LoadDetail, error: BaseException | str, deps: StepDeps
) -> bool:
    """The last delivery of a record failed: the task turns FAILED (phase, chunk, error) until a DLQ
    replay of that record succeeds. True when this call failed the task."""
    chunk = detail.chunk if isinstance(detail, ChunkExtracted | ChunkTransformed) else None
    message = error if isinstance(error, str) else _shown_error(error)
    return deps.lifecycle.final_delivery_failed(detail.taskId, PHASE_OF_DETAIL[type(detail)], chunk, message)


def _shown_error(error: BaseException) -> str:
    """What the task's owner reads about `error` (task_state.task_error scrubs it further); the whole
    error is on the log line of the failure, under the task id."""
    if isinstance(error, BuslineError):
        return f"{type(error).__name__}: {error.message}"
    return f"internal error ({type(error).__name__}); the logs have the details under this task's id"


def run_step(work: Callable[[Detail, StepDepsT], int], detail: Detail, deps: StepDepsT) -> int:
    """Run one step on one record. A failure no retry can mend (`retryable` False: an unreadable source
    or join file) fails the task now, for good, instead of letting SQS redeliver the same bytes until
    the DLQ; anything else is raised for SQS to redeliver."""
    try:
        return work(detail, deps)
    except BuslineError as error:
        if error.retryable:
            raise
        logger.warning("unretryable failure", extra={"task_id": detail.taskId, "error": error.message})
        deps.lifecycle.abandon(detail.taskId, PHASE_OF_DETAIL[type(detail)], error.message)
        return 0
