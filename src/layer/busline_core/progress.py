"""Live progress: the WebSocket routes (connect, subscribe, disconnect) and the pushes that follow
every change of a task (from the tasks table's stream).

A connection belongs to whoever signed in on $connect: it may subscribe only to that owner's tasks
(another owner's task answers exactly like a missing one), and pushes go only to the owner's connections.

Pushes are paced per task by `FrameThrottle`: the stream mapping has no batching window, so a change
reaches its watchers at once, and the throttle keeps a busy task from flooding them. A change that had to
wait is pushed as the task stands after the wait (one consistent read), so the frame is as fresh as the
pace allows; the stream records of what that read already showed are then old news and send nothing.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
from typing import Any, Final

from .connections import Subscriber
from .deps import ConnectionsDeps, StreamDeps
from .task_state import TaskState
from .tasks_repo import state_from_stream_image

USAGE = {"error": 'unknown action; send {"action": "subscribe", "taskId": "<task id>"}'}
DEFAULT_FRAMES_PER_SECOND: Final = 4
THROTTLE_MEMORY: Final = 1024  # tasks whose last push a warm container remembers
WATCHERS_FRESH_SECONDS: Final = 1.0


class FrameThrottle:
    """At most `frames_per_second` pushes per task in any second, without ever holding back the newest state.

    A task's change goes out at once unless `burst` pushes of it (the pace, whole frames, at least one) fall
    within the last `window_s` (burst / frames_per_second: one second at 4 frames a second). So changes that
    come close together, as a task's status changes do (EXTRACTING then TRANSFORMING, the last load then
    COMMITTING), each go out at once, and only a task changing faster than the pace waits. A change that
    has to wait is not dropped: `release` sleeps until the oldest of those pushes leaves the window and then
    hands it over. That wait is what keeps the newest frame, because a stream shard is processed by one
    invocation at a time, in order: the next batch only starts once this one is pushed. A final state
    (SUCCEEDED, FAILED) is never delayed, and since it is the newest state of its task in the batch and
    later batches wait for this one, it is also the last frame.

    The pushes per task live in the warm container, for the `capacity` most recently pushed tasks; a cold
    start (or an evicted task) only means frames sooner than the pace would allow.
    """

    def __init__(
        self,
        frames_per_second: float = DEFAULT_FRAMES_PER_SECOND,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        capacity: int = THROTTLE_MEMORY,
    ) -> None:
        if frames_per_second <= 0:
            raise ValueError(f"frames_per_second must be positive, got {frames_per_second}")
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.burst = max(1, int(frames_per_second))
        self.window_s = self.burst / frames_per_second
        self._clock = clock
        self._sleep = sleep
        self._capacity = capacity
        self._pushes: OrderedDict[str, deque[float]] = OrderedDict()
        self._last_shown: OrderedDict[str, int] = OrderedDict()

    def _due(self, task_id: str) -> float | None:
        """When the task may be pushed next; None: now."""
        pushes = self._pushes.get(task_id)
        if pushes is None or len(pushes) < self.burst:
            return None
        return pushes[0] + self.window_s

    def would_wait(self, task_id: str, final: bool) -> bool:
        """Whether `release` would hold this task back now (a non-final change over the pace)."""
        due = self._due(task_id)
        return not final and due is not None and self._clock() < due

    def shown(self, task_id: str, updated_at_ms: int) -> None:
        """Remember the snapshot time of the task's last pushed state."""
        self._last_shown[task_id] = updated_at_ms
        self._last_shown.move_to_end(task_id)
        while len(self._last_shown) > self._capacity:
            self._last_shown.popitem(last=False)

    def already_shown(self, task_id: str, updated_at_ms: int) -> bool:
        """A state no newer than one pushed already (stamps of one task never go back: tasks_repo.apply)."""
        last = self._last_shown.get(task_id)
        return last is not None and updated_at_ms <= last

    def release(self, finals: Mapping[str, bool]) -> Iterator[str]:
        """The task ids of one batch (each mapped to whether its state is final), each yielded when it
        may be pushed: final and unthrottled ones at once, the others in the order they fall due.
        A task counts as pushed when it is yielded, so push it before asking for the next."""
        now = self._clock()
        delayed: list[tuple[float, str]] = []
        for task_id, final in finals.items():
            due = self._due(task_id)
            if final or due is None or now >= due:
                self._pushed(task_id)
                yield task_id
            else:
                delayed.append((due, task_id))
        for due, task_id in sorted(delayed):
            wait_s = due - self._clock()
            if wait_s > 0:
                self._sleep(wait_s)
            self._pushed(task_id)
            yield task_id

    def _pushed(self, task_id: str) -> None:
        pushes = self._pushes.get(task_id)
        if pushes is None:
            pushes = self._pushes[task_id] = deque(maxlen=self.burst)
        pushes.append(self._clock())
        self._pushes.move_to_end(task_id)
        while len(self._pushes) > self._capacity:
            self._pushes.popitem(last=False)


