"""TasksRepository against moto DynamoDB: the item round trip, listing, and each event as one
conditional write (exactly-once counting, fan-in under races). Recovery after a failure, which takes
more than one event, is tested through TaskLifecycle."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from busline_core.bus import EventPublisher, Notifier
from busline_core.contracts import Phase, TaskStatus
from busline_core.lifecycle import TaskLifecycle
from busline_core.task_state import (
    ChunkCounted,
    ChunkFailedFinally,
    ExtractCompleted,
    ExtractStarted,
    PhaseCompleted,
    TaskAbandoned,
    TaskState,
)
from busline_core.tasks_repo import TasksRepository

from .conftest import BUS, Clock, Cloud


@pytest.fixture
def repo(cloud: Cloud, clock: Clock) -> TasksRepository:
    return TasksRepository(cloud.tasks_table, clock=clock)


@pytest.fixture
def lifecycle(cloud: Cloud, repo: TasksRepository) -> TaskLifecycle:
    return TaskLifecycle(repo, EventPublisher(cloud.events, BUS), Notifier(cloud.sns, cloud.topic_arn))


def _state(repo: TasksRepository, task_id: str = "t1") -> TaskState:
    state = repo.get(task_id)
    assert state is not None, f"task {task_id} is missing"
    return state


def _new_task(repo: TasksRepository, clock: Clock, task_id: str = "t1", owner: str = "ana") -> None:
    repo.create(TaskState.submitted(task_id, owner, "flights", '{"x": 1}', clock()))


def _extracted(repo: TasksRepository, clock: Clock, chunks: int, read: int = 100) -> None:
    _new_task(repo, clock)
    repo.apply("t1", ExtractStarted())
    repo.apply("t1", ExtractCompleted(chunks, read))


def _count(repo: TasksRepository, phase: Phase, chunk: int, **counts: int) -> bool:
    return repo.apply("t1", ChunkCounted(phase, chunk, counts)) is not None


def test_create_then_get_returns_an_accepted_snapshot(repo: TasksRepository, clock: Clock) -> None:
    # Given a created task
    _new_task(repo, clock)
    # When it is read back
    snapshot = _state(repo).snapshot()
    # Then it is ACCEPTED with every phase pending and zero counts
    assert (snapshot.taskId, snapshot.owner, snapshot.pipeline) == ("t1", "ana", "flights")
    assert snapshot.status is TaskStatus.ACCEPTED
    assert snapshot.createdAt == "2026-11-22T10:00:00.000Z"
    assert snapshot.updatedAtMs == int(clock().timestamp() * 1000)
    assert snapshot.phases.model_dump() == {
        "extract": {"done": 0, "total": None, "status": "pending"},
        "transform": {"done": 0, "total": None, "status": "pending"},
        "load": {"done": 0, "total": None, "status": "pending"},
    }
    assert snapshot.counts.model_dump() == {"read": 0, "filtered": 0, "rejected": 0, "loaded": 0, "deleted": 0}
    assert snapshot.error is None
    assert (snapshot.target, snapshot.correlationId) == (None, None)  # a spec without a target, no request
    assert repo.get("nope") is None


def test_the_snapshot_names_the_target_and_keeps_the_correlation_id(repo: TasksRepository, clock: Clock) -> None:
    # Given a task of a dynamodb target, submitted by request "req-7"
    spec = '{"target": {"kind": "dynamodb", "table": "orders-ana", "key": ["id"], "mode": "delete", "commit": "chunk"}}'
    repo.create(TaskState.submitted("t2", "ana", "adhoc", spec, clock(), correlation_id="req-7"))
    # When it is read back
    snapshot = _state(repo, "t2").snapshot()
    # Then its snapshot names both
    assert snapshot.target is not None
    assert (snapshot.target.model_dump(), snapshot.correlationId) == (
        {"kind": "dynamodb", "table": "orders-ana", "mode": "delete", "commit": "chunk"}, "req-7"
    )


def test_list_by_owner_is_newest_first_and_paginates(repo: TasksRepository, clock: Clock) -> None:
    # Given five tasks of ana created one second apart, and one of someone else
    for index in range(5):
        _new_task(repo, clock, f"task-{index}")
        clock.now += timedelta(seconds=1)
    _new_task(repo, clock, "other", owner="bob")
    # When ana's tasks are listed two at a time
    pages = []
    position = None
    while True:
        states, position = repo.list_by_owner("ana", 2, position)
        pages.append([state.task_id for state in states])
        if position is None:
            break
        assert TasksRepository.is_owner_position(position, "ana")
        assert not TasksRepository.is_owner_position(position, "bob")
    # Then they come newest first, 2 + 2 + 1, without bob's task
    flat = [task_id for page in pages for task_id in page]
    assert flat == ["task-4", "task-3", "task-2", "task-1", "task-0"]
    assert [len(page) for page in pages if page] == [2, 2, 1]


def test_a_filtered_listing_fills_its_pages_and_keeps_the_order(repo: TasksRepository, clock: Clock) -> None:
    # Given ten tasks of ana one second apart: every third a "daily" one, every other one of them FAILED
    for index in range(10):
        pipeline = "daily" if index % 3 == 0 else "flights"
        repo.create(TaskState.submitted(f"task-{index}", "ana", pipeline, "{}", clock()))
        if index in (3, 9):
            repo.apply(f"task-{index}", TaskAbandoned(Phase.EXTRACT, "broken"))
        clock.now += timedelta(seconds=1)
    # When the daily ones are listed two at a time, and the FAILED daily ones
    pages, position = [], None
    while True:
        states, position = repo.list_by_owner("ana", 2, position, pipeline="daily")
        pages.append([state.task_id for state in states])
        if position is None:
            break
    failed, _ = repo.list_by_owner("ana", 10, None, pipeline="daily", status=TaskStatus.FAILED)
    # Then each page is full, newest first, with only daily tasks (a last empty page is DynamoDB's way of
    # saying a page ended exactly at the end)
    assert [page for page in pages if page] == [["task-9", "task-6"], ["task-3", "task-0"]]
    assert [state.task_id for state in failed] == ["task-9", "task-3"]


def test_a_listing_shows_whole_tasks_though_the_index_holds_only_what_it_filters_on(
    repo: TasksRepository, cloud: Cloud, clock: Clock
) -> None:
    # Given a task with 3 of its 5 chunks counted (120 rows loaded)
    _extracted(repo, clock, 5)
    for chunk in range(3):
        assert _count(repo, Phase.LOAD, chunk, loaded=40)
    # When ana's tasks are listed
    [listed], _ = repo.list_by_owner("ana", 10, None)
    # Then the listed task is whole: counts and phases the owner index (template.yaml) does not hold
    assert (listed.counts.loaded, listed.phase(Phase.LOAD).done, listed.spec_json) == (120, 3, '{"x": 1}')
    indexed = cloud.tasks_table.query(
        IndexName="byOwner", KeyConditionExpression="#owner = :ana",
        ExpressionAttributeNames={"#owner": "owner"}, ExpressionAttributeValues={":ana": "ana"},
    )["Items"]  # fmt: skip
    assert sorted(indexed[0]) == ["createdAt", "owner", "pipeline", "status", "taskId"]


def test_a_listing_asks_again_for_unprocessed_keys_and_leaves_out_tasks_gone_since(
    repo: TasksRepository, cloud: Cloud, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given three tasks of ana; DynamoDB leaves the newest unprocessed at the first BatchGetItem, and the
    # oldest is deleted (its TTL) between the index query and the read
    for index in range(3):
        _new_task(repo, clock, f"task-{index}")
        clock.now += timedelta(seconds=1)
    client = cloud.tasks_table.meta.client
    batch_get_item, asked = client.batch_get_item, []

    def throttled_once(**request: object) -> dict[str, object]:
        keys = request["RequestItems"][cloud.tasks_table.name]["Keys"]  # type: ignore[index]
        asked.append(sorted(key["taskId"] for key in keys))
        if len(asked) == 1:
            cloud.tasks_table.delete_item(Key={"taskId": "task-0"})
            newest, *rest = keys
            answer = batch_get_item(RequestItems={cloud.tasks_table.name: {"Keys": rest}})
            answer["UnprocessedKeys"] = {cloud.tasks_table.name: {"Keys": [newest]}}
            return answer
        return batch_get_item(**request)

    monkeypatch.setattr(client, "batch_get_item", throttled_once)
    monkeypatch.setattr("busline_core.tasks_repo.time.sleep", lambda seconds: None)
    # When they are listed
    states, position = repo.list_by_owner("ana", 10, None)
    # Then the unprocessed key was asked again alone, and the page holds the two tasks left, newest first
    assert asked == [["task-0", "task-1", "task-2"], ["task-2"]]
    assert ([state.task_id for state in states], position) == (["task-2", "task-1"], None)


def test_a_redelivered_chunk_is_counted_once(repo: TasksRepository, clock: Clock) -> None:
    # Given a task in transform
    _extracted(repo, clock, chunks=3)
    # When chunk 1 is reported done twice
    first = _count(repo, Phase.TRANSFORM, 1, filtered=2, rejected=1)
    second = _count(repo, Phase.TRANSFORM, 1, filtered=2, rejected=1)
    # Then the second report is refused and the counters moved once
    assert (first, second) == (True, False)
    snapshot = _state(repo).snapshot()
    assert (snapshot.phases.transform.done, snapshot.phases.transform.total) == (1, 3)
    assert (snapshot.counts.filtered, snapshot.counts.rejected) == (2, 1)
    assert snapshot.status is TaskStatus.TRANSFORMING


def test_the_snapshot_time_never_goes_back_when_a_writer_stamped_earlier_writes_later(
    repo: TasksRepository, clock: Clock
) -> None:
    # Given a task in transform whose chunk 0 was counted at 10:00:05.000
    _extracted(repo, clock, chunks=3)
    clock.now += timedelta(seconds=5)
    assert _count(repo, Phase.TRANSFORM, 0, filtered=1)
    stamped = _state(repo).updated_at_ms
    # When another worker, whose clock read 7 ms earlier (two writes racing), counts chunk 1
    clock.now -= timedelta(milliseconds=7)
    counted = repo.apply("t1", ChunkCounted(Phase.TRANSFORM, 1, {"filtered": 2}))
    # Then its count is written, stamped 1 ms after the stored one rather than before it
    assert counted is not None
    state = _state(repo)
    assert (state.transform.done, state.counts.filtered) == (2, 3)
    assert state.updated_at_ms == stamped + 1
    assert counted.after.updated_at_ms == state.updated_at_ms
    # And a refusal of the event itself is still a refusal, whatever its clock: chunk 1 again
    assert repo.apply("t1", ChunkCounted(Phase.TRANSFORM, 1, {"filtered": 2})) is None
    assert _state(repo).counts.filtered == 3


def test_phase_completes_exactly_once_under_racing_callers(repo: TasksRepository, clock: Clock) -> None:
    # Given a task whose 2 transform chunks are done
    _extracted(repo, clock, chunks=2)
    _count(repo, Phase.TRANSFORM, 0)
    _count(repo, Phase.TRANSFORM, 1)
    # When 8 threads try to complete the transform phase at the same moment
    barrier = threading.Barrier(8)
    wins: list[bool] = []
    lock = threading.Lock()

    def race() -> None:
        barrier.wait()
        won = repo.apply("t1", PhaseCompleted(Phase.TRANSFORM)) is not None
        with lock:
            wins.append(won)

    threads = [threading.Thread(target=race) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then exactly one of them won, and the task moved on to LOADING
    assert sorted(wins) == [False] * 7 + [True]
    assert _state(repo).status is TaskStatus.LOADING


def test_chunks_counted_concurrently_are_all_counted(repo: TasksRepository, clock: Clock) -> None:
    # Given a task with 40 transform chunks
    _extracted(repo, clock, chunks=40)
    # When 8 threads count all 40 chunks, each chunk twice
    barrier = threading.Barrier(8)

    def count(worker: int) -> None:
        barrier.wait()
        for chunk in range(40):
            if chunk % 4 == worker % 4:
                _count(repo, Phase.TRANSFORM, chunk, filtered=1)

    threads = [threading.Thread(target=count, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then every chunk counts exactly once
    state = _state(repo)
    assert (state.transform.done, len(state.transform.chunks), state.counts.filtered) == (40, 40, 40)


def test_phase_does_not_complete_before_all_chunks_or_before_extract(repo: TasksRepository, clock: Clock) -> None:
    # Given a task still extracting, with one transform chunk already done
    _new_task(repo, clock)
    repo.apply("t1", ExtractStarted())
    _count(repo, Phase.TRANSFORM, 0)
    # When someone tries to complete transform / Then it cannot: the total is unknown
    assert repo.apply("t1", PhaseCompleted(Phase.TRANSFORM)) is None
    # Given extract then completes with 2 chunks / Then one done chunk is still not enough
    repo.apply("t1", ExtractCompleted(2, 10))
    assert repo.apply("t1", PhaseCompleted(Phase.TRANSFORM)) is None
    assert _state(repo).status is TaskStatus.TRANSFORMING


def test_a_failed_chunk_that_later_succeeds_lets_the_task_succeed(
    repo: TasksRepository, lifecycle: TaskLifecycle, clock: Clock, cloud: Cloud
) -> None:
    # Given a task with 2 chunks: chunk 0 transformed and loaded, chunk 1 failed its last delivery
    _extracted(repo, clock, chunks=2)
    lifecycle.chunk_counted(ChunkCounted(Phase.TRANSFORM, 0, {"filtered": 0, "rejected": 0}), "t1")
    lifecycle.chunk_counted(ChunkCounted(Phase.LOAD, 0, {"loaded": 5}), "t1")
    assert lifecycle.final_delivery_failed("t1", Phase.TRANSFORM, 1, "boom") is True
    assert lifecycle.final_delivery_failed("t1", Phase.TRANSFORM, 1, "boom again") is False  # already FAILED
    failed = _state(repo).snapshot()
    assert failed.status is TaskStatus.FAILED
    assert failed.error is not None
    assert failed.error.model_dump() == {"phase": "transform", "chunk": 1, "message": "boom"}
    assert failed.phases.transform.status == "failed"
    assert repo.apply("t1", PhaseCompleted(Phase.TRANSFORM)) is None
    # When the replayed chunk 1 succeeds: transform, then load
    lifecycle.chunk_counted(ChunkCounted(Phase.TRANSFORM, 1, {"filtered": 1, "rejected": 0}), "t1")
    # Then the task went back to its phase and completed transform without error
    recovered = _state(repo)
    assert (recovered.status, recovered.error, recovered.transform.completed) == (TaskStatus.LOADING, None, True)
    lifecycle.chunk_counted(ChunkCounted(Phase.LOAD, 1, {"loaded": 4}), "t1")
    final = _state(repo).snapshot()
    assert final.status is TaskStatus.SUCCEEDED
    assert final.counts.model_dump() == {"read": 100, "filtered": 1, "rejected": 0, "loaded": 9, "deleted": 0}
    assert final.error is None
    assert [note["status"] for note in cloud.notifications()] == ["FAILED", "SUCCEEDED"]


def test_two_failed_chunks_recover_only_when_both_succeed(
    repo: TasksRepository, lifecycle: TaskLifecycle, clock: Clock
) -> None:
    # Given two failed transform chunks
    _extracted(repo, clock, chunks=2)
    lifecycle.final_delivery_failed("t1", Phase.TRANSFORM, 0, "first")
    lifecycle.final_delivery_failed("t1", Phase.TRANSFORM, 1, "second")
    # When only one of them succeeds / Then the task stays FAILED with the first error
    lifecycle.chunk_counted(ChunkCounted(Phase.TRANSFORM, 0, {}), "t1")
    state = _state(repo)
    assert state.status is TaskStatus.FAILED
    assert state.error is not None and state.error.message == "first"
    # When the other succeeds too / Then it recovers, and transform completes
    lifecycle.chunk_counted(ChunkCounted(Phase.TRANSFORM, 1, {}), "t1")
    assert _state(repo).status is TaskStatus.LOADING


def test_terminal_failure_never_recovers(repo: TasksRepository, lifecycle: TaskLifecycle, clock: Clock) -> None:
    # Given a task failed terminally (unreadable source)
    _new_task(repo, clock)
    assert lifecycle.abandon("t1", Phase.EXTRACT, "source unreadable") is True
    # When a late chunk is counted / Then the task stays FAILED
    lifecycle.chunk_counted(ChunkCounted(Phase.TRANSFORM, 0, {}), "t1")
    assert _state(repo).status is TaskStatus.FAILED


def test_a_succeeded_task_cannot_fail(repo: TasksRepository, clock: Clock) -> None:
    # Given a task with zero chunks that completed every phase
    _extracted(repo, clock, chunks=0, read=0)
    assert repo.apply("t1", PhaseCompleted(Phase.TRANSFORM)) is not None
    assert repo.apply("t1", PhaseCompleted(Phase.LOAD)) is not None
    # When a stale failure arrives / Then it changes nothing
    assert repo.apply("t1", ChunkFailedFinally(Phase.LOAD, 0, "late")) is None
    assert repo.apply("t1", TaskAbandoned(Phase.LOAD, "late")) is None
    assert _state(repo).status is TaskStatus.SUCCEEDED


def test_timings_report_phase_durations(repo: TasksRepository, clock: Clock) -> None:
    # Given extract started at 10:00:00 and completed 2.5 s later
    _new_task(repo, clock)
    repo.apply("t1", ExtractStarted())
    clock.now += timedelta(seconds=2.5)
    repo.apply("t1", ExtractCompleted(1, 7))
    # When the snapshot is taken / Then extract shows its duration and counts
    snapshot = _state(repo).snapshot()
    assert snapshot.timings["extract"].seconds == 2.5
    assert snapshot.timings["extract"].startedAt == "2026-11-22T10:00:00.000Z"
    assert snapshot.phases.extract.model_dump() == {"done": 1, "total": 1, "status": "completed"}
    assert snapshot.counts.read == 7
    assert list(snapshot.timings) == ["extract"]


def test_list_active_skips_finished_tasks(repo: TasksRepository, clock: Clock) -> None:
    # Given one running, one failed and one accepted task
    _new_task(repo, clock, "running")
    repo.apply("running", ExtractStarted())
    _new_task(repo, clock, "failed")
    repo.apply("failed", TaskAbandoned(Phase.EXTRACT, "x"))
    _new_task(repo, clock, "accepted")
    # When the active tasks are listed / Then the failed one is not among them
    assert sorted(state.task_id for state in repo.list_active()) == ["accepted", "running"]


class _RecordingTable:
    """A table that holds nothing and records the keys it was asked for."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def get_item(self, Key: dict[str, str], ConsistentRead: bool) -> dict[str, object]:
        self.asked.append(Key["taskId"])
        return {}


