"""TasksRepository against moto DynamoDB: listing, exactly-once counting, fan-in and recovery."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from busline_core.contracts import Phase, TaskStatus
from busline_core.errors import InvalidTask
from busline_core.tasks_repo import TasksRepository

from .conftest import Clock, Cloud


@pytest.fixture
def repo(cloud: Cloud, clock: Clock) -> TasksRepository:
    return TasksRepository(cloud.tasks_table, clock=clock)


def _item(repo: TasksRepository, task_id: str = "t1") -> dict[str, Any]:
    item = repo.get(task_id)
    assert item is not None, f"task {task_id} is missing"
    return item


def _new_task(repo: TasksRepository, clock: Clock, task_id: str = "t1", owner: str = "ana") -> None:
    repo.create(task_id, owner, "flights", '{"x": 1}', clock())


def _extracted(repo: TasksRepository, clock: Clock, chunks: int, read: int = 100) -> None:
    _new_task(repo, clock)
    repo.start_phase("t1", Phase.EXTRACT)
    repo.complete_extract("t1", chunks, read)


def test_create_then_get_returns_an_accepted_snapshot(repo: TasksRepository, clock: Clock) -> None:
    # Given a created task
    _new_task(repo, clock)
    # When it is read back
    snapshot = repo.snapshot(_item(repo))
    # Then it is ACCEPTED with every phase pending and zero counts
    assert snapshot.taskId == "t1"
    assert snapshot.owner == "ana"
    assert snapshot.pipeline == "flights"
    assert snapshot.status is TaskStatus.ACCEPTED
    assert snapshot.createdAt == "2026-11-22T10:00:00.000Z"
    assert snapshot.updatedAtMs == int(clock().timestamp() * 1000)
    assert snapshot.phases.model_dump() == {
        "extract": {"done": 0, "total": None, "status": "pending"},
        "transform": {"done": 0, "total": None, "status": "pending"},
        "load": {"done": 0, "total": None, "status": "pending"},
    }
    assert snapshot.counts.model_dump() == {"read": 0, "filtered": 0, "rejected": 0, "loaded": 0}
    assert snapshot.error is None
    assert repo.get("nope") is None


def test_list_by_owner_is_newest_first_and_paginates(repo: TasksRepository, clock: Clock) -> None:
    # Given five tasks of ana created one second apart, and one of someone else
    for index in range(5):
        _new_task(repo, clock, f"task-{index}")
        clock.now += timedelta(seconds=1)
    _new_task(repo, clock, "other", owner="bob")
    # When ana's tasks are listed two at a time
    pages = []
    token = None
    while True:
        items, token = repo.list_by_owner("ana", 2, token)
        pages.append([item["taskId"] for item in items])
        if token is None:
            break
    # Then they come newest first, 2 + 2 + 1, without bob's task
    flat = [task_id for page in pages for task_id in page]
    assert flat == ["task-4", "task-3", "task-2", "task-1", "task-0"]
    assert [len(page) for page in pages if page] == [2, 2, 1]


def test_list_by_owner_rejects_a_forged_token(repo: TasksRepository) -> None:
    # Given a token that this API never issued / When listing / Then InvalidTask names nextToken
    with pytest.raises(InvalidTask, match="nextToken"):
        repo.list_by_owner("ana", 2, "%%%not-base64%%%")


def test_record_chunk_done_counts_a_redelivered_chunk_once(repo: TasksRepository, clock: Clock) -> None:
    # Given a task in transform
    _extracted(repo, clock, chunks=3)
    # When chunk 1 is reported done twice
    first = repo.record_chunk_done("t1", Phase.TRANSFORM, 1, {"filtered": 2, "rejected": 1})
    second = repo.record_chunk_done("t1", Phase.TRANSFORM, 1, {"filtered": 2, "rejected": 1})
    # Then the second report is "already counted" and the counters moved once
    assert first is not None
    assert second is None
    snapshot = repo.snapshot(_item(repo))
    assert snapshot.phases.transform.done == 1
    assert snapshot.phases.transform.total == 3
    assert snapshot.counts.filtered == 2
    assert snapshot.counts.rejected == 1
    assert snapshot.status is TaskStatus.TRANSFORMING


def test_phase_completes_exactly_once_under_racing_callers(repo: TasksRepository, clock: Clock) -> None:
    # Given a task whose 2 transform chunks are done
    _extracted(repo, clock, chunks=2)
    repo.record_chunk_done("t1", Phase.TRANSFORM, 0, {"filtered": 0, "rejected": 0})
    repo.record_chunk_done("t1", Phase.TRANSFORM, 1, {"filtered": 0, "rejected": 0})
    # When 8 threads try to complete the transform phase at the same moment
    barrier = threading.Barrier(8)
    wins: list[bool] = []
    lock = threading.Lock()

    def race() -> None:
        barrier.wait()
        won = repo.try_complete_phase("t1", Phase.TRANSFORM)
        with lock:
            wins.append(won)

    threads = [threading.Thread(target=race) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then exactly one of them won, and the task moved on to LOADING
    assert sorted(wins) == [False] * 7 + [True]
    assert _item(repo)["status"] == TaskStatus.LOADING.value


def test_phase_does_not_complete_before_all_chunks_or_before_extract(
    repo: TasksRepository, clock: Clock
) -> None:
    # Given a task still extracting, with one transform chunk already done
    _new_task(repo, clock)
    repo.start_phase("t1", Phase.EXTRACT)
    repo.record_chunk_done("t1", Phase.TRANSFORM, 0, {"filtered": 0, "rejected": 0})
    # When someone tries to complete transform / Then it cannot: the total is unknown
    assert repo.try_complete_phase("t1", Phase.TRANSFORM) is False
    # Given extract then completes with 2 chunks / Then one done chunk is still not enough
    repo.complete_extract("t1", 2, 10)
    assert repo.try_complete_phase("t1", Phase.TRANSFORM) is False
    assert _item(repo)["status"] == TaskStatus.TRANSFORMING.value


def test_failed_chunk_that_later_succeeds_lets_the_task_succeed(repo: TasksRepository, clock: Clock) -> None:
    # Given a task with 2 chunks: chunk 0 transformed and loaded, chunk 1 failed its last delivery
    _extracted(repo, clock, chunks=2)
    repo.record_chunk_done("t1", Phase.TRANSFORM, 0, {"filtered": 0, "rejected": 0})
    repo.record_chunk_done("t1", Phase.LOAD, 0, {"loaded": 5})
    assert repo.fail("t1", Phase.TRANSFORM, 1, "boom") is True
    assert repo.fail("t1", Phase.TRANSFORM, 1, "boom again") is False  # already FAILED: not failed "again"
    failed = repo.snapshot(_item(repo))
    assert failed.status is TaskStatus.FAILED
    assert failed.error is not None and failed.error.model_dump() == {
        "phase": "transform",
        "chunk": 1,
        "message": "boom",
    }
    assert failed.phases.transform.status == "failed"
    assert repo.try_complete_phase("t1", Phase.TRANSFORM) is False
    # When the replayed chunk 1 succeeds (transform then load)
    recovered = repo.record_chunk_done("t1", Phase.TRANSFORM, 1, {"filtered": 1, "rejected": 0})
    # Then the task is back in its phase status, without error, and can complete
    assert recovered is not None and recovered["status"] == TaskStatus.TRANSFORMING.value
    assert "error" not in recovered
    assert repo.try_complete_phase("t1", Phase.TRANSFORM) is True
    repo.record_chunk_done("t1", Phase.LOAD, 1, {"loaded": 4})
    assert repo.try_complete_phase("t1", Phase.LOAD) is True
    final = repo.snapshot(_item(repo))
    assert final.status is TaskStatus.SUCCEEDED
    assert final.counts.model_dump() == {"read": 100, "filtered": 1, "rejected": 0, "loaded": 9}
    assert final.error is None


def test_two_failed_chunks_recover_only_when_both_succeed(repo: TasksRepository, clock: Clock) -> None:
    # Given two failed transform chunks
    _extracted(repo, clock, chunks=2)
    repo.fail("t1", Phase.TRANSFORM, 0, "first")
    repo.fail("t1", Phase.TRANSFORM, 1, "second")
    # When only one of them succeeds / Then the task stays FAILED with the first error
    item = repo.record_chunk_done("t1", Phase.TRANSFORM, 0, {"filtered": 0, "rejected": 0})
    assert item is not None and item["status"] == TaskStatus.FAILED.value
    error = repo.snapshot(item).error
    assert error is not None and error.message == "first"
    # When the other succeeds too / Then it recovers
    item = repo.record_chunk_done("t1", Phase.TRANSFORM, 1, {"filtered": 0, "rejected": 0})
    assert item is not None and item["status"] == TaskStatus.TRANSFORMING.value


def test_terminal_failure_never_recovers(repo: TasksRepository, clock: Clock) -> None:
    # Given a task failed terminally (unreadable source)
    _new_task(repo, clock)
    assert repo.fail("t1", Phase.EXTRACT, None, "source unreadable", terminal=True) is True
    # When a late chunk is counted / Then the task stays FAILED
    item = repo.record_chunk_done("t1", Phase.TRANSFORM, 0, {"filtered": 0, "rejected": 0})
    assert item is not None and item["status"] == TaskStatus.FAILED.value


def test_succeeded_task_cannot_fail(repo: TasksRepository, clock: Clock) -> None:
    # Given a task with zero chunks that completed every phase
    _extracted(repo, clock, chunks=0, read=0)
    assert repo.try_complete_phase("t1", Phase.TRANSFORM) is True
    assert repo.try_complete_phase("t1", Phase.LOAD) is True
    # When a stale failure arrives / Then it changes nothing
    assert repo.fail("t1", Phase.LOAD, 0, "late") is False
    assert _item(repo)["status"] == TaskStatus.SUCCEEDED.value


def test_timings_report_phase_durations(repo: TasksRepository, clock: Clock) -> None:
    # Given extract started at 10:00:00 and completed 2.5 s later
    _new_task(repo, clock)
    repo.start_phase("t1", Phase.EXTRACT)
    clock.now += timedelta(seconds=2.5)
    repo.complete_extract("t1", 1, 7)
    # When the snapshot is taken / Then extract shows its duration and counts
    snapshot = repo.snapshot(_item(repo))
    assert snapshot.timings["extract"].seconds == 2.5
    assert snapshot.timings["extract"].startedAt == "2026-11-22T10:00:00.000Z"
    assert snapshot.phases.extract.model_dump() == {"done": 1, "total": 1, "status": "completed"}
    assert snapshot.counts.read == 7
    assert list(snapshot.timings) == ["extract"]


def test_list_active_skips_finished_tasks(repo: TasksRepository, clock: Clock) -> None:
    # Given one running, one failed and one accepted task
    _new_task(repo, clock, "running")
    repo.start_phase("running", Phase.EXTRACT)
    _new_task(repo, clock, "failed")
    repo.fail("failed", Phase.EXTRACT, None, "x", terminal=True)
    _new_task(repo, clock, "accepted")
    # When the active tasks are listed / Then the failed one is not among them
    assert sorted(item["taskId"] for item in repo.list_active()) == ["accepted", "running"]
