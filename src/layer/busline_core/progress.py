"""Live progress: the WebSocket routes (connect, subscribe, disconnect) and the pushes that follow
every change of a task (from the tasks table's stream).

A connection belongs to whoever signed in on $connect: it may subscribe only to that owner's tasks
(another owner's task answers exactly like a missing one), and pushes go only to the owner's connections.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .deps import ConnectionsDeps, StreamDeps
from .task_state import TaskState
from .tasks_repo import state_from_stream_image

USAGE = {"error": 'unknown action; send {"action": "subscribe", "taskId": "<task id>"}'}


def _newest_per_task(images: Iterable[Mapping[str, Any]]) -> dict[str, TaskState]:
    newest: dict[str, TaskState] = {}
    for image in images:
        state = state_from_stream_image(image)
        if state is None:
            continue
        current = newest.get(state.task_id)
        # Later in the batch wins a tie: stream order is write order for one item.
        if current is None or state.updated_at_ms >= current.updated_at_ms:
            newest[state.task_id] = state
    return newest


def _send(connection_id: str, payload: Mapping[str, Any], deps: StreamDeps | ConnectionsDeps) -> bool:
    if deps.pusher.push(connection_id, payload):
        return True
    deps.connections.remove(connection_id)
    return False


def push_progress(new_images: list[dict[str, Any]], deps: StreamDeps) -> int:
    """Push the newest snapshot of each task in a stream batch to its subscribers; returns messages sent."""
    sent = 0
    for task_id, state in _newest_per_task(new_images).items():
        # subscribe() already refused other owners; checking again here keeps a stray row from leaking
        receivers = [s.connection_id for s in deps.connections.for_task(task_id) if s.owner == state.owner]
        if not receivers:
            continue
        payload = state.snapshot().model_dump(mode="json")
        sent += sum(1 for connection_id in receivers if _send(connection_id, payload, deps))
    return sent


def connect(connection_id: str, owner: str, deps: ConnectionsDeps) -> None:
    deps.connections.add(connection_id, owner)


def disconnect(connection_id: str, deps: ConnectionsDeps) -> None:
    deps.connections.remove(connection_id)


def subscribe(connection_id: str, owner: str, task_id: str, deps: ConnectionsDeps) -> bool:
    """Record the subscription and push the current snapshot at once; False for an unknown task
    (or one of another owner: the caller cannot tell the two apart)."""
    state = deps.tasks.get(task_id)
    if state is None or state.owner != owner:
        _send(connection_id, {"error": f"task {task_id} not found"}, deps)
        return False
    deps.connections.subscribe(connection_id, task_id)
    _send(connection_id, state.snapshot().model_dump(mode="json"), deps)
    return True


def usage(connection_id: str, deps: ConnectionsDeps) -> None:
    """No route responses are configured, so the usage hint travels like every other message."""
    _send(connection_id, USAGE, deps)
