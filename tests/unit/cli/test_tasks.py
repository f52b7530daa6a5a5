"""`busline submit|status|tasks` against a fake REST API (stdlib http.server) and a fake WebSocket on loopback."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.server import ServerConnection, serve

from busline.cli import tasks

SPECS = Path(__file__).resolve().parents[2] / "fixtures" / "specs"
TASK_ID = "01JTASK0000000000000000000"


def snapshot(status: str, extract: tuple[int, int | None], transform: tuple[int, int | None],
             load: tuple[int, int | None], counts: tuple[int, int, int, int] = (0, 0, 0, 0),
             error: dict[str, Any] | None = None) -> dict[str, Any]:
    def phase(done: int, total: int | None) -> dict[str, Any]:
        return {"done": done, "total": total, "status": "completed" if total == done else "running"}

    read, filtered, rejected, loaded = counts
    return {
        "taskId": TASK_ID, "owner": "local-user", "pipeline": "flights", "status": status,
        "createdAt": "2026-11-22T10:00:00Z", "updatedAt": "2026-11-22T10:00:05Z", "updatedAtMs": 1,
        "phases": {"extract": phase(*extract), "transform": phase(*transform), "load": phase(*load)},
        "counts": {"read": read, "filtered": filtered, "rejected": rejected, "loaded": loaded},
        "timings": {}, "error": error,
    }


RUNNING = snapshot("TRANSFORMING", (17, 17), (5, 17), (2, 17), (336776, 0, 0, 40000))
SUCCEEDED = snapshot("SUCCEEDED", (17, 17), (17, 17), (17, 17), (336776, 8255, 7602, 320919))
FAILED = snapshot("FAILED", (17, 17), (16, 17), (16, 17), (336776, 8000, 7000, 300000),
                  error={"phase": "transform", "chunk": 6, "message": "ChunkFailed: fault injected"})


class FakeApi:
    """Answers (method, path) with queued (status, body) pairs; the last answer for a route repeats."""

    def __init__(self) -> None:
        self.answers: dict[tuple[str, str], list[tuple[int, Any]]] = {}
        self.requests: list[tuple[str, str, Any]] = []
        self.url = ""

    def answer(self, method: str, path: str, *responses: tuple[int, Any]) -> None:
        self.answers[(method, path)] = list(responses)

    def handle(self, method: str, full_path: str, body: Any) -> tuple[int, Any]:
        self.requests.append((method, full_path, body))
        queued = self.answers.get((method, full_path.split("?", 1)[0]))
        if not queued:
            return 404, {"message": "no such route in the fake"}
        return queued.pop(0) if len(queued) > 1 else queued[0]


@pytest.fixture
def fake_api() -> Iterator[FakeApi]:
    api = FakeApi()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            status, answer = api.handle(self.command, self.path, body)
            payload = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _serve

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield api
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


class FakeWebSocket:
    def __init__(self, pushes: list[dict[str, Any]]) -> None:
        self.pushes = pushes
        self.subscriptions: list[dict[str, Any]] = []
        self.url = ""

    def handler(self, connection: ServerConnection) -> None:
        self.subscriptions.append(json.loads(connection.recv(timeout=5)))
        for push in self.pushes:
            connection.send(json.dumps(push))
        connection.recv(timeout=5)  # wait for the client to close


@pytest.fixture
def fake_websocket() -> Iterator[FakeWebSocket]:
    fake = FakeWebSocket([{"taskId": "someone-else", "status": "LOADING"}, RUNNING, SUCCEEDED])
    with serve(fake.handler, "127.0.0.1", 0) as server:
        fake.url = f"ws://127.0.0.1:{server.socket.getsockname()[1]}"
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield fake
        server.shutdown()
    thread.join(timeout=5)


def write_endpoints(tmp_path: Path, rest: str, websocket: str | None = None) -> Path:
    path = tmp_path / "endpoints.json"
    data: dict[str, Any] = {"rest": rest, "region": "us-east-1", "outputs": {"DataBucketName": "demo-bucket"}}
    if websocket:
        data["websocket"] = websocket
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def fast_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tasks, "POLL_INTERVAL_S", 0.01)


PIPELINES = {"items": [{
    "name": "flights", "description": "nycflights13", "defaultTable": "flights", "dashboard": [],
    "params": {"type": "object", "additionalProperties": False, "properties": {
        "chunkRows": {"type": "integer", "default": 20000}, "table": {"type": "string", "default": "flights"},
        "limit": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None},
    }},
}]}  # fmt: skip


def test_submit_pipeline_prints_the_task_id(runner, cli_app, fake_api, tmp_path):
    # Given an API that accepts tasks and lists the flights pipeline's params
    fake_api.answer("GET", "/pipelines", (200, PIPELINES))
    fake_api.answer("POST", "/tasks", (202, {"taskId": TASK_ID, "status": "ACCEPTED", "links": {}}))
    endpoints = write_endpoints(tmp_path, fake_api.url)

    # When submitting the flights pipeline with three parameters, one a string that reads as a number
    result = runner.invoke(cli_app, ["submit", "flights", "--param", "chunkRows=5000", "--param", "table=2013",
                                     "--param", "limit=100", "--endpoints", str(endpoints)])

    # Then the task id alone is printed and the body carried parameters typed as the pipeline's schema says
    assert result.exit_code == 0, result.output + result.stderr
    assert result.stdout == f"{TASK_ID}\n"
    assert fake_api.requests == [
        ("GET", "/pipelines", None),
        ("POST", "/tasks", {"pipeline": "flights", "params": {"chunkRows": 5000, "table": "2013", "limit": 100}}),
    ]


def test_pipelines_lists_each_with_its_parameters(runner, cli_app, fake_api, tmp_path):
    fake_api.answer("GET", "/pipelines", (200, PIPELINES))
    endpoints = write_endpoints(tmp_path, fake_api.url)
    result = runner.invoke(cli_app, ["pipelines", "--endpoints", str(endpoints)])
    assert result.exit_code == 0, result.output + result.stderr
    assert "│ flights │ chunkRows: integer = 20000, table: string = flights, limit: integer │ nycflights13 │" in result.stdout


def test_submit_spec_fills_in_stack_outputs(runner, cli_app, fake_api, tmp_path):
    # Given an API that accepts tasks and a spec file using ${DataBucketName}
    fake_api.answer("POST", "/tasks", (202, {"taskId": TASK_ID, "status": "ACCEPTED", "links": {}}))
    endpoints = write_endpoints(tmp_path, fake_api.url)

    # When submitting the spec
    result = runner.invoke(cli_app, ["submit", "--spec", str(SPECS / "airports.json"),
                                     "--endpoints", str(endpoints)])

    # Then the posted body is the spec with the bucket filled in
    assert result.exit_code == 0, result.output + result.stderr
    assert result.stdout == f"{TASK_ID}\n"
    posted = fake_api.requests[0][2]
    expected = json.loads((SPECS / "airports.json").read_text().replace("${DataBucketName}", "demo-bucket"))
    assert posted == expected
    assert posted["source"]["uri"] == "s3://demo-bucket/shared/nycflights13/airports.csv"


def test_submit_maps_422_to_field_errors_and_exit_2(runner, cli_app, fake_api, tmp_path):
    # Given an API answering 422 the way Powertools does
    fake_api.answer("POST", "/tasks", (422, {"statusCode": 422, "detail": [
        {"loc": ["body", "spec", "source", "uri"], "type": "value_error"},
        {"loc": ["body", "spec", "columns", 0, "type"], "type": "literal_error"},
        {"loc": ["body", "pipeline", "pipeline"], "type": "missing", "msg": "Field required"},
    ]}))
    endpoints = write_endpoints(tmp_path, fake_api.url)

    # When submitting an invalid spec
    result = runner.invoke(cli_app, ["submit", "--spec", str(SPECS / "invalid.json"),
                                     "--endpoints", str(endpoints)])

    # Then each field error is printed and the exit code is 2
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "HTTP 422" in result.stderr
    assert "  - source.uri: value_error" in result.stderr
    assert "  - columns[0].type: literal_error" in result.stderr
    assert "  - pipeline: Field required" in result.stderr


def test_submit_maps_400_errors_list(runner, cli_app, fake_api, tmp_path):
    # Given an API answering 400 with the layer's InvalidTask errors list
    fake_api.answer("POST", "/tasks", (400, {"message": "params.table: bad", "errors": [
        {"field": "params.table", "message": "'Bad' is not a valid table name"}]}))
    endpoints = write_endpoints(tmp_path, fake_api.url)

    # When submitting
    result = runner.invoke(cli_app, ["submit", "flights", "--param", "table=Bad", "--endpoints", str(endpoints)])

    # Then the field and its message are printed, exit 2
    assert result.exit_code == 2
    assert "  - params.table: 'Bad' is not a valid table name" in result.stderr


def test_submit_follow_over_websocket(runner, cli_app, fake_api, fake_websocket, tmp_path):
    # Given an API and a WebSocket that pushes another task's message, progress, then success
    fake_api.answer("POST", "/tasks", (202, {"taskId": TASK_ID, "status": "ACCEPTED", "links": {}}))
    endpoints = write_endpoints(tmp_path, fake_api.url, fake_websocket.url)

    # When submitting with --follow
    result = runner.invoke(cli_app, ["submit", "flights", "--follow", "--endpoints", str(endpoints)])

    # Then it subscribed once, never had to poll, and printed the final counts; exit 0
    assert result.exit_code == 0, result.output + result.stderr
    assert fake_websocket.subscriptions == [{"action": "subscribe", "taskId": TASK_ID}]
    assert [request[:2] for request in fake_api.requests] == [("POST", "/tasks")]
    assert f"Task {TASK_ID}: SUCCEEDED" in result.stdout
    assert "│ 336,776 │    8,255 │    7,602 │ 320,919 │" in result.stdout
    # And the last progress frame (on stderr) shows all three phases complete
    assert result.stderr.count("17/17 chunks  completed") == 3
    assert "read 336,776  filtered 8,255  rejected 7,602  loaded 320,919" in result.stderr


def test_follow_never_shows_a_snapshot_older_than_the_one_shown():
    # Given a WebSocket whose answer to subscribe (stored at 3) arrives after a push of a newer state (5)
    newer = {**RUNNING, "updatedAtMs": 5}
    older = {**snapshot("EXTRACTING", (4, None), (0, None), (0, None)), "updatedAtMs": 3}
    final = {**SUCCEEDED, "updatedAtMs": 9}
    fake = FakeWebSocket([newer, older, final])
    shown: list[dict[str, Any]] = []
    with serve(fake.handler, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        url = f"ws://127.0.0.1:{server.socket.getsockname()[1]}"
        # When the CLI follows the task
        last = tasks.follow_task(tasks.ApiClient("http://127.0.0.1:9"), url, TASK_ID, shown.append)
        server.shutdown()
    thread.join(timeout=5)
    # Then it showed the newer state and the final one, never the older answer in between
    assert [frame["updatedAtMs"] for frame in shown] == [5, 9]
    assert last == final


def test_submit_follow_polls_without_websocket_and_reports_failure(runner, cli_app, fake_api, fast_polling,
                                                                   tmp_path):
    # Given no WebSocket endpoint and a task that runs, then fails in transform chunk 6
    fake_api.answer("POST", "/tasks", (202, {"taskId": TASK_ID, "status": "ACCEPTED", "links": {}}))
    fake_api.answer("GET", f"/tasks/{TASK_ID}", (200, RUNNING), (200, RUNNING), (200, FAILED))
    endpoints = write_endpoints(tmp_path, fake_api.url)

    # When following it
    result = runner.invoke(cli_app, ["submit", "flights", "--follow", "--endpoints", str(endpoints)])

    # Then it polled until the end, printed phase, chunk and error, and exited 1
    assert result.exit_code == 1
    assert [request[:2] for request in fake_api.requests].count(("GET", f"/tasks/{TASK_ID}")) == 3
    assert f"Task {TASK_ID} FAILED: phase transform, chunk 6: ChunkFailed: fault injected" in result.stderr


def test_submit_follow_falls_back_to_polling_when_websocket_is_down(runner, cli_app, fake_api, fast_polling,
                                                                    tmp_path):
    # Given a WebSocket URL where nothing listens
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    fake_api.answer("POST", "/tasks", (202, {"taskId": TASK_ID, "status": "ACCEPTED", "links": {}}))
    fake_api.answer("GET", f"/tasks/{TASK_ID}", (200, SUCCEEDED))
    endpoints = write_endpoints(tmp_path, fake_api.url, f"ws://127.0.0.1:{dead_port}")

    # When following
    result = runner.invoke(cli_app, ["submit", "flights", "--follow", "--endpoints", str(endpoints)])

    # Then it says so, polls once and succeeds
    assert result.exit_code == 0, result.output + result.stderr
    assert "polling every second" in result.stderr
    assert [request[:2] for request in fake_api.requests] == [("POST", "/tasks"), ("GET", f"/tasks/{TASK_ID}")]


def test_status_json_and_not_found(runner, cli_app, fake_api, tmp_path):
    # Given one known task
    fake_api.answer("GET", f"/tasks/{TASK_ID}", (200, SUCCEEDED))
    fake_api.answer("GET", "/tasks/nope", (404, {"message": "task nope not found"}))
    endpoints = write_endpoints(tmp_path, fake_api.url)

    # When asking for its status as JSON, and for an unknown task
    known = runner.invoke(cli_app, ["status", TASK_ID, "--json", "--endpoints", str(endpoints)])
    unknown = runner.invoke(cli_app, ["status", "nope", "--endpoints", str(endpoints)])

    # Then the JSON is the snapshot, and the unknown task is named with exit 1
    assert known.exit_code == 0, known.output + known.stderr
    assert json.loads(known.stdout) == SUCCEEDED
    assert unknown.exit_code == 1
    assert "task nope not found" in unknown.stderr


def test_status_table_shows_phases_counts_and_error(runner, cli_app, fake_api, tmp_path):
    # Given a failed task
    fake_api.answer("GET", f"/tasks/{TASK_ID}", (200, FAILED))
    endpoints = write_endpoints(tmp_path, fake_api.url)

    # When showing it
    result = runner.invoke(cli_app, ["status", TASK_ID, "--endpoints", str(endpoints)])

    # Then phases, counts and the error are shown
    assert result.exit_code == 0, result.output + result.stderr
    assert "│ transform │ 16/17       │ running   │" in result.stdout
    assert "Error: phase transform, chunk 6: ChunkFailed: fault injected" in result.stdout


def test_tasks_lists_newest_first_with_limit(runner, cli_app, fake_api, tmp_path):
    # Given a page of two tasks and a next token
    second = {**FAILED, "taskId": "older-task"}
    fake_api.answer("GET", "/tasks", (200, {"items": [SUCCEEDED, second], "nextToken": "tok123"}))
    endpoints = write_endpoints(tmp_path, fake_api.url)

    # When listing with --limit 2
    result = runner.invoke(cli_app, ["tasks", "--limit", "2", "--endpoints", str(endpoints)])

    # Then the limit went to the API, both rows are shown in order, and the next page is offered
    assert result.exit_code == 0, result.output + result.stderr
    assert fake_api.requests == [("GET", "/tasks?limit=2", None)]
    assert "2 task(s), newest first" in result.stdout
    assert result.stdout.index(TASK_ID) < result.stdout.index("older-task")
    assert "busline tasks --limit 2 --next-token tok123" in result.stdout


def test_unreachable_api_is_reported(runner, cli_app, tmp_path):
    # Given an endpoints file pointing at a closed port
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    endpoints = write_endpoints(tmp_path, f"http://127.0.0.1:{dead_port}")

    # When listing tasks
    result = runner.invoke(cli_app, ["tasks", "--endpoints", str(endpoints)])

    # Then the error names the URL and hints at the local cloud
    assert result.exit_code == 1
    assert f"cannot reach the REST API at http://127.0.0.1:{dead_port}/tasks" in result.stderr
    assert "busline local up" in result.stderr


def test_submit_needs_exactly_one_of_pipeline_or_spec(runner, cli_app, tmp_path):
    # When giving neither, or both
    neither = runner.invoke(cli_app, ["submit"])
    both = runner.invoke(cli_app, ["submit", "flights", "--spec", str(SPECS / "airports.json")])

    # Then both are usage errors (exit 2) naming the choice
    assert neither.exit_code == 2 and "exactly one" in neither.stderr
    assert both.exit_code == 2 and "exactly one" in both.stderr


def test_unknown_output_placeholder_is_named(runner, cli_app, fake_api, tmp_path):
    # Given a spec using an output the deployment does not have
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"source": {"uri": "s3://${NoSuchBucket}/x.csv", "format": "csv"}}))
    endpoints = write_endpoints(tmp_path, fake_api.url)

    # When submitting it
    result = runner.invoke(cli_app, ["submit", "--spec", str(spec), "--endpoints", str(endpoints)])

    # Then nothing is posted and the placeholder is named
    assert result.exit_code == 2
    assert "${NoSuchBucket} is not an output of endpoints file" in result.stderr
    assert fake_api.requests == []


def test_cancel_prints_the_cancelled_task_and_refusals_by_their_words(runner, cli_app, fake_api, tmp_path):
    # Given a running task that the API cancels, a finished one it refuses (409) and an unknown one (404)
    cancelled = {**RUNNING, "status": "CANCELLED"}
    fake_api.answer("POST", f"/tasks/{TASK_ID}/cancel", (202, cancelled))
    fake_api.answer("POST", "/tasks/done/cancel", (409, {"message": "task done is SUCCEEDED: nothing to cancel"}))
    fake_api.answer("POST", "/tasks/nope/cancel", (404, {"message": "task nope not found"}))
    endpoints = write_endpoints(tmp_path, fake_api.url)

    # When each is cancelled
    ok = runner.invoke(cli_app, ["cancel", TASK_ID, "--endpoints", str(endpoints)])
    finished = runner.invoke(cli_app, ["cancel", "done", "--endpoints", str(endpoints)])
    unknown = runner.invoke(cli_app, ["cancel", "nope", "--endpoints", str(endpoints)])

    # Then the cancelled task is printed with its counts so far, one POST each, and the refusals exit 1
    assert ok.exit_code == 0, ok.output + ok.stderr
    assert f"Task {TASK_ID}: CANCELLED" in ok.stdout
    assert "40,000" in ok.stdout
    assert [(method, path) for method, path, _ in fake_api.requests] == [
        ("POST", f"/tasks/{TASK_ID}/cancel"), ("POST", "/tasks/done/cancel"), ("POST", "/tasks/nope/cancel")
    ]
    assert (finished.exit_code, unknown.exit_code) == (1, 1)
    assert "task done is SUCCEEDED: nothing to cancel" in finished.stderr
    assert "task nope not found" in unknown.stderr


def test_status_shows_the_tasks_estimated_cost(runner, cli_app, fake_api, tmp_path):
    # Given a finished task that reports its cost
    cost = {
        "usd": 0.000412, "byService": {"lambda": 0.0003, "sqs": 0.000012, "dynamodb": 0.0001},
        "requests": 1234, "lambdaGbSeconds": 17.5, "unpriced": {"sns:Publish": 1},
        "prices": "AWS list prices, us-east-1, checked late November 2026",
    }  # fmt: skip
    fake_api.answer("GET", f"/tasks/{TASK_ID}", (200, {**SUCCEEDED, "cost": cost}))
    endpoints = write_endpoints(tmp_path, fake_api.url)

    # When showing it
    result = runner.invoke(cli_app, ["status", TASK_ID, "--endpoints", str(endpoints)])

    # Then one line says what it cost, by service (largest first), what was counted and which prices
    assert result.exit_code == 0, result.output + result.stderr
    assert (
        "Cost      $0.000412 on AWS (lambda $0.000300, dynamodb $0.000100, sqs $0.000012); 1,234 requests, "
        "17.5 Lambda GB-s; not priced: sns:Publish; AWS list prices, us-east-1, checked late November 2026"
    ) in result.stdout
