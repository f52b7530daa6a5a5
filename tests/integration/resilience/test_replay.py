"""A DLQ replay (issue 4): chunks dead-lettered by a deliberate fault are replayed with `busline dlq replay`
once the fault is gone, and the task that had FAILED finishes SUCCEEDED with exactly the fault-free result."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from busline.localcloud.testing import RunningCloud

from .resilience_support import (
    DRILL_MAX_RECEIVE_COUNT,
    DRILL_VISIBILITY_S,
    FAULT_MESSAGE,
    POISON_BOUND_S,
    Api,
    aws_client,
    duplicate_keys,
    expect,
    generate_orders,
    ledger,
    queue_depth,
    run_cli,
    set_fault_switch,
    table_rows,
    upload_task,
)

pytestmark = pytest.mark.integration

# 1,400 orders then the first 100 again: 2 chunks, the repeats (chunk 1) upsert rows of chunk 0
ROWS = generate_orders(unique=1400, repeated=100, salt=21)
CHUNKS = 2
REPLAY_BOUND_S = 60.0


def wait_for_depth(sqs: Any, queue_url: str, visible: int, timeout_s: float) -> tuple[int, int]:
    deadline = time.monotonic() + timeout_s
    depth = queue_depth(sqs, queue_url)
    while depth != (visible, 0) and time.monotonic() < deadline:
        time.sleep(0.5)
        depth = queue_depth(sqs, queue_url)
    return depth


def test_replayed_dlq_messages_finish_the_failed_task_exactly_once(drill_cloud: RunningCloud) -> None:
    endpoints = drill_cloud.endpoints
    endpoints_file = str(drill_cloud.data_dir / "endpoints.json")
    api = Api(endpoints)
    sqs = aws_client(endpoints, "sqs")
    dlq_url = endpoints["outputs"]["TransformDeadLetterQueueUrl"]
    expected = expect(ROWS)
    spec = upload_task(drill_cloud, "replay", ROWS)

    # Given a task whose two transform chunks failed every delivery and were dead-lettered
    set_fault_switch(endpoints, "transform:fail")
    try:
        task_id = api.submit(spec)
        failed = api.wait_terminal([task_id], timeout_s=POISON_BOUND_S)[task_id]
        assert wait_for_depth(sqs, dlq_url, CHUNKS, timeout_s=DRILL_VISIBILITY_S + 15) == (CHUNKS, 0)
    finally:
        set_fault_switch(endpoints, "none")
    assert failed["status"] == "FAILED", failed
    assert failed["error"]["phase"] == "transform"
    assert failed["error"]["chunk"] in (0, 1)
    assert FAULT_MESSAGE in failed["error"]["message"]

    # When `busline dlq show` lists them
    shown = run_cli("dlq", "show", "--task", task_id, "--json", "--endpoints", endpoints_file)
    # Then it names task, phase and chunk of each, with the task's error, and consumes nothing
    assert shown.returncode == 0, shown.stderr
    rows = json.loads(shown.stdout)
    assert sorted((row["taskId"], row["phase"], row["chunk"], row["detailType"]) for row in rows) == [
        (task_id, "transform", 0, "ChunkExtracted"),
        (task_id, "transform", 1, "ChunkExtracted"),
    ]
    assert {FAULT_MESSAGE in row["lastError"] for row in rows} == {True}
    assert {row["receiveCount"] >= DRILL_MAX_RECEIVE_COUNT for row in rows} == {True}
    assert queue_depth(sqs, dlq_url) == (CHUNKS, 0)
    table_view = run_cli("dlq", "show", "--task", task_id, "--endpoints", endpoints_file)
    assert table_view.returncode == 0, table_view.stderr
    assert f"{CHUNKS} message(s) shown; all are still in their DLQ." in table_view.stdout
    assert queue_depth(sqs, dlq_url) == (CHUNKS, 0)

    # When the fault is gone and `busline dlq replay --task` sends them back to the transform queue
    replayed = run_cli("dlq", "replay", "--task", task_id, "--endpoints", endpoints_file)
    started = time.monotonic()
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert f"moved {CHUNKS} message(s) in total" in replayed.stdout

    # Then the task finishes SUCCEEDED with the fault-free counts, rows and ledger, and the DLQ is empty
    # (the task is still FAILED until the replayed chunks are done: wait for it to leave that state and finish)
    final = api.wait_until(
        task_id, lambda task: task["status"] == "SUCCEEDED", "SUCCEEDED", timeout_s=REPLAY_BOUND_S
    )
    print(
        f"\nreplayed task {final['status']} {time.monotonic() - started:.1f} s after the replay: {final['counts']}"
    )
    assert final["status"] == "SUCCEEDED", final
    assert final["error"] is None
    assert final["counts"] == expected.counts()
    for phase in ("extract", "transform", "load"):
        assert final["phases"][phase] == {"done": CHUNKS, "total": CHUNKS, "status": "completed"}, phase
    table = spec["target"]["table"]
    assert table_rows(endpoints["postgres"], final["owner"], table) == expected.table
    assert duplicate_keys(endpoints["postgres"], final["owner"], table) == []
    assert ledger(endpoints["postgres"], task_id) == [(0, 1000 - _not_loaded(0)), (1, 500 - _not_loaded(1))]
    assert queue_depth(sqs, dlq_url) == (0, 0)


def _not_loaded(chunk: int) -> int:
    """Rows of `chunk` that are rejected or filtered, from the generator alone."""
    part = expect(ROWS[chunk * 1000 : (chunk + 1) * 1000])
    return part.rejected + part.filtered
