"""progress.FrameThrottle on a fake clock: pushes paced per task, the newest and the final state never lost."""

from __future__ import annotations

import pytest
from busline_core.progress import FrameThrottle


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def throttle(fake: FakeTime, frames_per_second: float = 4, capacity: int = 1024) -> FrameThrottle:
    return FrameThrottle(frames_per_second, clock=fake.clock, sleep=fake.sleep, capacity=capacity)


def replay(changes: list[tuple[float, str, int, bool]], pace: FrameThrottle,
           fake: FakeTime) -> list[tuple[float, str, int]]:
    """Play (written at, task, version, final) changes through one stream shard: each invocation gets
    every change written by the time it starts, keeps the newest per task, and the next invocation
    starts only when this one is done (its waits included). Returns the frames: (pushed at, task, version)."""
    frames: list[tuple[float, str, int]] = []
    waiting = sorted(changes)
    while waiting:
        fake.now = max(fake.now, waiting[0][0])
        batch = [change for change in waiting if change[0] <= fake.now]
        waiting = waiting[len(batch):]
        newest = {task: (version, final) for _, task, version, final in batch}
        for task in pace.release({task: final for task, (_, final) in newest.items()}):
            frames.append((fake.now, task, newest[task][0]))
    return frames


def test_the_first_change_of_a_task_is_pushed_at_once() -> None:
    fake = FakeTime()
    fake.now = 100.0
    # Given a fresh throttle / When a task's first change comes / Then it is released without a wait
    assert list(throttle(fake).release({"t1": False})) == ["t1"]
    assert fake.slept == []


def test_a_burst_is_paced_and_its_newest_state_is_the_last_frame() -> None:
    # Given 20 changes of one task within one second (one every 50 ms), 4 frames per second allowed
    fake = FakeTime()
    burst = [(0.05 * index, "t1", index + 1, False) for index in range(20)]
    # When they flow through the shard
    frames = replay(burst, throttle(fake), fake)
    # Then the first goes out at once, at most 4 frames fall in any second, at least 1/4 s apart, and
    # the last frame is the 20th state: at most two intervals after its write (it arrived while the
    # invocation before it was waiting out an interval, then waited out its own)
    times = [at for at, _, _ in frames]
    assert frames[0] == (0.0, "t1", 1)
    assert len([at for at in times if at < 1.0]) <= 4
    assert all(later - earlier >= 0.25 - 1e-9 for earlier, later in zip(times, times[1:], strict=False))
    assert all(len([at for at in times if start <= at < start + 1.0]) <= 4 for start in times)
    assert frames[-1][2] == 20
    assert frames[-1][0] <= 0.95 + 2 * 0.25 + 1e-9
    assert [version for _, _, version in frames] == sorted(version for _, _, version in frames)
    assert len(frames) < 20
    assert max(fake.slept) <= 0.25


def test_a_final_state_is_pushed_at_once_and_is_the_last_frame() -> None:
    # Given a task pushed at t=0, a change 50 ms later (throttled) and its final state 100 ms later
    fake = FakeTime()
    changes = [(0.0, "t1", 1, False), (0.05, "t1", 2, False), (0.10, "t1", 3, True)]
    # When they flow through the shard
    frames = replay(changes, throttle(fake), fake)
    # Then the throttled change waited its turn, the final state came right after it and is the last frame
    assert frames == [(0.0, "t1", 1), (0.25, "t1", 2), (0.25, "t1", 3)]


def test_a_final_state_inside_the_interval_is_not_delayed() -> None:
    # Given a task pushed just now
    fake = FakeTime()
    pace = throttle(fake)
    assert list(pace.release({"t1": False})) == ["t1"]
    fake.now = 0.01
    # When its final state comes 10 ms later / Then it is released without any wait
    assert list(pace.release({"t1": True})) == ["t1"]
    assert fake.slept == []


def test_two_tasks_are_throttled_independently() -> None:
    # Given task a pushed at t=0
    fake = FakeTime()
    pace = throttle(fake)
    assert list(pace.release({"a": False})) == ["a"]
    fake.now = 0.1
    # When one batch holds a change of a (inside its interval) and the first change of b
    released: list[tuple[str, float]] = [(task, fake.now) for task in pace.release({"a": False, "b": False})]
    # Then b goes out at once and a when its interval ends
    assert released == [("b", 0.1), ("a", 0.25)]
    # And b's own interval started at its push: a change of b at 0.3 waits until 0.35
    fake.now = 0.3
    assert [(task, fake.now) for task in pace.release({"b": False})] == [("b", pytest.approx(0.35))]


def test_delayed_tasks_go_out_in_the_order_their_intervals_end() -> None:
    fake = FakeTime()
    pace = throttle(fake)
    for at, task in ((0.0, "early"), (0.1, "late")):
        fake.now = at
        assert list(pace.release({task: False})) == [task]
    fake.now = 0.2
    assert [(task, fake.now) for task in pace.release({"late": False, "early": False})] == [
        ("early", 0.25), ("late", pytest.approx(0.35)),
    ]
    assert sum(fake.slept) == pytest.approx(0.15)


def test_only_the_most_recent_tasks_are_remembered() -> None:
    # Given room for two tasks, and a, b, c pushed in that order
    fake = FakeTime()
    pace = throttle(fake, capacity=2)
    for task in ("a", "b", "c"):
        assert list(pace.release({task: False})) == [task]
    # When a and c change again inside their interval
    # Then a, forgotten, goes out at once (one frame early, as after a cold start); c still waits
    assert [(task, fake.now) for task in pace.release({"a": False, "c": False})] == [("a", 0.0), ("c", 0.25)]


@pytest.mark.parametrize("frames_per_second", [0, -1])
def test_the_pace_must_be_positive(frames_per_second: float) -> None:
    with pytest.raises(ValueError, match="frames_per_second"):
        FrameThrottle(frames_per_second)
