"""Atomic commits and cancel (issue 11): a task that fails in load leaves its target exactly as it was, and a
DLQ replay then finishes it with exact rows; a task cancelled in any phase ends CANCELLED, its last WebSocket
frame says so, and its target and the owner's schema are as before it started."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from busline_core.tenancy import owner_table
from psycopg import sql
from websockets.sync.client import connect

from busline.localcloud.testing import RunningCloud, websocket_url

from .resilience_support import (
    DRILL_VISIBILITY_S,
    POISON_BOUND_S,
    TERMINAL,
    Api,
    aws_client,
    checksum,
    csv_bytes,
    expect,
    generate_orders,
    ledger,
    queue_depth,
    region_rows,
    run_cli,
    serving_files,
    set_fault_switch,
    staging_tables,
    table_rows,
    upload_task,
)
from .test_replay import wait_for_depth

pytestmark = pytest.mark.integration

# 1,400 orders then the first 100 again: 2 chunks of the drill cloud's 1,000 rows
FIRST = generate_orders(unique=1400, repeated=100, salt=31)
SECOND = generate_orders(unique=1600, repeated=0, salt=32)  # other values for keys 1..1400, and 200 new keys
CHUNKS = 2


def _seeded_table(drill_cloud: RunningCloud, api: Api, name: str) -> tuple[str, str, dict[int, tuple[Any, ...]]]:
    """A table loaded by a first, fault-free task: (table, owner, its rows)."""
    spec = upload_task(drill_cloud, name, FIRST)
    seeded = api.wait_terminal([api.submit(spec)], timeout_s=60)
    (snapshot,) = seeded.values()
    assert snapshot["status"] == "SUCCEEDED", snapshot
    table, owner = spec["target"]["table"], snapshot["owner"]
    rows = table_rows(drill_cloud.endpoints["postgres"], owner, table)
    assert rows == expect(FIRST).table
    return table, owner, rows


def test_a_task_failed_in_load_leaves_the_target_unchanged_and_a_replay_finishes_it(drill_cloud: RunningCloud) -> None:
    endpoints = drill_cloud.endpoints
    api = Api(endpoints)
    database = endpoints["postgres"]
    sqs = aws_client(endpoints, "sqs")
    dlq_url = endpoints["outputs"]["LoadDeadLetterQueueUrl"]
    # Given a table holding a first task's 1,400 rows
    table, owner, before_rows = _seeded_table(drill_cloud, api, "atomic")
    before = checksum(database, owner, table)
    # When a second task into it fails every load delivery until its chunks are dead-lettered
    set_fault_switch(endpoints, "load:fail")
    try:
        task_id = api.submit(upload_task(drill_cloud, "atomic", SECOND, table=table))
        failed = api.wait_terminal([task_id], timeout_s=POISON_BOUND_S)[task_id]
        assert wait_for_depth(sqs, dlq_url, CHUNKS, timeout_s=DRILL_VISIBILITY_S + 15) == (CHUNKS, 0)
    finally:
        set_fault_switch(endpoints, "none")
    # Then the task FAILED in load, and the table is byte for byte what it was
    assert (failed["status"], failed["error"]["phase"]) == ("FAILED", "load"), failed
    assert checksum(database, owner, table) == before
    # When its dead letters are replayed
    replayed = run_cli("dlq", "replay", "--task", task_id, "--endpoints", str(drill_cloud.data_dir / "endpoints.json"))
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    # Then it SUCCEEDED, its rows all landed at once, each key once, with the counts of a fault-free run
    final = api.wait_until(task_id, lambda task: task["status"] == "SUCCEEDED", "SUCCEEDED", timeout_s=60)
    expected = expect(SECOND)
    assert final["counts"] == expected.counts()
    assert final["committedAt"] is not None
    assert table_rows(database, owner, table) == {**before_rows, **expected.table}
    assert [chunk for chunk, _ in ledger(database, task_id)] == [0, 1]
    assert staging_tables(database, owner) == []
    assert queue_depth(sqs, dlq_url) == (0, 0)


@contextmanager
def _recording_frames(endpoints: dict[str, Any], api: Api) -> Iterator[tuple[list[dict[str, Any]], list[str]]]:
    """Subscribe (once the task id is appended to the second list) and record every frame until a terminal one."""
    frames: list[dict[str, Any]] = []
    subscribe_to: list[str] = []
    ready = threading.Event()

    def record() -> None:
        with connect(websocket_url(endpoints, api.token), open_timeout=30) as socket:
            ready.set()
            while not subscribe_to:
                time.sleep(0.05)
            socket.send(json.dumps({"action": "subscribe", "taskId": subscribe_to[0]}))
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                try:
                    message = json.loads(socket.recv(timeout=1))
                except TimeoutError:
                    continue
                if message.get("taskId") == subscribe_to[0]:
                    frames.append(message)
                    if message.get("status") in TERMINAL:
                        return

    thread = threading.Thread(target=record, daemon=True)
    thread.start()
    assert ready.wait(30)
    yield frames, subscribe_to
    thread.join(timeout=95)


@contextmanager
def _holding_the_target(database: str, owner: str, table: str) -> Iterator[None]:
    """An operator's long transaction on the target: chunk loads wait on it, so the task stays LOADING."""
    with psycopg.connect(database, autocommit=False) as connection:
        connection.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(owner_table(owner, table)))
        yield
        connection.rollback()


