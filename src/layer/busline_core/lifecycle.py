"""Fan-in and announcements: what follows a task's state change, in the order it must happen.

The steps report facts (a chunk was counted, extract completed, a delivery failed for the last time);
this module applies them as state-machine events (tasks_repo), then does what the new state calls for:
complete the next phase (publishing PhaseCompleted), and once the task is final, publish
TaskSucceeded/TaskFailed and notify SNS, once. Every decision is taken on the state that the caller's
own atomic write produced, so the writer of the last chunk always sees every chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from aws_lambda_powertools import Logger

from .bus import EventPublisher, Notifier
from .contracts import PHASE_COMPLETED, PHASE_ORDER, Phase, TaskFinished, TaskStatus
from .contracts import PhaseCompleted as PhaseCompletedDetail
from .task_state import (
    Announced,
    ChunkCounted,
    ChunkFailedFinally,
    Committed,
    ExtractCompleted,
    ExtractCompletedWhileFailed,
    FailureCleared,
    Outcome,
    PhaseCompleted,
    Recovered,
    RetryCleared,
    RetryScheduled,
    Stalled,
    TaskAbandoned,
    TaskState,
    failure_member,
    retry_member,
    utc_now,
)
from .tasks_repo import TasksRepository

logger = Logger(child=True)


DEFAULT_RETENTION = timedelta(days=90)  # the template's FinishedTaskRetentionDays default


class TaskLifecycle:
    def __init__(
        self,
        tasks: TasksRepository,
        publisher: EventPublisher,
        notifier: Notifier,
        *,
        retention: timedelta = DEFAULT_RETENTION,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.tasks = tasks
        self.publisher = publisher
        self.notifier = notifier
        self.retention = retention  # how long a finished task is kept (DynamoDB TTL)
        self.clock = clock

    # --- facts the steps report ---------------------------------------------------------------

    def extract_completed(self, task_id: str, chunks: int, read: int | None) -> None:
        outcome = self.tasks.apply(task_id, ExtractCompleted(chunks, read)) or self.tasks.apply(
            task_id, ExtractCompletedWhileFailed(chunks, read)
        )
        if outcome is None:
            # A redelivery after the work was done: only make sure nothing after it was left undone.
            self.advance(task_id, self._cleared(task_id, Phase.EXTRACT, None))
            return
        self._publish_phase_completed(task_id, Phase.EXTRACT, chunks)
        self._retry_done(task_id, outcome.before, Phase.EXTRACT, None)
        state = outcome.after
        if state.status is TaskStatus.FAILED:
            # a replayed extract: its own failure is mended now
            state = self._cleared(task_id, Phase.EXTRACT, None) or state
        self.advance(task_id, state)

    def extract_redelivered(self, task_id: str) -> None:
        """Extract ran to completion before: clear its failure (a replay) and finish what is left."""
        self.advance(task_id, self._cleared(task_id, Phase.EXTRACT, None))

    def chunk_redelivered(self, task_id: str, phase: Phase, chunk: int) -> None:
        """A chunk counted before came again: clear its failure (a replay) and finish what is left."""
        self.advance(task_id, self._cleared(task_id, phase, chunk))

    def chunk_counted(self, event: ChunkCounted, task_id: str) -> TaskState | None:
        """Count the chunk and complete what that allows; the task as this count left it (None when an
        earlier delivery had counted it)."""
        outcome = self.tasks.apply(task_id, event)
        if outcome is None:
            # Already counted by an earlier delivery, which may have died before the completion check
            # or may be the chunk a DLQ replay is retrying: clear its failure, then check completions.
            self.advance(task_id, self._cleared(task_id, event.phase, event.chunk))
            return None
        return self._after_count(task_id, event, outcome)

    def chunks_counted(self, events: Sequence[ChunkCounted], task_id: str) -> TaskState | None:
        """Count a batch's chunks of one task (one phase, each chunk once) in one write; the task as the
        last accepted count left it. When an earlier delivery counted one of them (the write refuses all),
        each is counted on its own, as chunk_counted would have."""
        if len(events) > 1:
            combined = ChunkCounted.combined(events)
            outcome = self.tasks.apply(task_id, combined)
            if outcome is not None:
                return self._after_count(task_id, combined, outcome)
        counted = None
        for event in events:
            counted = self.chunk_counted(event, task_id) or counted
        return counted

    def _after_count(self, task_id: str, event: ChunkCounted, outcome: Outcome) -> TaskState:
        for chunk in sorted(event.chunks):
            self._retry_done(task_id, outcome.before, event.phase, chunk)
        self.advance(task_id, self._recover(task_id, outcome.after))
        return outcome.after

    def final_delivery_failed(self, task_id: str, phase: Phase, chunk: int | None, message: str) -> bool:
        """A record's last delivery failed; True when this call turned the task FAILED."""
        outcome = self.tasks.apply(task_id, ChunkFailedFinally(phase, chunk, message))
        if outcome is None or not outcome.newly_failed:
            return False
        self.announce(task_id)
        return True

    def abandon(self, task_id: str, phase: Phase, message: str) -> bool:
        """Fail the task for good (nothing a retry could mend); True when this call failed it."""
        outcome = self.tasks.apply(task_id, TaskAbandoned(phase, message))
        if outcome is None or not outcome.newly_failed:
            return False
        self.announce(task_id)
        return True

    def retry_scheduled(self, task_id: str, event: RetryScheduled) -> None:
        """Show that a delivery failed and when the next one is due (refused once the task is final)."""
        self.tasks.apply(task_id, event)

    def commit_due(self, task_id: str) -> TaskState | None:
        """The task if its staged rows are to be merged now (COMMITTING); a replay of a failed commit
        brings the task back to COMMITTING first."""
        state = self.tasks.get(task_id)
        if state is not None and state.status is TaskStatus.FAILED:
            state = self._cleared(task_id, Phase.LOAD, None) or state
        return state if state is not None and state.status is TaskStatus.COMMITTING else None

    def committed(self, task_id: str, event: Committed) -> None:
        """The merge is in the warehouse: the task SUCCEEDED (a redelivery finds it so and only makes
        sure it was announced)."""
        outcome = self.tasks.apply(task_id, event)
        self.advance(task_id, None if outcome is None else outcome.after)

    def cancelled_cleaned_up(self, task_id: str) -> None:
        """What a cancelled task staged is gone: notify its owner (the bus already has TaskCancelled,
        published by the API when it cancelled the task)."""
        state = self.tasks.get(task_id)
        if state is not None and state.announced is not TaskStatus.CANCELLED:
            self.announce(task_id, publish=False)

    def stalled(self, state: TaskState, phase: Phase, message: str) -> bool:
        """Fail `state`'s task if it has not changed since it was read; True when this call failed it."""
        if self.tasks.apply(state.task_id, Stalled(phase, message, state.updated_at_ms)) is None:
            return False
        self.announce(state.task_id)
        return True

    # --- what follows ---------------------------------------------------------------------------

    def advance(self, task_id: str, state: TaskState | None) -> None:
        """Complete whatever phase the state allows (transform, then load), then announce success."""
        if state is None:
            state = self.tasks.get(task_id)
            if state is None:
                return
        if state.unannounced_success:
            # The completion was written but its announcement died with the writer: at least once.
            self.announce(task_id)
            return
        for _ in PHASE_ORDER:
            phase = state.completable_phase()
            if phase is None:
                return
            outcome = self.tasks.apply(
                task_id, PhaseCompleted(phase, commit_pending=phase is Phase.LOAD and state.commit_pending)
            )
            if outcome is None:
                # Someone else completed it (or a failure intervened): decide from fresh state.
                fresh = self.tasks.get(task_id)
                if fresh is None:
                    return
                state = fresh
                continue
            total = outcome.after.phase(phase).total or 0
            self._publish_phase_completed(task_id, phase, total)
            state = outcome.after
            if phase is Phase.LOAD:
                if not outcome.after.commit_pending:
                    self.announce(task_id)
                return  # else the PhaseCompleted just published has the load step merge the task

    def announce(self, task_id: str, *, publish: bool = True) -> TaskFinished | None:
        """TaskSucceeded/TaskFailed on the bus and the SNS notification, from the task as it is now."""
        state = self.tasks.get(task_id)
        if state is None:
            return None
        snapshot = state.snapshot()
        finished = TaskFinished(
            taskId=task_id,
            status=snapshot.status,
            counts=snapshot.counts,
            error=snapshot.error,
            correlationId=state.correlation_id,
            cost=snapshot.cost,
            pipeline=snapshot.pipeline,
            durationSeconds=_seconds_between(snapshot.createdAt, snapshot.updatedAt),
            scheduledBy=snapshot.scheduledBy,
            retried=snapshot.retried,
        )
        if publish:
            self.publisher.publish(finished.detail_type, finished)
        self.notifier.task_finished(finished)
        expires_at = int((self.clock() + self.retention).timestamp()) if state.is_final else None
        self.tasks.apply(task_id, Announced(snapshot.status, expires_at))
        logger.info("task finished", extra={"task_id": task_id, "status": snapshot.status.value})
        return finished

    # --- helpers --------------------------------------------------------------------------------

    def _publish_phase_completed(self, task_id: str, phase: Phase, chunks: int) -> None:
        self.publisher.publish(PHASE_COMPLETED, PhaseCompletedDetail(taskId=task_id, phase=phase, chunks=chunks))

    def _retry_done(self, task_id: str, before: TaskState, phase: Phase, chunk: int | None) -> None:
        """The work succeeded: if it was shown as retrying, stop showing it (a second write, only then;
        the snapshot hides a notice of counted work meanwhile)."""
        member = failure_member(phase, chunk)
        if any(retry_member(notice) == member for notice in before.retrying):
            self.tasks.apply(task_id, RetryCleared(phase, chunk))

    def _cleared(self, task_id: str, phase: Phase, chunk: int | None) -> TaskState | None:
        outcome = self.tasks.apply(task_id, FailureCleared(phase, chunk))
        return None if outcome is None else self._recover(task_id, outcome.after)

    def _recover(self, task_id: str, state: TaskState) -> TaskState:
        """Back to how far it got when nothing is failing any more (a replay mended the last chunk)."""
        for _ in range(2):  # once more if extract completed between the read and the write
            if state.status is not TaskStatus.FAILED or state.failing or state.error_terminal:
                return state
            outcome = self.tasks.apply(task_id, Recovered(state.progress_status()))
            if outcome is not None:
                return outcome.after
            fresh = self.tasks.get(task_id)
            if fresh is None:
                return state
            state = fresh
        return state


def _seconds_between(start: str, end: str) -> float | None:
    try:
        began, ended = datetime.fromisoformat(start), datetime.fromisoformat(end)
    except ValueError:
        return None
    return round((ended - began).total_seconds(), 3)