class WatcherCache:
    """Who watches each task, as this warm container last read it from the connections table.

    A task's watchers are read again once they are `fresh_s` old, and always for a final state, so every
    watcher gets the last frame. A subscriber added in between got the current snapshot from `subscribe`
    and misses at most `fresh_s` of frames after it; the read saved is most of a busy task's queries, and
    its time on the way to every frame.

    A task nobody watched is read again at its next change: its first watcher usually subscribes just after
    the submit, when the task's first changes have already found nobody, and a remembered "nobody" would
    hide every change of the next second from it (the whole extract of the flights demo), or until the
    task's next change, if it then pauses.
    """

    def __init__(
        self,
        fresh_s: float = WATCHERS_FRESH_SECONDS,
        *,
        clock: Callable[[], float] = time.monotonic,
        capacity: int = THROTTLE_MEMORY,
    ) -> None:
        self.fresh_s = fresh_s
        self._clock = clock
        self._capacity = capacity
        self._read: OrderedDict[str, tuple[float, list[Subscriber]]] = OrderedDict()

    def of(self, task_id: str, final: bool, read: Callable[[], list[Subscriber]]) -> list[Subscriber]:
        now = self._clock()
        cached = self._read.get(task_id)
        if not final and cached is not None and cached[1] and now - cached[0] < self.fresh_s:
            return cached[1]
        watchers = read()
        self._read[task_id] = (now, watchers)
        self._read.move_to_end(task_id)
        while len(self._read) > self._capacity:
            self._read.popitem(last=False)
        return watchers

    def gone(self, task_id: str, connection_id: str) -> None:
        """A connection that refused a push (and was removed from the table) gets no more of this task's."""
        cached = self._read.get(task_id)
        if cached is not None:
            self._read[task_id] = (cached[0], [s for s in cached[1] if s.connection_id != connection_id])


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


def push_progress(
    new_images: list[dict[str, Any]],
    deps: StreamDeps,
    throttle: FrameThrottle | None = None,
    watchers: WatcherCache | None = None,
) -> int:
    """Push the newest snapshot of each task in a stream batch to its subscribers, paced by `throttle`
    (none: every task at once), with the subscribers `watchers` remembers (none: read each time); returns
    messages sent."""
    newest = _newest_per_task(new_images)
    if throttle is not None:
        newest = {
            task_id: state for task_id, state in newest.items()
            if not throttle.already_shown(task_id, state.updated_at_ms)
        }
    receivers: dict[str, list[str]] = {}
    for task_id, state in newest.items():
        # subscribe() already refused other owners; checking again here keeps a stray row from leaking
        subscribers = (
            watchers.of(task_id, state.is_final, partial(deps.connections.for_task, task_id))
            if watchers is not None
            else deps.connections.for_task(task_id)
        )
        watching = [s.connection_id for s in subscribers if s.owner == state.owner]
        # Unwatched tasks neither wait nor use up their pace: a later subscriber gets the current
        # snapshot from subscribe() and the next change at once.
        if watching:
            receivers[task_id] = watching
    finals = {task_id: newest[task_id].is_final for task_id in receivers}
    if throttle is None:
        order, held_back = iter(finals), set()
    else:
        held_back = {task_id for task_id, final in finals.items() if throttle.would_wait(task_id, final)}
        order = throttle.release(finals)
    sent = 0
    for task_id in order:
        state = newest[task_id]
        if task_id in held_back:
            # Newer changes landed during the wait (their records queue behind this invocation): push the
            # task as it stands now rather than a frame already a wait old.
            stored = deps.tasks.get(task_id)
            if stored is not None and stored.owner == state.owner and stored.updated_at_ms > state.updated_at_ms:
                state = stored
        payload = state.snapshot().model_dump(mode="json")
        for connection_id in receivers[task_id]:
            if _send(connection_id, payload, deps):
                sent += 1
            elif watchers is not None:
                watchers.gone(task_id, connection_id)
        if throttle is not None:
            throttle.shown(task_id, state.updated_at_ms)
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
    # A change stored between the read above and the subscription was pushed to the watchers of that moment,
    # not to this one; were it the final state, nothing would follow it. Read again now that the stream finds
    # this connection for every later change.
    state = deps.tasks.get(task_id) or state
    _send(connection_id, state.snapshot().model_dump(mode="json"), deps)
    return True


def usage(connection_id: str, deps: ConnectionsDeps) -> None:
    """No route responses are configured, so the usage hint travels like every other message."""
    _send(connection_id, USAGE, deps)