@pytest.mark.parametrize("phase", ["extract", "transform", "load"])
def test_a_task_cancelled_in_each_phase_ends_cancelled_and_leaves_everything_as_it_was(
    drill_cloud: RunningCloud, phase: str
) -> None:
    endpoints = drill_cloud.endpoints
    api = Api(endpoints)
    database = endpoints["postgres"]
    run = uuid.uuid4().hex[:8]
    # Given a seeded table, and a second task into it held in `phase`: extract reads its source from a
    # server that answers only when released, transform reads its join from it, load waits on a lock
    table, owner, _ = _seeded_table(drill_cloud, api, f"cancel_{phase}")
    before = checksum(database, owner, table)
    spec = upload_task(drill_cloud, f"cancel_{phase}", SECOND, table=table)
    released = threading.Event()
    served = {f"/{run}/orders.csv": csv_bytes(SECOND), f"/{run}/regions.csv": csv_bytes(region_rows())}
    with serving_files(served, gate=released) as http_base, _recording_frames(endpoints, api) as (frames, subscribe):
        if phase == "extract":
            spec["source"]["uri"] = f"{http_base}/{run}/orders.csv"
        if phase == "transform":
            spec["joins"][0]["uri"] = f"{http_base}/{run}/regions.csv"
        holding = _holding_the_target(database, owner, table) if phase == "load" else _nothing()
        with holding:
            task_id = api.submit(spec)
            subscribe.append(task_id)
            api.wait_until(task_id, lambda task: task["status"] == f"{phase.upper()}ING",
                           f"in {phase}", timeout_s=30)  # fmt: skip
            # When its owner cancels it
            status, answer = api.cancel(task_id)
            # Then it is CANCELLED at once
            assert (status, answer["status"]) == (202, "CANCELLED"), answer
            released.set()
        # And a second cancel is refused: it is no longer running
        again, refusal = api.cancel(task_id)
        assert again == 409, refusal
        # And what was in flight when it was cancelled changes nothing (one visibility timeout, then some)
        time.sleep(DRILL_VISIBILITY_S + 5)
    final = api.task(task_id)
    assert final["status"] == "CANCELLED", final
    assert frames and frames[-1]["status"] == "CANCELLED", frames[-3:]
    assert checksum(database, owner, table) == before
    assert staging_tables(database, owner) == []
    s3 = aws_client(endpoints, "s3")
    bucket = endpoints["outputs"]["DataBucketName"]
    for step in ("extract", "transform"):
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"tasks/{task_id}/{step}/")
        assert listed.get("KeyCount", 0) == 0, (step, [item["Key"] for item in listed.get("Contents", [])])


@contextmanager
def _nothing() -> Iterator[None]:
    yield
