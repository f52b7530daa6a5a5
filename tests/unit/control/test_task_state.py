"""The task state machine's table, walked: every (state, event) pair, allowed or refused, with the
status it leads to; and the same pair written through TasksRepository into moto's DynamoDB, which
must agree with the table to the last attribute (the conditional write is the table's guard)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from busline_core.contracts import Phase, RetryNotice, TaskError, TaskStatus
from busline_core.limits import MAX_RETRY_NOTICES
from busline_core.task_state import (
    TRANSITIONS,
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
    PhaseCompleted,
    PhaseState,
    Recovered,
    RetryCleared,
    RetryScheduled,
    Stalled,
    TaskAbandoned,
    TaskEvent,
    TaskState,
    decide,
)
from busline_core.tasks_repo import TasksRepository

from .conftest import Clock, Cloud


def _with(model: Any, **changes: Any) -> Any:
    return model.model_copy(update=changes)


NOW = datetime(2026, 11, 22, 10, 0, 5, tzinfo=UTC)
T0 = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)
STARTED = "2026-11-22T10:00:01.000Z"
DONE = "2026-11-22T10:00:02.000Z"
ERROR = TaskError(phase=Phase.TRANSFORM, chunk=1, message="boom")
EXPIRES_AT = 1_803_000_000  # epoch seconds: when TTL may delete a finished task

_accepted = TaskState.submitted("t", "ana", "adhoc", "{}", T0, commit="task")
_extracting = _with(_accepted, status=TaskStatus.EXTRACTING, extract=PhaseState(done=1, started_at=STARTED))
_extracted = PhaseState(done=3, total=3, started_at=STARTED, completed_at=DONE)
_transforming = _with(
    _accepted,
    status=TaskStatus.TRANSFORMING,
    extract=_extracted,
    transform=PhaseState(done=1, total=3, chunks=frozenset({0}), started_at=STARTED),
    load=PhaseState(total=3),
)
_all_transformed = PhaseState(done=3, total=3, chunks=frozenset({0, 1, 2}), started_at=STARTED)
_loading = _with(
    _transforming,
    status=TaskStatus.LOADING,
    transform=_with(_all_transformed, completed_at=DONE),
    load=PhaseState(done=1, total=3, chunks=frozenset({0}), started_at=STARTED),
)
_all_loaded = PhaseState(done=3, total=3, chunks=frozenset({0, 1, 2}), started_at=STARTED)
_committing = _with(_loading, status=TaskStatus.COMMITTING, load=_with(_all_loaded, completed_at=DONE))
RETRY = RetryNotice(phase=Phase.TRANSFORM, chunk=1, attempt=1, error="ChunkFailed: blip", retryAt=DONE)

STATES: dict[str, TaskState] = {
    "accepted": _accepted,
    "extracting": _extracting,
    "transforming": _transforming,
    "transforms_done": _with(_transforming, transform=_all_transformed),
    "loading": _loading,
    "loads_done": _with(_loading, load=_all_loaded),
    # a task that commits chunk by chunk: load's completion is its success
    "loads_done_chunk": _with(_loading, load=_all_loaded, commit="chunk"),
    "committing": _committing,
    "succeeded": _with(_committing, status=TaskStatus.SUCCEEDED, committed_at=DONE, announced=None),
    # the merge's last delivery failed; a replay of it is what may mend the task
    "failed_commit": _with(
        _committing,
        status=TaskStatus.FAILED,
        error=TaskError(phase=Phase.LOAD, message="merge failed"),
        failing=frozenset({"load"}),
    ),
    "failed_commit_mended": _with(
        _committing, status=TaskStatus.FAILED, error=TaskError(phase=Phase.LOAD, message="merge failed")
    ),
    "retrying": _with(_transforming, retrying=(RETRY,)),
    # as many pieces of work shown retrying as a task may show (limits.MAX_RETRY_NOTICES)
    "retrying_full": _with(
        _transforming,
        retrying=(RETRY, *(_with(RETRY, chunk=100 + n) for n in range(MAX_RETRY_NOTICES - 1))),
    ),
    "cancelled": _with(_transforming, status=TaskStatus.CANCELLED),
    "failed_chunk": _with(
        _transforming, status=TaskStatus.FAILED, error=ERROR, failing=frozenset({"transform:1"})
    ),
    # chunk 1 succeeded after all (a replay) but the task has not been told it may go on yet
    "failed_mended": _with(
        _transforming,
        status=TaskStatus.FAILED,
        error=ERROR,
        announced=TaskStatus.FAILED,
        expires_at=EXPIRES_AT,
        transform=_with(_transforming.transform, done=2, chunks=frozenset({0, 1})),
    ),
    "failed_terminal": _with(
        _extracting,
        status=TaskStatus.FAILED,
        error=TaskError(phase=Phase.EXTRACT, message="source unreadable"),
        error_terminal=True,
    ),
}

EVENTS: dict[str, TaskEvent] = {
    "start": ExtractStarted(),
    "progress": ExtractProgressed(2, 200),
    "extracted": ExtractCompleted(3, 300),
    "extracted!": ExtractCompletedWhileFailed(3, 300),
    "count1": ChunkCounted(Phase.TRANSFORM, 1, {"filtered": 1}),
    "count0": ChunkCounted(Phase.TRANSFORM, 0, {"filtered": 1}),
    "transformed": PhaseCompleted(Phase.TRANSFORM),
    "staged": PhaseCompleted(Phase.LOAD, commit_pending=True),
    "loaded": PhaseCompleted(Phase.LOAD),
    "fail1": ChunkFailedFinally(Phase.TRANSFORM, 1, "late"),
    "clear1": FailureCleared(Phase.TRANSFORM, 1),
    "clearL": FailureCleared(Phase.LOAD, None),
    "recover": Recovered(TaskStatus.TRANSFORMING),
    "recoverC": Recovered(TaskStatus.COMMITTING),
    "abandon": TaskAbandoned(Phase.EXTRACT, "unreadable"),
    "stall": Stalled(Phase.TRANSFORM, "stalled", _accepted.updated_at_ms),  # every state was read at T0
    "announce": Announced(TaskStatus.SUCCEEDED, EXPIRES_AT),
    "commit": Committed(loaded=290, deleted=4, rejected=6),
    "cancel": Cancelled(),
    "retry1": RetryScheduled(Phase.TRANSFORM, 1, 2, "ChunkFailed: again", DONE),
    "retry0": RetryScheduled(Phase.TRANSFORM, 0, 1, "ChunkFailed: new", DONE),
    "unretry1": RetryCleared(Phase.TRANSFORM, 1),
}

# The table: the status each event leads to from each state; "-" refused.
# A=ACCEPTED E=EXTRACTING T=TRANSFORMING L=LOADING C=COMMITTING S=SUCCEEDED F=FAILED X=CANCELLED
TABLE = """
                     start progress extracted extracted! count1 count0 transformed staged loaded fail1 clear1 clearL recover recoverC abandon stall announce commit cancel retry1 retry0 unretry1
