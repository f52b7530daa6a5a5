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


def push_at(pace: FrameThrottle, fake: FakeTime, task: str, times: list[float]) -> None:
    """Changes of `task` pushed at `times`, each at once."""
    for at in times:
        fake.now = at
        assert [(released, fake.now) for released in pace.release({task: False})] == [(task, at)]


def test_a_burst_is_paced_and_its_newest_state_is_the_last_frame() -> None:
    # Given 20 changes of one task within one second (one every 50 ms), 4 frames per second allowed
    fake = FakeTime()
    burst = [(0.05 * index, "t1", index + 1, False) for index in range(20)]
    # When they flow through the shard
    frames = replay(burst, throttle(fake), fake)
    # Then the first four go out at once; the fifth waits until the first push is a second old, and the
    # newest state (the 20th) follows when the second push is: never more than 4 frames in any second
    assert frames == [
        (0.0, "t1", 1), (0.05, "t1", 2), (0.1, "t1", 3), (pytest.approx(0.15), "t1", 4),
        (1.0, "t1", 5), (pytest.approx(1.05), "t1", 20),
    ]  # fmt: skip
    times = [at for at, _, _ in frames]
    assert all(len([at for at in times if start <= at < start + 1.0 - 1e-9]) <= 4 for start in times)
    assert max(fake.slept) == pytest.approx(0.8)


def test_status_changes_close_together_each_go_out_at_once() -> None:
    # Given a task's changes 30 to 200 ms apart, fewer than 4 in any second but the last two
    fake = FakeTime()
    changes = [(0.0, "t1", 1, False), (0.03, "t1", 2, False), (0.5, "t1", 3, False), (1.2, "t1", 4, False),
               (1.4, "t1", 5, False), (1.45, "t1", 6, False)]  # fmt: skip
    # When they flow through the shard / Then none waits
    assert replay(changes, throttle(fake), fake) == [(at, task, version) for at, task, version, _ in changes]
    assert fake.slept == []


def test_a_final_state_is_pushed_at_once_and_is_the_last_frame() -> None:
    # Given a task pushed 4 times in its first 150 ms, a change 50 ms later (throttled) and its final state
    # 50 ms after that
    fake = FakeTime()
    changes = [(0.05 * index, "t1", index + 1, False) for index in range(5)] + [(0.25, "t1", 6, True)]
    # When they flow through the shard
    frames = replay(changes, throttle(fake), fake)
    # Then the throttled change waited its turn, the final state came right after it and is the last frame
    assert frames[4:] == [(1.0, "t1", 5), (1.0, "t1", 6)]


def test_a_final_state_over_the_pace_is_not_delayed() -> None:
    # Given a task pushed 4 times just now
    fake = FakeTime()
    pace = throttle(fake)
    push_at(pace, fake, "t1", [0.0, 0.01, 0.02, 0.03])
    fake.now = 0.04
    # When its final state comes 10 ms later / Then it is released without any wait
    assert list(pace.release({"t1": True})) == ["t1"]
    assert fake.slept == []


def test_two_tasks_are_throttled_independently() -> None:
    # Given task a pushed 4 times in its first 30 ms
    fake = FakeTime()
    pace = throttle(fake)
    push_at(pace, fake, "a", [0.0, 0.01, 0.02, 0.03])
    fake.now = 0.1
    # When one batch holds a change of a (over its pace) and the first change of b
    released: list[tuple[str, float]] = [(task, fake.now) for task in pace.release({"a": False, "b": False})]
    # Then b goes out at once and a when its first push is a second old
    assert released == [("b", 0.1), ("a", 1.0)]
    # And b's pace is its own: its next three changes go out at once, the fourth waits until b's first
    # push is a second old
    push_at(pace, fake, "b", [1.0, 1.0, 1.0])
    assert [(task, fake.now) for task in pace.release({"b": False})] == [("b", pytest.approx(1.1))]


def test_delayed_tasks_go_out_in_the_order_they_fall_due() -> None:
    fake = FakeTime()
    pace = throttle(fake)
    push_at(pace, fake, "early", [0.0, 0.0, 0.0, 0.0])
    push_at(pace, fake, "late", [0.1, 0.1, 0.1, 0.1])
    fake.now = 0.2
    assert [(task, fake.now) for task in pace.release({"late": False, "early": False})] == [
        ("early", 1.0), ("late", pytest.approx(1.1)),
    ]
    assert sum(fake.slept) == pytest.approx(0.9)


def test_a_pace_below_one_frame_a_second_spaces_single_frames() -> None:
    # Given half a frame a second: one frame in any two seconds
    fake = FakeTime()
    pace = throttle(fake, frames_per_second=0.5)
    push_at(pace, fake, "t1", [0.0])
    fake.now = 0.5
    # When the task changes again half a second later / Then it waits until two seconds after its push
    assert [(task, fake.now) for task in pace.release({"t1": False})] == [("t1", 2.0)]
    assert (pace.burst, pace.window_s) == (1, 2.0)


def test_only_the_most_recent_tasks_are_remembered() -> None:
    # Given room for two tasks, and a, b, c pushed 4 times each in that order
    fake = FakeTime()
    pace = throttle(fake, capacity=2)
    for task in ("a", "b", "c"):
        push_at(pace, fake, task, [0.0, 0.0, 0.0, 0.0])
    # When a and c change again over their pace
    # Then a, forgotten, goes out at once (frames early, as after a cold start); c still waits
    assert [(task, fake.now) for task in pace.release({"a": False, "c": False})] == [("a", 0.0), ("c", 1.0)]


@pytest.mark.parametrize("frames_per_second", [0, -1])
def test_the_pace_must_be_positive(frames_per_second: float) -> None:
    with pytest.raises(ValueError, match="frames_per_second"):
        FrameThrottle(frames_per_second)
