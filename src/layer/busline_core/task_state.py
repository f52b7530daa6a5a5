"""The task's state machine: what a task is (`TaskState`), what can happen to it (the events), and,
in one table, which event is allowed from which state and what it changes.

Pure: no I/O. `tasks_repo` turns each event into one conditional DynamoDB UpdateItem whose condition
is the guard below and whose update is the effect below (tests/unit/control/test_task_state.py walks
every (state, event) pair through both and checks they agree). The steps never look at the item; they
send an event and read the resulting `TaskState`.

Why the guards are what they are (exactly once, with at-least-once delivery everywhere):
- a chunk is counted only if it is not in its phase's chunk set, so a redelivered chunk changes nothing;
- a phase completes only once, only after the phase before it, and only when done == total, so of two
  racing last chunks exactly one completes it and publishes the follow-up events;
- a FAILED task keeps counting chunks (a DLQ replay may still recover it) but completes no phase;
- a failure is remembered per chunk (`failing`); when the last failing chunk succeeds the task goes
  back to the status of how far it got (`Recovered`); a terminal failure never recovers;
- SUCCEEDED is final: no failure can overwrite it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from .contracts import (
    PHASE_ORDER,
    Counts,
    Phase,
    PhaseProgress,
    Phases,
    PhaseTiming,
    RetriedRows,
    RetryNotice,
    ScheduledBy,
    TaskError,
    TaskSnapshot,
    TaskStatus,
    TaskTarget,
)
from .limits import MAX_RETRY_NOTICES
from .redaction import public_message
from .usage import task_cost

COUNTERS: Final = ("read", "filtered", "rejected", "loaded", "deleted")
# what became of the rows a scheduled run offers again (retryRejects): kept apart from the source's COUNTERS
RETRY_COUNTERS: Final = ("offered", "recovered", "rejected_again")
CANCELLABLE_STATUSES: Final = (
    TaskStatus.ACCEPTED,
    TaskStatus.EXTRACTING,
    TaskStatus.TRANSFORMING,
    TaskStatus.LOADING,
)
# A COMMITTING task is past cancelling: its merge may be committing in the warehouse right now, and a
# task must never say CANCELLED over rows that became visible.
ACTIVE_STATUSES: Final = (*CANCELLABLE_STATUSES, TaskStatus.COMMITTING)
FINAL_STATUSES: Final = (TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED)
# Statuses no failure can overwrite: a success, or a cancel the owner asked for.
SETTLED_STATUSES: Final = (TaskStatus.SUCCEEDED, TaskStatus.CANCELLED)
CommitMode = Literal["task", "chunk"]
_M = TypeVar("_M", bound=BaseModel)
ERROR_MESSAGE_LIMIT: Final = 2000  # characters of an error kept on the task (the item is at most 400 KB)
RETRY_ERROR_LIMIT: Final = 300  # characters of a retried delivery's error: one per chunk may be shown at once


def _with(model: _M, **changes: Any) -> _M:
    return model.model_copy(update=changes)


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def task_error(phase: Phase, chunk: int | None, message: str) -> TaskError:
    """The error a task keeps and shows its owner: no credentials, hosts or stacks (redaction.py), and
    short enough for the item."""
    return TaskError(phase=phase, chunk=chunk, message=public_message(message)[:ERROR_MESSAGE_LIMIT])


def failure_member(phase: Phase, chunk: int | None) -> str:
    """How a failing chunk (or a whole phase, for extract) is named in `TaskState.failing`."""
    return f"{phase.value}:{chunk}" if chunk is not None else phase.value


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class PhaseState(_Frozen):
    done: int = 0
    total: int | None = None  # known once extract completed
    chunks: frozenset[int] = frozenset()  # transform and load: the chunks counted so far
    started_at: str | None = None
    completed_at: str | None = None

    @property
    def completed(self) -> bool:
        return self.completed_at is not None


class TaskState(_Frozen):
    task_id: str
    owner: str
    pipeline: str
    spec_json: str
    status: TaskStatus
    created_at: str
    updated_at: str
    updated_at_ms: int
    extract: PhaseState = PhaseState()
    transform: PhaseState = PhaseState()
    load: PhaseState = PhaseState()
    counts: Counts = Counts()
    error: TaskError | None = None  # the first error; kept while the task is FAILED
    failing: frozenset[str] = frozenset()  # failure_member()s whose last delivery failed
    error_terminal: bool = False  # no chunk can recover this failure
    announced: TaskStatus | None = None  # the final status already told to the bus and SNS
    # Epoch seconds after which DynamoDB's TTL deletes the finished task (set when its end is announced,
    # cleared if a DLQ replay brings a FAILED task back to life).
    expires_at: int | None = None
    # "task": chunks are staged and the whole task is merged into the target at the end (COMMITTING);
    # "chunk": each chunk is visible in the target as it lands. Tasks recorded before commit modes were
    # chunk-committed, hence the default.
    commit: CommitMode = "chunk"
    committed_at: str | None = None
    retrying: tuple[RetryNotice, ...] = ()  # work whose delivery failed and that is tried again soon
    correlation_id: str | None = None  # of the request that submitted the task (correlation.py)
    usage: Mapping[str, float] = {}  # what it used of AWS so far (usage.py's counts)
    scheduled_by: ScheduledBy | None = None  # the schedule that started it, if one did
    retry_of: str | None = None  # the previous run whose rejects it offers again (retryRejects)
    retry_counts: Mapping[str, int] = {}  # RETRY_COUNTERS' totals so far

    @classmethod
    def submitted(
        cls,
        task_id: str,
        owner: str,
        pipeline: str,
        spec_json: str,
        now: datetime,
        commit: CommitMode = "chunk",
        correlation_id: str | None = None,
        scheduled_by: ScheduledBy | None = None,
        retry_of: str | None = None,
    ) -> TaskState:
        return cls(
            task_id=task_id,
            owner=owner,
            pipeline=pipeline,
            spec_json=spec_json,
            commit=commit,
            correlation_id=correlation_id,
            scheduled_by=scheduled_by,
            retry_of=retry_of,
            status=TaskStatus.ACCEPTED,
            created_at=iso(now),
            updated_at=iso(now),
            updated_at_ms=epoch_ms(now),
        )

    def phase(self, phase: Phase) -> PhaseState:
        return {Phase.EXTRACT: self.extract, Phase.TRANSFORM: self.transform, Phase.LOAD: self.load}[phase]

    def with_phase(self, phase: Phase, **changes: object) -> TaskState:
        return self.model_copy(update={phase.value: self.phase(phase).model_copy(update=changes)})

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    def progress_status(self) -> TaskStatus:
        """The status of how far the task got, ignoring failures (what a recovered task shows)."""
        for phase in PHASE_ORDER:
            if not self.phase(phase).completed:
                return phase_status(phase)
        return TaskStatus.COMMITTING if self.commit_pending else TaskStatus.SUCCEEDED

    @property
    def commit_pending(self) -> bool:
        """The task's rows are staged, or will be, and not yet merged into the target."""
        return self.commit == "task" and self.committed_at is None

    def completable_phase(self) -> Phase | None:
        """The phase whose fan-in is complete and that a `PhaseCompleted` event may now close."""
        for phase in (Phase.TRANSFORM, Phase.LOAD):
            if _phase_may_complete(self, phase):
                return phase
        return None

    @property
    def unannounced_success(self) -> bool:
        """SUCCEEDED was written but its announcement died with the writer: announce it again."""
        return self.status is TaskStatus.SUCCEEDED and self.announced is not TaskStatus.SUCCEEDED

    def snapshot(self) -> TaskSnapshot:
        error = self.error if self.status is TaskStatus.FAILED else None
        return TaskSnapshot(
            taskId=self.task_id,
            owner=self.owner,
            pipeline=self.pipeline,
            status=self.status,
            createdAt=self.created_at,
            updatedAt=self.updated_at,
            updatedAtMs=self.updated_at_ms,
            phases=Phases(**{phase.value: self._progress(phase, error) for phase in PHASE_ORDER}),
            counts=self.counts,
            timings={
                phase.value: timing for phase in PHASE_ORDER if (timing := self._timing(phase)) is not None
            },
            error=error,
            commit=self.commit,
            committedAt=self.committed_at,
            correlationId=self.correlation_id,
            target=self._target(),
            retrying=[] if self.is_final else [notice for notice in self.retrying if not self._done(notice)],
            cost=task_cost(self.usage),
            scheduledBy=self.scheduled_by,
            retried=self._retried(),
        )

    def _retried(self) -> RetriedRows | None:
        if self.retry_of is None:
            return None
        count = self.retry_counts
        return RetriedRows(
            of=self.retry_of,
            offered=count.get("offered", 0),
            recovered=count.get("recovered", 0),
            rejectedAgain=count.get("rejected_again", 0),
        )

    def _target(self) -> TaskTarget | None:
        try:
            target = json.loads(self.spec_json)["target"]
            return TaskTarget(
                kind=target.get("kind", "postgres"), table=target["table"], mode=target["mode"], commit=self.commit
            )
        except (ValueError, KeyError, TypeError, ValidationError):
            return None

    def _done(self, notice: RetryNotice) -> bool:
        """A notice whose work has succeeded since (its RetryCleared may not be written yet)."""
        state = self.phase(notice.phase)
        return state.completed if notice.chunk is None else notice.chunk in state.chunks

    def _progress(self, phase: Phase, error: TaskError | None) -> PhaseProgress:
        state = self.phase(phase)
        if state.completed:
            shown = "completed"
        elif error is not None and error.phase is phase:
            shown = "failed"
        elif state.started_at is not None or state.done > 0:
            shown = "running"
        else:
            shown = "pending"
        return PhaseProgress(done=state.done, total=state.total, status=shown)  # type: ignore[arg-type]

    def _timing(self, phase: Phase) -> PhaseTiming | None:
        state = self.phase(phase)
        if state.started_at is None and state.completed_at is None:
            return None
        seconds = None
        if state.started_at and state.completed_at:
            elapsed = datetime.fromisoformat(state.completed_at) - datetime.fromisoformat(state.started_at)
            seconds = round(max(elapsed.total_seconds(), 0.0), 3)
        return PhaseTiming(startedAt=state.started_at, completedAt=state.completed_at, seconds=seconds)