def test_an_id_longer_than_any_we_issue_is_no_task_and_dynamodb_is_not_asked() -> None:
    # Given a table that records its reads
    table = _RecordingTable()
    repo = TasksRepository(table)
    # When ids of 64, 65 and 10,000 characters are read
    found = [repo.get("a" * length) for length in (64, 65, 10_000)]
    # Then none is a task, and only the 64-character one reached DynamoDB (which refuses keys over 2,048 bytes)
    assert found == [None, None, None]
    assert table.asked == ["a" * 64]


def test_a_batch_of_chunks_is_counted_in_one_write_or_not_at_all(repo: TasksRepository, clock: Clock) -> None:
    # Given a task in transform with 4 chunks, chunk 2 counted already
    _extracted(repo, clock, chunks=4)
    assert _count(repo, Phase.TRANSFORM, 2, filtered=5)
    batch = [ChunkCounted(Phase.TRANSFORM, chunk, {"filtered": chunk + 1}) for chunk in (0, 1, 3)]
    # When chunks 0, 1 and 3 are counted as one batch
    counted = repo.apply("t1", ChunkCounted.combined(batch))
    # Then one write counts all three: done 4, their counts added to chunk 2's
    assert counted is not None
    state = _state(repo)
    assert (state.transform.done, sorted(state.transform.chunks), state.counts.filtered) == (4, [0, 1, 2, 3], 12)
    # And a batch naming a counted chunk among new ones is refused whole, counting none of them
    _new_task(repo, clock, task_id="t2")
    repo.apply("t2", ExtractCompleted(3, 30))
    assert repo.apply("t2", ChunkCounted(Phase.TRANSFORM, 1, {"filtered": 1})) is not None
    assert repo.apply("t2", ChunkCounted.combined([ChunkCounted(Phase.TRANSFORM, c, {"filtered": 1}) for c in (0, 1)])) is None
    refused = _state(repo, "t2")
    assert (refused.transform.done, sorted(refused.transform.chunks), refused.counts.filtered) == (1, [1], 1)