accepted             E     A        T         -          A      A      -           -      -      F     -      -      -       -        F       F     A        -      X      A      A      -
extracting           E     E        T         -          E      E      -           -      -      F     -      -      -       -        F       F     E        -      X      E      E      -
transforming         -     -        -         -          T      -      -           -      -      F     -      -      -       -        F       F     T        -      X      T      T      -
transforms_done      -     -        -         -          -      -      L           -      -      F     -      -      -       -        F       F     T        -      X      T      T      -
loading              -     -        -         -          -      -      -           -      -      F     -      -      -       -        F       F     L        -      X      L      L      -
loads_done           -     -        -         -          -      -      -           C      -      F     -      -      -       -        F       F     L        -      X      L      L      -
loads_done_chunk     -     -        -         -          -      -      -           -      S      F     -      -      -       -        F       F     L        -      X      L      L      -
committing           -     -        -         -          -      -      -           -      -      F     -      -      -       -        F       F     C        S      -      C      C      -
succeeded            -     -        -         -          -      -      -           -      -      -     -      -      -       -        -       -     S        -      -      -      -      -
failed_commit        -     -        -         -          -      -      -           -      -      F     -      F      -       -        F       -     F        -      -      -      -      -
failed_commit_mended -     -        -         -          -      -      -           -      -      F     -      -      -       C        F       -     F        -      -      -      -      -
retrying             -     -        -         -          T      -      -           -      -      F     -      -      -       -        F       F     T        -      X      T      T      T
retrying_full        -     -        -         -          T      -      -           -      -      F     -      -      -       -        F       F     T        -      X      T      -      T
cancelled            -     -        -         -          X      -      -           -      -      -     -      -      -       -        -       -     X        -      -      -      -      -
failed_chunk         -     -        -         -          F      -      -           -      -      F     F      -      -       -        F       -     F        -      -      -      -      -
failed_mended        -     -        -         -          -      -      -           -      -      F     -      -      T       -        F       -     F        -      -      -      -      -
failed_terminal      -     F        -         F          F      F      -           -      -      F     -      -      -       -        F       -     F        -      -      -      -      -
"""
STATUS_OF = {
    "A": TaskStatus.ACCEPTED,
    "E": TaskStatus.EXTRACTING,
    "T": TaskStatus.TRANSFORMING,
    "L": TaskStatus.LOADING,
    "C": TaskStatus.COMMITTING,
    "S": TaskStatus.SUCCEEDED,
    "F": TaskStatus.FAILED,
    "X": TaskStatus.CANCELLED,
    "-": None,
}


def _table() -> dict[tuple[str, str], TaskStatus | None]:
    header, *rows = [line.split() for line in TABLE.strip().splitlines()]
    cells = {}
    for state_name, *marks in rows:
        assert len(marks) == len(header), state_name
        for event_name, mark in zip(header, marks, strict=True):
            cells[(state_name, event_name)] = STATUS_OF[mark]
    return cells


CELLS = _table()


def test_the_table_covers_every_state_and_every_kind_of_event() -> None:
    assert {state for state, _ in CELLS} == set(STATES)
    assert {event for _, event in CELLS} == set(EVENTS)
    assert {type(event) for event in EVENTS.values()} == set(TRANSITIONS)


@pytest.mark.parametrize(("state_name", "event_name"), sorted(CELLS))
def test_each_pair_is_allowed_or_refused_as_the_table_says(state_name: str, event_name: str) -> None:
    # Given a task in the state / When the event happens
    after = decide(STATES[state_name], EVENTS[event_name], NOW)
    # Then it is refused, or leads to the status of the table
    assert (None if after is None else after.status) == CELLS[(state_name, event_name)]


def test_effects_change_what_they_say_and_nothing_else() -> None:
    counted = decide(STATES["transforming"], EVENTS["count1"], NOW)
    assert counted is not None
    assert (counted.transform.done, counted.transform.chunks, counted.counts.filtered) == (2, frozenset({0, 1}), 1)
    mended = decide(STATES["failed_chunk"], EVENTS["count1"], NOW)
    assert mended is not None and (mended.failing, mended.status) == (frozenset(), TaskStatus.FAILED)
    failed_again = decide(STATES["failed_chunk"], ChunkFailedFinally(Phase.LOAD, 2, "second"), NOW)
    assert failed_again is not None
    assert (failed_again.error, failed_again.failing) == (ERROR, frozenset({"transform:1", "load:2"}))
    recovered = decide(STATES["failed_mended"], EVENTS["recover"], NOW)
    assert recovered is not None
    # a task a replay brought back to life is no longer due for deletion
    assert (recovered.error, recovered.status, recovered.expires_at) == (None, TaskStatus.TRANSFORMING, None)
    announced = decide(STATES["succeeded"], EVENTS["announce"], NOW)
    assert announced is not None
    assert (announced.announced, announced.updated_at, announced.expires_at) == (
        TaskStatus.SUCCEEDED,
        STATES["succeeded"].updated_at,
        EXPIRES_AT,
    )
    extracted = decide(STATES["extracting"], EVENTS["extracted"], NOW)
    assert extracted is not None
    assert [extracted.phase(phase).total for phase in Phase] == [3, 3, 3]
    assert (extracted.extract.started_at, extracted.counts.read) == (STARTED, 300)


def test_commit_retry_and_cancel_change_what_they_say() -> None:
    committed = decide(STATES["committing"], EVENTS["commit"], NOW)
    assert committed is not None
    # the merge's counts replace what the chunks staged, and add the rows it refused
    assert (committed.counts.loaded, committed.counts.deleted, committed.counts.rejected, committed.committed_at) == (
        290, 4, 6, "2026-11-22T10:00:05.000Z"
    )
    retried = decide(STATES["retrying"], EVENTS["retry1"], NOW)
    assert retried is not None
    assert [(notice.chunk, notice.attempt, notice.error) for notice in retried.retrying] == [(1, 2, "ChunkFailed: again")]
    # a counted chunk's notice is hidden at once, and gone once RetryCleared is written
    counted = decide(STATES["retrying"], EVENTS["count1"], NOW)
    assert counted is not None and (len(counted.retrying), counted.snapshot().retrying) == (1, [])
    cleared = decide(counted, EVENTS["unretry1"], NOW)
    assert cleared is not None and (cleared.retrying, cleared.updated_at) == ((), counted.updated_at)
    cancelled = decide(STATES["retrying"], EVENTS["cancel"], NOW)
    assert cancelled is not None and cancelled.snapshot().retrying == []
    assert STATES["committing"].progress_status() is TaskStatus.COMMITTING
    assert STATES["loads_done_chunk"].commit_pending is False


def test_a_stale_read_can_neither_stall_nor_recover_a_task() -> None:
    # A watchdog that read the task before its last change
    assert decide(STATES["transforming"], Stalled(Phase.TRANSFORM, "x", 0), NOW) is None
    # A recovery computed before extract completed
    assert decide(STATES["failed_mended"], Recovered(TaskStatus.EXTRACTING), NOW) is None


def test_the_repository_writes_exactly_the_table(cloud: Cloud, clock: Clock) -> None:
    # Given every state stored as a task item (one task per pair) and the repository's clock at NOW
    clock.now = NOW
    repo = TasksRepository(cloud.tasks_table, clock=clock)
    mismatches = []
    for (state_name, event_name), status in sorted(CELLS.items()):
        task_id = f"{state_name}.{event_name}"
        state = _with(STATES[state_name], task_id=task_id)
        repo.create(state)
        # When the event is applied as one conditional UpdateItem
        outcome = repo.apply(task_id, EVENTS[event_name])
        # Then it is refused exactly when the table refuses it, and the item read back is the table's state
        stored = repo.get(task_id)
        expected = decide(state, EVENTS[event_name], NOW) or state
        if (outcome is None) != (status is None) or stored != expected:
            mismatches.append((state_name, event_name, outcome is not None, stored, expected))
        if outcome is not None:
            assert (outcome.before, outcome.after) == (state, expected)
    assert mismatches == []


def test_the_design_doc_shows_every_transition_with_its_guard() -> None:
    # Given the transition table in docs/design.md
    design = (Path(__file__).resolve().parents[3] / "docs" / "design.md").read_text()
    table = design.split("| event | allowed when | effect |")[1].split("\n\n")[0]
    rows = {
        cells[1].strip().strip("`").split("(")[0]: cells[2].strip()
        for cells in (line.split("|") for line in table.strip().splitlines()[1:])
    }
    # Then it names every event with the guard the code checks
    assert rows == {event.__name__: transition.allowed_when for event, transition in TRANSITIONS.items()}