def phase_status(phase: Phase) -> TaskStatus:
    return {
        Phase.EXTRACT: TaskStatus.EXTRACTING,
        Phase.TRANSFORM: TaskStatus.TRANSFORMING,
        Phase.LOAD: TaskStatus.LOADING,
    }[phase]


def _previous(phase: Phase) -> Phase:
    return PHASE_ORDER[PHASE_ORDER.index(phase) - 1]


def _phase_may_complete(state: TaskState, phase: Phase) -> bool:
    current = state.phase(phase)
    return (
        state.status not in (TaskStatus.FAILED, TaskStatus.CANCELLED)
        and state.phase(_previous(phase)).completed
        and not current.completed
        and current.total is not None
        and current.done == current.total
    )


# --- events: what can happen to a task ------------------------------------------------------------


@dataclass(frozen=True)
class ExtractStarted:
    """The extract step begins reading the source."""


@dataclass(frozen=True)
class ExtractProgressed:
    """`chunks` chunks (and `read` rows) are in S3 so far; only for the progress view."""

    chunks: int
    read: int


@dataclass(frozen=True)
class ExtractCompleted:
    """The source is read, or planned in byte ranges: the chunk count becomes every phase's total (the
    fan-in target). `read` is None for a planned source: each range's rows are counted as it is read."""

    chunks: int
    read: int | None


