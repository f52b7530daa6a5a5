"""The watchdog: fail tasks that can no longer finish by themselves.

Two ways a task gets stuck: its message was dead-lettered by a delivery that died before the handler
could report it (a crash, a timeout, a killed container), or it simply made no progress for
`stall_seconds` (a lost message, a bug). Either way the task turns FAILED, once, and is announced.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from aws_lambda_powertools import Logger

from . import correlation
from .contracts import Phase, TaskStatus
from .deps import WatchdogDeps
from .task_state import TaskState, epoch_ms

logger = Logger(child=True)

_PHASE_OF_STATUS = {
    TaskStatus.ACCEPTED: Phase.EXTRACT,
    TaskStatus.EXTRACTING: Phase.EXTRACT,
    TaskStatus.TRANSFORMING: Phase.TRANSFORM,
    TaskStatus.LOADING: Phase.LOAD,
}


def watchdog(deps: WatchdogDeps, now: datetime | None = None) -> int:
    """One tick; returns how many tasks it failed."""
    active = {state.task_id: state for state in deps.tasks.list_active()}  # one scan for both checks
    dead_lettered = _fail_dead_lettered(active, deps)
    failed = len(dead_lettered)
    now_ms = epoch_ms(now or deps.clock())
    for task_id, state in active.items():
        if task_id in dead_lettered:
            continue
        idle_ms = now_ms - state.updated_at_ms
        if idle_ms < deps.stall_seconds * 1000:
            continue
        phase = _PHASE_OF_STATUS.get(state.status, Phase.EXTRACT)
        correlation.bind(state.correlation_id)
        if deps.lifecycle.stalled(state, phase, f"stalled in {phase.value}: no progress for {idle_ms // 1000} s"):
            failed += 1
            logger.warning("task stalled", extra={"task_id": task_id, "phase": phase.value})
    correlation.bind(None)
    return failed


def _fail_dead_lettered(active: Mapping[str, TaskState], deps: WatchdogDeps) -> set[str]:
    """A last delivery that died before the handler ran never failed its task; returns the ids of
    the tasks failed here."""
    failed: set[str] = set()
    if deps.dead_letters is None:
        return failed
    for letter in deps.dead_letters.peek():
        if letter.task_id not in active or letter.task_id in failed:
            continue  # finished, already failed, or not ours
        phase = Phase(letter.phase) if letter.phase else Phase.EXTRACT
        correlation.bind(active[letter.task_id].correlation_id)
        message = (
            f"dead-lettered after {letter.receive_count} deliveries: "
            f"see `busline dlq show --task {letter.task_id}`"
        )
        if deps.lifecycle.final_delivery_failed(letter.task_id, phase, letter.chunk, message):
            failed.add(letter.task_id)
            logger.warning("task dead-lettered", extra={"task_id": letter.task_id, "phase": phase.value})
    return failed