def test_a_combined_count_names_each_chunk_once_and_one_phase() -> None:
    with pytest.raises(ValueError, match="each chunk once"):
        ChunkCounted.combined([ChunkCounted(Phase.LOAD, 1), ChunkCounted(Phase.LOAD, 1)])
    with pytest.raises(ValueError, match="one phase"):
        ChunkCounted.combined([ChunkCounted(Phase.LOAD, 1), ChunkCounted(Phase.TRANSFORM, 2)])
    combined = ChunkCounted.combined([
        ChunkCounted(Phase.LOAD, 4, {"loaded": 3}, "2026-12-02T10:00:02+00:00"),
        ChunkCounted(Phase.LOAD, 2, {"loaded": 5, "rejected": 1}, "2026-12-02T10:00:01+00:00"),
    ])
    assert combined == ChunkCounted(
        Phase.LOAD, 4, {"loaded": 8, "rejected": 1}, "2026-12-02T10:00:01+00:00", frozenset({2})
    )


def test_a_batch_with_a_chunk_counted_before_counts_the_others_one_by_one(
    repo: TasksRepository, lifecycle: TaskLifecycle, clock: Clock, cloud: Cloud
) -> None:
    # Given a task whose 3 chunks are transformed, load chunk 1 counted by an earlier delivery
    _extracted(repo, clock, chunks=3)
    lifecycle.chunks_counted([ChunkCounted(Phase.TRANSFORM, chunk, {"filtered": 0}) for chunk in range(3)], "t1")
    assert _state(repo).status is TaskStatus.LOADING
    lifecycle.chunk_counted(ChunkCounted(Phase.LOAD, 1, {"loaded": 10}), "t1")
    # When a batch of load chunks 0, 1 and 2 is counted
    after = lifecycle.chunks_counted([ChunkCounted(Phase.LOAD, chunk, {"loaded": 10}) for chunk in range(3)], "t1")
    # Then chunks 0 and 2 are counted on their own, chunk 1 once, and the task succeeds once
    assert after is not None
    final = _state(repo).snapshot()
    assert (final.status, final.counts.loaded) == (TaskStatus.SUCCEEDED, 30)
    assert [note["status"] for note in cloud.notifications()] == ["SUCCEEDED"]