@dataclass(frozen=True)
class ExtractCompletedWhileFailed:
    """As ExtractCompleted, for a task a failing chunk holds FAILED: the totals are facts all the same."""

    chunks: int
    read: int | None


@dataclass(frozen=True)
class ChunkCounted:
    """A transform or load chunk is done: count it (once) and add its row counts. The chunks of one task
    that an SQS batch finished are counted in one write: `batched` names the others, and `counts` and
    `started_at` are the sum and the earliest of them all (combined)."""

    phase: Phase
    chunk: int
    counts: Mapping[str, int] = field(default_factory=dict)
    started_at: str | None = None  # when this chunk's work began: the phase's start, if it is the first
    batched: frozenset[int] = frozenset()

    @property
    def chunks(self) -> frozenset[int]:
        return self.batched | {self.chunk}

    @classmethod
    def combined(cls, events: Sequence[ChunkCounted]) -> ChunkCounted:
        """One count for `events` (one phase; each chunk once): all or none of them is counted."""
        first, *others = events
        if any(event.phase is not first.phase for event in others):
            raise ValueError("a combined count is of one phase")
        chunks = [event.chunk for event in events]
        if len(set(chunks)) != len(chunks):
            raise ValueError(f"a combined count names each chunk once, not {sorted(chunks)}")
        counts: Counter[str] = Counter()
        for event in events:
            counts.update(event.counts)
        starts = [event.started_at for event in events if event.started_at is not None]
        return cls(
            first.phase, first.chunk, dict(counts), min(starts) if starts else None, frozenset(chunks[1:])
        )


