"""The local cloud keeps its AWS state across restarts (issue 14, point 1; busline/localcloud/state.py).

One data dir, three runs of `busline local up` on the same ports: the first is stopped cleanly (SIGTERM)
mid-task, the second is killed (SIGKILL to its whole process group) mid-task, the third finishes both
tasks. Each task ends with the counts, rows and ledger a run without any stop gives.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from typing import Any

import pytest

from busline.localcloud.state import SNAPSHOT_INTERVAL_S, snapshot_file
from busline.localcloud.testing import RunningCloud, free_base_port, new_data_dir, running_cloud
from tests.integration.resilience.resilience_support import (
    DRILL_CHUNK_ROWS,
    DRILL_VISIBILITY_S,
    TEMPLATE,
    Api,
    aws_client,
    duplicate_keys,
    expect,
    generate_orders,
    ledger,
    table_rows,
    upload_task,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

# The drill cloud's short cycle: a chunk hidden by a killed consumer is back after 10 s, and its
# idempotency record (in progress for at most StepTimeout) has expired by then.
ARGS = [
    "--param", "StepTimeout=8",
    "--param", f"QueueVisibilityTimeout={DRILL_VISIBILITY_S}",
    "--param", "MaxReceiveCount=5",
    "--param", f"ChunkRows={DRILL_CHUNK_ROWS}",
]  # fmt: skip
# enough byte ranges (chunks) that a stop right after the first is through transform finds most still to do
ROWS = generate_orders(unique=120_000, repeated=0, salt=14)
# the killed task must still be mid-way a snapshot interval after its first chunk is through: 2.5x as many
KILLED_ROWS = generate_orders(unique=300_000, repeated=0, salt=15)
FINISH_BOUND_S = 120.0


def _started_but_unfinished(api: Api, task_id: str) -> dict[str, Any]:
    """Wait until a first chunk is through transform (most are not yet)."""
    return api.wait_until(
        task_id, lambda task: task["phases"]["transform"]["done"] >= 1 or task["status"] in ("SUCCEEDED", "FAILED"),
        "one chunk transformed", timeout_s=90,
    )


def _kill_once_saved_mid_way(cloud: RunningCloud, api: Api, task_id: str) -> dict[str, Any]:
    """SIGKILL the whole cloud mid-task, once a snapshot taken after the task started is on disk.

    A crash loses the requests of the last snapshot interval by design (busline/localcloud/state.py), so a
    kill within 2 s of the submit may lose the task itself: what a crash is allowed to do, not what this
    test is about (CI's run of 94616ff killed 2.2 s after the submit, before any snapshot held the task)."""
    observed = _started_but_unfinished(api, task_id)
    observed_at = time.time()
    snapshot = snapshot_file(cloud.data_dir)
    deadline = time.monotonic() + 10 * SNAPSHOT_INTERVAL_S
    while not (snapshot.is_file() and snapshot.stat().st_mtime > observed_at):
        assert time.monotonic() < deadline, f"no snapshot written in {10 * SNAPSHOT_INTERVAL_S} s"
        time.sleep(0.05)
    # the snapshot is older than this answer, so it holds the task unfinished too
    at_kill = api.task(task_id)
    os.killpg(cloud.process.pid, signal.SIGKILL)
    cloud.process.wait(timeout=30)
    assert observed["status"] not in ("SUCCEEDED", "FAILED"), observed
    return at_kill


def _state_line(cloud: RunningCloud, run: int) -> str:
    """The "AWS state:" line of the run-th start in this data dir (the banner comes just after
    endpoints.json, so it may not be in console.log yet)."""
    deadline = time.monotonic() + 30
    while True:
        lines = [line.strip() for line in cloud.log_path.read_text(errors="replace").splitlines() if "AWS state:" in line]
        if len(lines) >= run:
            return lines[run - 1]
        assert time.monotonic() < deadline, f"no banner of start {run} in {cloud.log_path}"
        time.sleep(0.2)


def _assert_exactly_as_without_a_stop(
    cloud: RunningCloud, api: Api, task_id: str, table: str, rows: list[dict[str, str]]
) -> None:
    expected = expect(rows)
    final = api.wait_terminal([task_id], timeout_s=FINISH_BOUND_S)[task_id]
    assert final["status"] == "SUCCEEDED", final
    assert final["counts"] == expected.counts()
    chunks = final["phases"]["extract"]["total"]  # the source's byte ranges
    for phase in ("extract", "transform", "load"):
        assert final["phases"][phase] == {"done": chunks, "total": chunks, "status": "completed"}, phase
    database = cloud.endpoints["postgres"]
    assert table_rows(database, final["owner"], table) == expected.table
    assert duplicate_keys(database, final["owner"], table) == []
    # each chunk loaded once: one ledger row each, their rows adding up to the rows loaded
    loaded = ledger(database, task_id)
    assert [chunk for chunk, _rows in loaded] == list(range(chunks))
    assert sum(rows for _chunk, rows in loaded) == expected.counts()["loaded"]


def test_tasks_finish_exactly_once_across_a_clean_stop_and_a_kill() -> None:
    data_dir = new_data_dir("restart")
    port = free_base_port()
    try:
        # Given a task stopped cleanly (SIGTERM) with some chunks transformed and others not
        with running_cloud(TEMPLATE, data_dir, extra_args=ARGS, base_port=port) as first:
            api = Api(first.endpoints)
            stopped_spec = upload_task(first, "sigterm", ROWS)
            stopped_task = api.submit(stopped_spec)
            at_stop = _started_but_unfinished(api, stopped_task)
            first.process.send_signal(signal.SIGTERM)
            assert first.process.wait(timeout=60) == 0
        assert at_stop["status"] not in ("SUCCEEDED", "FAILED"), at_stop

        # When the cloud starts again on the same data dir
        with running_cloud(TEMPLATE, data_dir, extra_args=ARGS, base_port=port) as second:
            assert _state_line(second, 2).startswith("AWS state: restored from")
            api = Api(second.endpoints)
            # Then the task finishes as if nothing had happened
            _assert_exactly_as_without_a_stop(second, api, stopped_task, stopped_spec["target"]["table"], ROWS)

            # Given an object written well before the cloud is killed, and a second task killed mid-way
            bucket = second.endpoints["outputs"]["DataBucketName"]
            aws_client(second.endpoints, "s3").put_object(Bucket=bucket, Key="shared/restart/before-kill", Body=b"kept")
            killed_spec = upload_task(second, "sigkill", KILLED_ROWS)
            time.sleep(2 * SNAPSHOT_INTERVAL_S + 1)
            killed_task = api.submit(killed_spec)
            at_kill = _kill_once_saved_mid_way(second, api, killed_task)
        assert at_kill["status"] not in ("SUCCEEDED", "FAILED"), at_kill

        # When it starts again after the kill
        with running_cloud(TEMPLATE, data_dir, extra_args=ARGS, base_port=port) as third:
            assert _state_line(third, 3).startswith("AWS state: restored from")
            api = Api(third.endpoints)
            # Then both tasks are there: the first as it ended, the second finishing exactly once
            _assert_exactly_as_without_a_stop(third, api, killed_task, killed_spec["target"]["table"], KILLED_ROWS)
            assert api.task(stopped_task)["status"] == "SUCCEEDED"
            kept = aws_client(third.endpoints, "s3").get_object(Bucket=bucket, Key="shared/restart/before-kill")
            assert kept["Body"].read() == b"kept"

        # And --fresh starts with none of it
        with running_cloud(TEMPLATE, data_dir, extra_args=[*ARGS, "--fresh"], base_port=port) as fresh:
            assert _state_line(fresh, 4).startswith("AWS state: a new stack")
            status, _answer = Api(fresh.endpoints)._call("GET", f"/tasks/{stopped_task}")
            assert status == 404
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
