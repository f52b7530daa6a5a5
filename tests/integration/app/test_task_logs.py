"""One correlation id across the bus: the id a client sends with POST /tasks is on the task, and every log
line the functions write about the task carries it; `busline logs` prints them from all functions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from busline.localcloud.testing import RunningCloud, user_tokens

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
ROWS = 2_500  # chunkRows 1,000: three chunks, so three transform and three load invocations


def test_busline_logs_prints_the_tasks_lines_from_every_function_with_one_correlation_id(
    cloud: RunningCloud, s3: Any, data_bucket: str, tmp_path: Path
) -> None:
    # Given a 2,500-row source, and a task of the demo user's posted with its own X-Correlation-Id
    correlation_id = f"it-{uuid.uuid4().hex[:12]}"
    key = f"shared/logs-test/{correlation_id}.csv"
    s3.put_object(Bucket=data_bucket, Key=key,
                  Body=("id,name\n" + "".join(f"{n},item {n}\n" for n in range(1, ROWS + 1))).encode())  # fmt: skip
    spec = {
        "source": {"uri": f"s3://{data_bucket}/{key}", "format": "csv"},
        "columns": [{"name": "id", "type": "int", "required": True}, {"name": "name", "type": "string"}],
        "target": {"table": "logs_items", "key": ["id"]},
        "chunkRows": 1000,
    }
    token = user_tokens(cloud.endpoints, cloud.endpoints["auth"]["demoUser"]["username"]).access_token
    request = urllib.request.Request(
        f"{cloud.endpoints['rest']}/tasks", data=json.dumps(spec).encode(), method="POST",
        headers={"Authorization": token, "Content-Type": "application/json", "X-Correlation-Id": correlation_id},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as response:
        task_id = json.loads(response.read())["taskId"]
    snapshot = _wait_terminal(cloud, token, task_id)
    assert (snapshot["status"], snapshot["correlationId"], snapshot["counts"]["loaded"]) == (
        "SUCCEEDED", correlation_id, ROWS
    )

    # When `busline logs` is run for it, signed in as the demo user (a token store of this test's own)
    result = subprocess.run(
        [sys.executable, "-m", "busline.cli.main", "logs", task_id,
         "--endpoints", str(cloud.data_dir / "endpoints.json")],
        capture_output=True, text=True, timeout=60, cwd=REPO,
        env={**os.environ, "COLUMNS": "250", "NO_COLOR": "1", "BUSLINE_TOKENS": str(tmp_path / "tokens.json")},
    )  # fmt: skip

    # Then it names the correlation id and prints lines from the API and each step, oldest first
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"Task {task_id} · correlation id {correlation_id}"
    functions = [line.split()[1] for line in lines[1:]]
    assert {"ApiFunction", "ExtractFunction", "TransformFunction", "LoadFunction"} <= set(functions)
    assert [line[:12] for line in lines[1:]] == sorted(line[:12] for line in lines[1:])
    assert "task accepted" in lines[1]
    # and in the files, every line about this task, of every function, carries that one id
    about_task = [
        record
        for path in sorted((cloud.data_dir / "logs").glob("*.log"))
        for raw in path.read_text(errors="replace").splitlines()
        if raw.startswith("{") and task_id in raw
        for record in [json.loads(raw)]
        if record.get("task_id") == task_id
    ]
    assert {record["function_name"].rsplit("-", 1)[-1] for record in about_task} >= {
        "ApiFunction", "ExtractFunction", "TransformFunction", "LoadFunction"
    }
    assert {record.get("correlation_id") for record in about_task} == {correlation_id}


def _wait_terminal(cloud: RunningCloud, token: str, task_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 300
    while True:
        request = urllib.request.Request(f"{cloud.endpoints['rest']}/tasks/{task_id}", headers={"Authorization": token})
        with urllib.request.urlopen(request, timeout=30) as response:
            snapshot: dict[str, Any] = json.loads(response.read())
        if snapshot["status"] in ("SUCCEEDED", "FAILED", "CANCELLED") or time.monotonic() > deadline:
            return snapshot
        time.sleep(0.5)