@dataclass(frozen=True)
class PhaseCompleted:
    """Every chunk of transform (then load) is counted. Load's completion makes the task SUCCEEDED, or,
    when its rows are only staged (`commit_pending`, commit "task"), COMMITTING."""

    phase: Phase
    commit_pending: bool = False


@dataclass(frozen=True)
class Committed:
    """The staged rows are merged into the target (one transaction): the task SUCCEEDED. The counts are
    the merge's: rows loaded and deleted, and the rows the merge refused (an insert's duplicate keys)."""

    loaded: int
    deleted: int = 0
    rejected: int = 0


@dataclass(frozen=True)
class Cancelled:
    """The owner cancelled the task: it ends now; work still in flight for it is dropped."""


@dataclass(frozen=True)
class RetryCleared:
    """The piece of work whose retry was shown has succeeded (counted) or failed for good: stop showing it."""

    phase: Phase
    chunk: int | None


@dataclass(frozen=True)
class RetryScheduled:
    """A delivery of `phase`/`chunk` failed and is tried again at `retry_at` (shown until it succeeds)."""

    phase: Phase
    chunk: int | None
    attempt: int
    message: str
    retry_at: str


@dataclass(frozen=True)
class ChunkFailedFinally:
    """A record's last delivery failed: the task turns FAILED until that chunk succeeds (DLQ replay)."""

    phase: Phase
    chunk: int | None
    message: str


@dataclass(frozen=True)
class FailureCleared:
    """A chunk that had failed has now succeeded (a replay, or a redelivery of a counted chunk)."""

    phase: Phase
    chunk: int | None


@dataclass(frozen=True)
class Recovered:
    """Nothing is failing any more: the task shows how far it got again (`status`, as the caller read
    it; refused if extract completed meanwhile, so a stale read cannot set a stale status)."""

    status: TaskStatus


@dataclass(frozen=True)
class TaskAbandoned:
    """A failure no retry can mend (an unreadable source, an event that could not be published)."""

    phase: Phase
    message: str


@dataclass(frozen=True)
class Stalled:
    """The watchdog saw no progress since `seen_updated_at_ms`: fail the task for good."""

    phase: Phase
    message: str
    seen_updated_at_ms: int


@dataclass(frozen=True)
class Announced:
    """TaskSucceeded/TaskFailed and the SNS notification went out for `status`; the task may be deleted
    after `expires_at` (epoch seconds; None keeps it)."""

    status: TaskStatus
    expires_at: int | None = None


TaskEvent = (
    ExtractStarted
    | ExtractProgressed
    | ExtractCompleted
    | ExtractCompletedWhileFailed
    | ChunkCounted
    | PhaseCompleted
    | ChunkFailedFinally
    | FailureCleared
    | Recovered
    | TaskAbandoned
    | Stalled
    | Announced
    | Committed
    | Cancelled
    | RetryScheduled
    | RetryCleared
)


# --- the transition table -------------------------------------------------------------------------


def _stamped(state: TaskState, now: datetime) -> TaskState:
    return _with(state, updated_at=iso(now), updated_at_ms=epoch_ms(now))


def _failed(state: TaskState, phase: Phase, chunk: int | None, message: str, now: datetime) -> TaskState:
    error = state.error or task_error(phase, chunk, message)
    return _stamped(_with(state, status=TaskStatus.FAILED, error=error), now)


