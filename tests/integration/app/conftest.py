"""The app suite runs against the real template.yaml (with --demo data and a real Postgres) in the cloud it
shares with tests/e2e (tests/conftest.py's `demo_cloud`).

Starting the cloud costs seconds and a flights run tens of seconds, so both are shared: `flights_run`
submits the flights demo once, follows it over the WebSocket from the start, and hands the messages and
the final snapshot to every test that needs them.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import boto3
import psycopg
import pytest
from websockets.sync.client import connect

from busline.localcloud.testing import RunningCloud, user_tokens, websocket_url

TASK_TIMEOUT_S = 600.0  # generous: on a busy 2-CPU box a flights run took over 4 minutes
TERMINAL = ("SUCCEEDED", "FAILED")


@dataclass
class ApiResponse:
    status: int
    body: Any

    @property
    def text(self) -> str:
        return json.dumps(self.body)


class Api:
    """A tiny REST client signed in as one user: every call returns status + parsed JSON, errors included
    (tests assert on them)."""

    def __init__(self, base_url: str, token: str | None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token

    def call(self, method: str, path: str, body: Any = None, *, authorization: str | None = None) -> ApiResponse:
        """`authorization` replaces the user's token (tests of refused tokens); None sends the user's."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        token = self.token if authorization is None else authorization
        if token:
            headers["Authorization"] = token
        request = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return ApiResponse(response.status, _parse(response.read()))
        except urllib.error.HTTPError as error:
            return ApiResponse(error.code, _parse(error.read()))

    def submit(self, body: dict[str, Any]) -> str:
        response = self.call("POST", "/tasks", body)
        assert response.status == 202, f"POST /tasks answered {response.status}: {response.text}"
        return str(response.body["taskId"])

    def task(self, task_id: str) -> dict[str, Any]:
        response = self.call("GET", f"/tasks/{task_id}")
        assert response.status == 200, f"GET /tasks/{task_id} answered {response.status}: {response.text}"
        return dict(response.body)

    def wait_terminal(self, task_id: str, timeout_s: float = TASK_TIMEOUT_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            snapshot = self.task(task_id)
            if snapshot["status"] in TERMINAL:
                return snapshot
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"task {task_id} still {snapshot['status']} after {timeout_s} s: {snapshot}"
                )
            time.sleep(0.5)

    def all_tasks(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            query = "/tasks?limit=100" + (f"&nextToken={quote(token)}" if token else "")
            response = self.call("GET", query)
            assert response.status == 200, f"GET {query} answered {response.status}: {response.text}"
            items.extend(response.body["items"])
            token = response.body.get("nextToken")
            if not token:
                return items

    def all_rejects(self, task_id: str, page_size: int = 100) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            query = f"/tasks/{task_id}/rejects?limit={page_size}"
            if token:
                query += f"&nextToken={quote(token)}"
            response = self.call("GET", query)
            assert response.status == 200, f"GET {query} answered {response.status}: {response.text}"
            items.extend(response.body["items"])
            token = response.body.get("nextToken")
            if not token:
                return items


def _parse(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except json.JSONDecodeError:
        return raw.decode(errors="replace")


@dataclass
class ProgressRecording:
    task_id: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, Any] = field(default_factory=dict)  # GET /tasks/{id} after the terminal message
    seconds: float = 0.0


def follow_task(
    endpoints: dict[str, Any], api: Api, body: dict[str, Any], timeout_s: float = TASK_TIMEOUT_S
) -> ProgressRecording:
    """Connect as the API's user, submit `body`, subscribe, and record every message until the terminal one."""
    started = time.monotonic()
    assert api.token is not None
    with connect(websocket_url(endpoints, api.token), open_timeout=30) as socket:
        task_id = api.submit(body)
        socket.send(json.dumps({"action": "subscribe", "taskId": task_id}))
        recording = ProgressRecording(task_id)
        deadline = started + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"no terminal message for {task_id} after {timeout_s} s; last: {recording.messages[-1:]}"
                )
            try:
                raw = socket.recv(timeout=remaining)
            except TimeoutError:
                continue
            message = json.loads(raw)
            # a snapshot has an "error" field too (null, or why the task failed); a refusal has no taskId
            assert "taskId" in message, f"the WebSocket answered an error: {message}"
            recording.messages.append(message)
            if message.get("status") in TERMINAL:
                break
    recording.seconds = time.monotonic() - started
    recording.final = api.task(task_id)
    return recording


@pytest.fixture(scope="session")
def cloud(demo_cloud: RunningCloud) -> RunningCloud:
    """The template.yaml cloud this suite shares with tests/e2e (see tests/conftest.py)."""
    return demo_cloud


@pytest.fixture(scope="session")
def api(cloud: RunningCloud) -> Api:
    """alice: the user every app test acts as, unless it says otherwise."""
    return Api(cloud.endpoints["rest"], user_tokens(cloud.endpoints, "alice").access_token)


@pytest.fixture(scope="session")
def bob(cloud: RunningCloud) -> Api:
    """A second tenant of the same stack."""
    return Api(cloud.endpoints["rest"], user_tokens(cloud.endpoints, "bob").access_token)


@pytest.fixture(scope="session")
def s3(cloud: RunningCloud) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=cloud.endpoints["aws"],
        region_name=cloud.endpoints["region"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture(scope="session")
def data_bucket(cloud: RunningCloud) -> str:
    return str(cloud.endpoints["outputs"]["DataBucketName"])


@pytest.fixture
def pg(cloud: RunningCloud) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(cloud.endpoints["postgres"], autocommit=True) as connection:
        yield connection


@pytest.fixture(scope="session")
def flights_run(cloud: RunningCloud, api: Api) -> ProgressRecording:
    """The flights demo, submitted once and followed live over the WebSocket from submission to the end."""
    return follow_task(cloud.endpoints, api, {"pipeline": "flights", "params": {}})
