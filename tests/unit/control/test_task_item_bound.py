"""Fan-in keeps each phase's counted chunks (and the failing ones) inside the task's one DynamoDB item,
which DynamoDB caps at 400 KB: MAX_CHUNKS_PER_TASK is what keeps the item under it, whatever happens."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from busline_core.contracts import Counts, Phase, RetryNotice, TaskStatus
from busline_core.limits import MAX_CHUNKS_PER_TASK, MAX_RETRY_NOTICES, MAX_SPEC_BYTES
from busline_core.task_state import (
    ERROR_MESSAGE_LIMIT,
    RETRY_ERROR_LIMIT,
    PhaseState,
    TaskState,
    failure_member,
    task_error,
)
from busline_core.tasks_repo import item_from_state

DYNAMODB_ITEM_LIMIT = 400 * 1024
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _value_size(value: Any) -> int:
    """An upper bound of DynamoDB's size of a value (its documented rules, rounded up)."""
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, bool) or value is None:
        return 1
    if isinstance(value, int | Decimal):
        digits = len(str(abs(int(value))))
        return (digits + 1) // 2 + 1 + 1  # two digits a byte, one byte of exponent, one of sign
    if isinstance(value, set | frozenset):
        return sum(_value_size(member) for member in value)
    if isinstance(value, dict):
        return 3 + sum(len(name.encode()) + _value_size(item) + 1 for name, item in value.items())
    if isinstance(value, list):
        return 3 + sum(_value_size(item) + 1 for item in value)
    raise TypeError(type(value))


def item_size(item: dict[str, Any]) -> int:
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _biggest_task(**changes: Any) -> TaskState:
    every_chunk = frozenset(range(MAX_CHUNKS_PER_TASK))
    extracted = PhaseState(
        done=MAX_CHUNKS_PER_TASK,
        total=MAX_CHUNKS_PER_TASK,
        started_at="2026-11-30T12:00:00.000Z",
        completed_at="2026-11-30T12:00:01.000Z",
    )
    state = TaskState.submitted("7c0a4c1e-0d5f-4f3e-9a43-5d1e7b0f2a61", "o" * 64, "p" * 64, "x" * MAX_SPEC_BYTES, T0)
    return state.model_copy(
        update={
            "status": TaskStatus.FAILED,
            "extract": extracted,
            "transform": extracted.model_copy(update={"chunks": every_chunk}),
            "load": extracted.model_copy(update={"chunks": every_chunk}),
            "counts": Counts(read=10**12, filtered=10**12, rejected=10**12, loaded=10**12, deleted=10**12),
            "commit": "task",
            "committed_at": "2026-11-30T12:00:03.000Z",
            # the longest error, in 3-byte characters
            "error": task_error(Phase.TRANSFORM, MAX_CHUNKS_PER_TASK - 1, "€" * ERROR_MESSAGE_LIMIT),
            "error_terminal": True,
            "announced": TaskStatus.FAILED,
            "expires_at": 1_803_000_000,
            **changes,
        }
    )


def test_the_task_item_stays_under_dynamodbs_limit_at_the_chunk_limit() -> None:
    every_chunk = range(MAX_CHUNKS_PER_TASK)
    # Given a task at MAX_CHUNKS_PER_TASK with the largest spec and error, in each worst case of fan-in:
    worst_cases = {
        # every chunk counted in both phases
        "all counted": _biggest_task(),
        # every chunk transformed, and every load failing for the last time
        "all loads failing": _biggest_task(
            load=_biggest_task().load.model_copy(update={"chunks": frozenset()}),
            failing=frozenset(failure_member(Phase.LOAD, chunk) for chunk in every_chunk),
        ),
        # every chunk counted, and as many retry notices as shown at most, each with the longest error
        "all counted, retries shown": _biggest_task(
            retrying=tuple(
                RetryNotice(
                    phase=Phase.TRANSFORM, chunk=chunk, attempt=10**6, error="€" * RETRY_ERROR_LIMIT,
                    retryAt="2026-11-30T12:00:02.000Z",
                )
                for chunk in range(MAX_CHUNKS_PER_TASK - MAX_RETRY_NOTICES, MAX_CHUNKS_PER_TASK)
            ),
        ),  # fmt: skip
        # every transform failing for the last time (none counted anywhere)
        "all transforms failing": _biggest_task(
            transform=_biggest_task().transform.model_copy(update={"chunks": frozenset()}),
            load=_biggest_task().load.model_copy(update={"chunks": frozenset()}),
            failing=frozenset(failure_member(Phase.TRANSFORM, chunk) for chunk in every_chunk),
        ),
    }
    # When each is stored as the repository stores it
    sizes = {name: item_size(item_from_state(state)) for name, state in worst_cases.items()}
    # Then the largest is 211,321 bytes, about half of DynamoDB's 409,600
    assert sizes == {
        "all counted": 152_252,
        "all counted, retries shown": 202_002,
        "all loads failing": 201_237,
        "all transforms failing": 211_321,
    }
    assert max(sizes.values()) < DYNAMODB_ITEM_LIMIT