def _extract_started(state: TaskState, event: ExtractStarted, now: datetime) -> TaskState:
    started = state.extract.started_at or iso(now)
    return _stamped(_with(state, status=TaskStatus.EXTRACTING).with_phase(Phase.EXTRACT, started_at=started), now)


def _extract_progressed(state: TaskState, event: ExtractProgressed, now: datetime) -> TaskState:
    state = _with(state, counts=state.counts.model_copy(update={"read": event.read}))
    return _stamped(state.with_phase(Phase.EXTRACT, done=event.chunks), now)


def _with_totals(state: TaskState, chunks: int, read: int | None, now: datetime) -> TaskState:
    state = _with(
        state,
        counts=state.counts if read is None else state.counts.model_copy(update={"read": read}),
        extract=_with(
            state.extract,
            done=chunks,
            total=chunks,
            started_at=state.extract.started_at or iso(now),
            completed_at=iso(now),
        ),
        transform=_with(state.transform, total=chunks),
        load=_with(state.load, total=chunks),
    )
    return _stamped(state, now)


def without_retry(state: TaskState, phase: Phase, chunk: int | None) -> TaskState:
    member = failure_member(phase, chunk)
    return _with(state, retrying=tuple(notice for notice in state.retrying if retry_member(notice) != member))


def retry_member(notice: RetryNotice) -> str:
    return failure_member(notice.phase, notice.chunk)


def in_retry_order(notices: tuple[RetryNotice, ...] | list[RetryNotice]) -> tuple[RetryNotice, ...]:
    return tuple(sorted(notices, key=lambda notice: (PHASE_ORDER.index(notice.phase), notice.chunk or 0)))


def _extract_completed(state: TaskState, event: ExtractCompleted, now: datetime) -> TaskState:
    return _with(_with_totals(state, event.chunks, event.read, now), status=TaskStatus.TRANSFORMING)


def _extract_completed_while_failed(
    state: TaskState, event: ExtractCompletedWhileFailed, now: datetime
) -> TaskState:
    return _with_totals(state, event.chunks, event.read, now)


def _chunk_counted(state: TaskState, event: ChunkCounted, now: datetime) -> TaskState:
    phase = state.phase(event.phase)
    counts = state.counts.model_copy(
        update={
            name: getattr(state.counts, name) + amount for name, amount in event.counts.items() if name in COUNTERS
        }
    )
    retry_counts = dict(state.retry_counts)
    for name, amount in event.counts.items():
        if name in RETRY_COUNTERS:
            retry_counts[name] = retry_counts.get(name, 0) + amount
    state = _with(
        state,
        counts=counts,
        retry_counts=retry_counts,
        failing=state.failing - {failure_member(event.phase, chunk) for chunk in event.chunks},
    ).with_phase(
        event.phase,
        done=phase.done + len(event.chunks),
        chunks=phase.chunks | event.chunks,
        started_at=phase.started_at or event.started_at or iso(now),
    )
    return _stamped(state, now)


def _phase_completed(state: TaskState, event: PhaseCompleted, now: datetime) -> TaskState:
    phase = state.phase(event.phase)
    status = completion_status(event)
    state = _with(state, status=status).with_phase(
        event.phase, completed_at=iso(now), started_at=phase.started_at or iso(now)
    )
    return _stamped(state, now)


def completion_status(event: PhaseCompleted) -> TaskStatus:
    if event.phase is not Phase.LOAD:
        return TaskStatus.LOADING
    return TaskStatus.COMMITTING if event.commit_pending else TaskStatus.SUCCEEDED


def _chunk_failed(state: TaskState, event: ChunkFailedFinally, now: datetime) -> TaskState:
    failed = _failed(state, event.phase, event.chunk, event.message, now)
    return _with(failed, failing=failed.failing | {failure_member(event.phase, event.chunk)})


def _failure_cleared(state: TaskState, event: FailureCleared, now: datetime) -> TaskState:
    return _stamped(_with(state, failing=state.failing - {failure_member(event.phase, event.chunk)}), now)


def _recovered(state: TaskState, event: Recovered, now: datetime) -> TaskState:
    return _stamped(_with(state, status=state.progress_status(), error=None, expires_at=None), now)


