"""Progress latency per write of the task, next to the per-frame figure the target is stated in.

The per-frame figure (client receive time minus the pushed snapshot's `updatedAtMs`) measures only the
newest write in each frame. A task may be written faster than the 4 frames a second that may go out, and
then some writes are shown by a later frame than their own: what a watcher waits for is the time from each
write to the first frame that shows it. This module measures that, and the floor no pacing can go below:
the fewest writes that must wait longer than a bound under any schedule of at most `frames_per_second`
frames in any second, chosen knowing every write time in advance, with instant delivery.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

Frame = tuple[float, float]  # (client receive time, the snapshot's updatedAtMs), both epoch milliseconds


def write_waits_ms(frames: Sequence[Frame], writes_ms: Sequence[float]) -> list[float]:
    """For each write after the first frame's snapshot (what `subscribe` answered), the wait until the
    first frame showing it or a later state. A write no frame shows is left out (the run ended first)."""
    if not frames:
        return []
    shown_from = frames[0][1]
    waits = []
    for written in sorted(writes_ms):
        if written <= shown_from:
            continue
        seen = [received for received, updated in frames if updated >= written]
        if seen:
            waits.append(min(seen) - written)
    return waits


def fewest_late_writes(writes_ms: Sequence[float], *, frames: int, window_ms: float, within_ms: float) -> int:
    """The fewest writes that wait more than `within_ms`, over every schedule of frames with at most `frames`
    of them in any `window_ms` that ends showing the last write, with instant delivery.

    A frame shows every write up to its time. Whichever write is the newest a frame shows, the frame is best
    sent as early as that allows: at that write, or once the frame `frames` back is `window_ms` old, if later
    (every wait it ends is shorter, and the next frame may go sooner). So a schedule is a choice of newest
    writes, and the search keeps, for each write, the (last frames' times, late writes) states no other state
    beats on both."""
    times = sorted(writes_ms)
    if not times:
        return 0

    def late(first: int, last: int, frame_ms: float) -> int:
        # writes first..last shown by a frame at frame_ms: those written before frame_ms - within_ms
        return bisect_left(times, frame_ms - within_ms, first, last + 1) - first

    def kept(states: list[tuple[tuple[float, ...], int]]) -> list[tuple[tuple[float, ...], int]]:
        front: list[tuple[tuple[float, ...], int]] = []
        for recent, count in sorted(states, key=lambda state: (state[1], state[0])):
            beaten = any(
                other_count <= count and len(other) <= len(recent)
                and all(mine >= theirs for mine, theirs in zip(recent[::-1], other[::-1], strict=False))
                for other, other_count in front
            )  # fmt: skip
            if not beaten:
                front.append((recent, count))
        return front

    # ending[j]: (times of the last frames, at most `frames` of them, the last showing times[j] as its newest
    # write; late writes among times[0..j])
    ending: list[list[tuple[tuple[float, ...], int]]] = []
    for newest in range(len(times)):
        first: tuple[float, ...] = (times[newest],)
        states = [(first, late(0, newest, times[newest]))]  # the first frame
        for previous in range(newest):
            for recent, count in ending[previous]:
                due = recent[0] + window_ms if len(recent) == frames else times[newest]
                frame_ms = max(times[newest], due)
                # a frame that lands after later writes shows them too: the schedule naming the later
                # write as its newest counts it right, and this one overcounts, so the minimum is unchanged
                states.append(((*recent, frame_ms)[-frames:], count + late(previous + 1, newest, frame_ms)))
        ending.append(kept(states))
    return min(count for _recent, count in ending[-1])


def per_write_section(
    runs: Sequence[tuple[Sequence[Frame], Sequence[float]]], *, frames_per_second: float, within_ms: float
) -> dict[str, Any]:
    """The waits of every write after each run's subscribe answer, pooled over `runs` ((frames, writes) of
    each task), and the fewest of those writes any pacing of `frames_per_second` leaves waiting > within_ms."""
    waits: list[float] = []
    late = writes = 0
    for frames, writes_ms in runs:
        waits += write_waits_ms(frames, writes_ms)
        after = [written for written in writes_ms if frames and written > frames[0][1]]
        writes += len(after)
        # the throttle's own rule (progress.FrameThrottle): at most N frames in any N / frames_per_second
        burst = max(1, int(frames_per_second))
        late += fewest_late_writes(after, frames=burst, window_ms=1000 * burst / frames_per_second, within_ms=within_ms)
    ordered = sorted(waits)

    def rank(fraction: float) -> float | None:  # nearest rank, as the per-frame figures
        if not ordered:
            return None
        return round(ordered[max(1, min(len(ordered), round(fraction * len(ordered) + 0.5))) - 1], 1)

    return {
        "p50": rank(0.50),
        "p95": rank(0.95),
        "samples": len(waits),
        "writes": writes,
        "fewestLate": late,
        "fewestLateShare": round(late / writes, 3) if writes else None,
        "withinMs": within_ms,
        "framesPerSecond": frames_per_second,
        "method": "for every write of a 1x task after the snapshot `subscribe` answered (the tasks table's "
        "stream), the wait until the first frame showing it; fewestLate: the fewest of those writes that "
        f"wait more than {within_ms:g} ms under any schedule of at most {frames_per_second:g} frames a second "
        "per task (in any second), chosen knowing every write in advance, delivered instantly",
    }