def _abandoned(state: TaskState, event: TaskAbandoned, now: datetime) -> TaskState:
    return _with(_failed(state, event.phase, None, event.message, now), error_terminal=True)


def _stalled(state: TaskState, event: Stalled, now: datetime) -> TaskState:
    return _with(_failed(state, event.phase, None, event.message, now), error_terminal=True)


def _committed(state: TaskState, event: Committed, now: datetime) -> TaskState:
    counts = state.counts.model_copy(
        update={"loaded": event.loaded, "deleted": event.deleted, "rejected": state.counts.rejected + event.rejected}
    )
    return _stamped(_with(state, status=TaskStatus.SUCCEEDED, committed_at=iso(now), counts=counts), now)


def _cancelled(state: TaskState, event: Cancelled, now: datetime) -> TaskState:
    # `retrying` stays as written (the snapshot of a final task shows none): the write cannot know
    # which retry notices the item holds.
    return _stamped(_with(state, status=TaskStatus.CANCELLED), now)


def retry_notice_shown(notice: RetryNotice) -> RetryNotice:
    """The notice as kept on the task: the error scrubbed (redaction.py) and short."""
    return notice.model_copy(update={"error": public_message(notice.error)[:RETRY_ERROR_LIMIT]})


def _retry_scheduled(state: TaskState, event: RetryScheduled, now: datetime) -> TaskState:
    notice = retry_notice_shown(
        RetryNotice(
            phase=event.phase, chunk=event.chunk, attempt=event.attempt, error=event.message, retryAt=event.retry_at
        )
    )
    state = without_retry(state, event.phase, event.chunk)
    return _stamped(_with(state, retrying=in_retry_order((*state.retrying, notice))), now)


def _retry_cleared(state: TaskState, event: RetryCleared, now: datetime) -> TaskState:
    return without_retry(state, event.phase, event.chunk)  # not progress: updatedAt stays


def _announced(state: TaskState, event: Announced, now: datetime) -> TaskState:
    return _with(state, announced=event.status, expires_at=event.expires_at)  # not progress: updatedAt stays


E = TypeVar("E")


@dataclass(frozen=True)
class Transition(Generic[E]):
    allowed_when: str  # the guard in words, for the design doc
    guard: Callable[[TaskState, E], bool]
    effect: Callable[[TaskState, E, datetime], TaskState]


def _extract_may_start(state: TaskState, event: ExtractStarted) -> bool:
    return not state.is_final and not state.extract.completed


def _extract_may_progress(state: TaskState, event: ExtractProgressed) -> bool:
    return (
        not state.extract.completed
        and state.extract.done < event.chunks
        and state.status is not TaskStatus.CANCELLED
    )


def _extract_may_complete(state: TaskState, event: ExtractCompleted) -> bool:
    return not state.extract.completed and state.status not in (TaskStatus.FAILED, TaskStatus.CANCELLED)


def _extract_may_complete_while_failed(state: TaskState, event: ExtractCompletedWhileFailed) -> bool:
    return not state.extract.completed and state.status is TaskStatus.FAILED


def _chunk_not_counted(state: TaskState, event: ChunkCounted) -> bool:
    return event.chunks.isdisjoint(state.phase(event.phase).chunks)


def _phase_completable(state: TaskState, event: PhaseCompleted) -> bool:
    commit_matches = event.phase is not Phase.LOAD or event.commit_pending == (state.commit == "task")
    return commit_matches and _phase_may_complete(state, event.phase)


def _committing(state: TaskState, event: Committed) -> bool:
    return state.status is TaskStatus.COMMITTING


def _cancellable(state: TaskState, event: Cancelled) -> bool:
    return state.status in CANCELLABLE_STATUSES


def _still_running_with_room(state: TaskState, event: RetryScheduled) -> bool:
    shown = failure_member(event.phase, event.chunk) in {retry_member(notice) for notice in state.retrying}
    return not state.is_final and (shown or len(state.retrying) < MAX_RETRY_NOTICES)


def _retry_shown(state: TaskState, event: RetryCleared) -> bool:
    return failure_member(event.phase, event.chunk) in {retry_member(notice) for notice in state.retrying}


def _not_settled(state: TaskState, event: ChunkFailedFinally | TaskAbandoned) -> bool:
    return state.status not in SETTLED_STATUSES


def _chunk_is_failing(state: TaskState, event: FailureCleared) -> bool:
    return failure_member(event.phase, event.chunk) in state.failing


def _may_recover(state: TaskState, event: Recovered) -> bool:
    return (
        state.status is TaskStatus.FAILED
        and not state.failing
        and not state.error_terminal
        and state.progress_status() is event.status
    )


def _unchanged_and_active(state: TaskState, event: Stalled) -> bool:
    return not state.is_final and state.updated_at_ms == event.seen_updated_at_ms


def _always(state: TaskState, event: Announced) -> bool:
    return True


TRANSITIONS: Final[dict[type, Transition[Any]]] = {
    ExtractStarted: Transition(
        "not SUCCEEDED, FAILED or CANCELLED; extract not completed", _extract_may_start, _extract_started
    ),
    ExtractProgressed: Transition(
        "extract not completed; more chunks than recorded so far; not CANCELLED",
        _extract_may_progress,
        _extract_progressed,
    ),
    ExtractCompleted: Transition(
        "extract not completed; not FAILED or CANCELLED", _extract_may_complete, _extract_completed
    ),
    ExtractCompletedWhileFailed: Transition(
        "extract not completed; FAILED (and left FAILED)",
        _extract_may_complete_while_failed,
        _extract_completed_while_failed,
    ),
    ChunkCounted: Transition("none of its chunks is counted yet in its phase", _chunk_not_counted, _chunk_counted),
    PhaseCompleted: Transition(
        "previous phase completed, this one not; done == total; not FAILED or CANCELLED; for load, the task's "
        "commit mode is the event's",
        _phase_completable,
        _phase_completed,
    ),
    ChunkFailedFinally: Transition("not SUCCEEDED or CANCELLED", _not_settled, _chunk_failed),
    FailureCleared: Transition("the chunk is among the failing ones", _chunk_is_failing, _failure_cleared),
    Recovered: Transition(
        "FAILED; nothing failing; not a terminal failure; got as far as the event says", _may_recover, _recovered
    ),
    TaskAbandoned: Transition("not SUCCEEDED or CANCELLED", _not_settled, _abandoned),
    Stalled: Transition(
        "not SUCCEEDED, FAILED or CANCELLED; unchanged since the watchdog read it", _unchanged_and_active, _stalled
    ),
    Announced: Transition("always", _always, _announced),
    Committed: Transition("COMMITTING", _committing, _committed),
    Cancelled: Transition("ACCEPTED, EXTRACTING, TRANSFORMING or LOADING", _cancellable, _cancelled),
    RetryScheduled: Transition(
        f"not SUCCEEDED, FAILED or CANCELLED; the work already shown, or fewer than {MAX_RETRY_NOTICES} shown",
        _still_running_with_room,
        _retry_scheduled,
    ),
    RetryCleared: Transition("the work is shown as retrying", _retry_shown, _retry_cleared),
}


def validate(event: TaskEvent) -> None:
    """Events that make no sense whatever the state (a programming error, not a refusal)."""
    if isinstance(event, ChunkCounted | PhaseCompleted) and event.phase is Phase.EXTRACT:
        raise ValueError(f"{type(event).__name__}: extract is counted by ExtractCompleted, not per chunk")
    if isinstance(event, ChunkCounted):
        unknown = set(event.counts) - set(COUNTERS) - set(RETRY_COUNTERS)
        if unknown:
            raise ValueError(f"unknown counters {sorted(unknown)}; expected some of {COUNTERS + RETRY_COUNTERS}")


def decide(state: TaskState, event: TaskEvent, now: datetime) -> TaskState | None:
    """The state after `event`, or None when the table does not allow it from `state`."""
    validate(event)
    transition = TRANSITIONS[type(event)]
    if not transition.guard(state, event):
        return None
    return transition.effect(state, event, now)


@dataclass(frozen=True)
class Outcome:
    """A transition that happened: the task just before and just after it (one atomic write)."""

    before: TaskState
    after: TaskState

    @property
    def newly_failed(self) -> bool:
        return self.before.status is not TaskStatus.FAILED and self.after.status is TaskStatus.FAILED
