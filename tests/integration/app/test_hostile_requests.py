"""Hostile requests through the local cloud's REST gateway, signed in as alice: each gets its 4xx naming the
field or the limit, none a 5xx, each status is one the served OpenAPI document declares for its operation,
and none of them records a task. No task runs: every request here is refused."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import pytest

pytestmark = pytest.mark.integration

LONG_ID = "a" * 10_000


@dataclass(frozen=True)
class Hostile:
    name: str
    method: str
    path: str
    status: int
    names: str  # what the answer must name: the field, the limit, or the reason
    body: bytes | None = None
    content_type: str = "application/json"
    signed_in: bool = True


def _spec(bucket: str, **changes: Any) -> bytes:
    spec: dict[str, Any] = {
        "source": {"uri": f"s3://{bucket}/shared/hostile/orders.csv", "format": "csv"},
        "columns": [{"name": "id", "type": "int"}, {"name": "note", "type": "string"}],
        "target": {"table": "hostile_orders", "key": ["id"]},
    }
    spec.update(changes)
    return json.dumps(spec).encode()


def corpus(bucket: str) -> list[Hostile]:
    columns_501 = [{"name": f"c{i}", "type": "int"} for i in range(501)]
    return [
        Hostile("invalid-utf8", "POST", "/tasks", 422, "byte 16 is not UTF-8", b'{"pipeline": "fl\xffights"}'),
        Hostile("lone-surrogate", "POST", "/tasks", 422, "half a surrogate pair", b'{"pipeline": "\\ud800"}'),
        Hostile("10000-deep-arrays", "POST", "/tasks", 422, "nested deeper than the limit of 16 levels",
                b"[" * 10_000 + b"]" * 10_000),
        Hostile("10000-deep-objects", "POST", "/tasks", 422, "nested deeper than the limit of 16 levels",
                b'{"a": ' * 10_000 + b"1" + b"}" * 10_000),
        Hostile("1e400", "POST", "/tasks", 422, "the number 1e400 is out of range",
                b'{"pipeline": "flights", "params": {"chunkRows": 1e400}}'),
        Hostile("5000-digit-integer", "POST", "/tasks", 422, "over the limit of 100",
                b'{"pipeline": "flights", "params": {"chunkRows": ' + b"9" * 5000 + b"}}"),
        Hostile("NaN", "POST", "/tasks", 422, "NaN is not a JSON value",
                b'{"pipeline": "flights", "params": {"chunkRows": NaN}}'),
        Hostile("-Infinity", "POST", "/tasks", 422, "-Infinity is not a JSON value",
                b'{"pipeline": "flights", "params": {"chunkRows": -Infinity}}'),
        Hostile("duplicate-key", "POST", "/tasks", 422, "the key 'pipeline' appears twice",
                b'{"pipeline": "flights", "pipeline": "nope"}'),
        Hostile("trailing-garbage", "POST", "/tasks", 422, "Extra data", b'{"pipeline": "flights"} x'),
        Hostile("2MB-string", "POST", "/tasks", 413, "over the limit of 131,072 bytes",
                json.dumps({"pipeline": "x" * 2_000_000}).encode()),
        Hostile("empty-body", "POST", "/tasks", 422, "body", b""),
        Hostile("array-body", "POST", "/tasks", 422, "body", b"[]"),
        Hostile("form-body", "POST", "/tasks", 415, "is not application/json", b"pipeline=flights",
                "application/x-www-form-urlencoded"),
        Hostile("multipart-without-boundary", "POST", "/tasks", 415, "is not application/json",
                b'{"pipeline": "flights"}', "multipart/form-data"),
        Hostile("501-columns", "POST", "/tasks", 422, "at most 500 items", _spec(bucket, columns=columns_501)),
        Hostile("11-joins", "POST", "/tasks", 422, "at most 10 items", _spec(bucket, joins=[
            {"name": f"j{i}", "uri": f"s3://{bucket}/shared/hostile/ref.csv", "on": {"id": "id"},
             "columns": [{"name": "v", "as": f"j{i}_v"}]} for i in range(11)])),
        Hostile("1001-in-values", "POST", "/tasks", 422, "at most 1000 items",
                _spec(bucket, filters=[{"column": "id", "op": "in", "values": list(range(1001))}])),
        Hostile("21-null-markers", "POST", "/tasks", 422, "at most 20 items", _spec(bucket, source={
            "uri": f"s3://{bucket}/shared/hostile/orders.csv", "format": "csv",
            "nullValues": [f"n{i}" for i in range(21)]})),
        Hostile("2049-char-uri", "POST", "/tasks", 422, "at most 2048 characters", _spec(bucket, source={
            "uri": f"s3://{bucket}/" + "k" * 2049, "format": "csv"})),
        Hostile("spec-over-64KiB-stored", "POST", "/tasks", 413, "over the limit of 65,536 bytes",
                _spec(bucket, filters=[{"column": "note", "op": "ne", "value": "v" * 70_000}])),
        Hostile("upload-name-with-slash", "POST", "/uploads", 422, "fileName", b'{"fileName": "../x.csv"}'),
        Hostile("upload-2MB", "POST", "/uploads", 413, "over the limit of 131,072 bytes",
                json.dumps({"fileName": "x" * 2_000_000}).encode()),
        Hostile("10000-char-task-id", "GET", f"/tasks/{LONG_ID}", 422, "taskId"),
        Hostile("10000-char-task-id-rejects", "GET", f"/tasks/{LONG_ID}/rejects", 422, "taskId"),
        Hostile("unknown-task", "GET", "/tasks/" + "a" * 36, 404, "not found"),
        Hostile("limit-0", "GET", "/tasks?limit=0", 422, "limit"),
        Hostile("limit-minus-1", "GET", "/tasks?limit=-1", 422, "limit"),
        Hostile("limit-10e30", "GET", "/tasks?limit=1" + "0" * 30, 422, "limit"),
        Hostile("forged-page-token", "GET", "/tasks?nextToken=eyJ0YXNrSWQiOiJ4In0", 400, "nextToken"),
        Hostile("3000-char-page-token", "GET", "/tasks?nextToken=" + "t" * 3000, 400, "nextToken"),
        Hostile("unsigned", "POST", "/tasks", 401, "Unauthorized", b'{"pipeline": "flights"}', signed_in=False),
    ]


def send(api: Any, request: Hostile) -> tuple[int, Any]:
    """The raw bytes as given (Api.call would encode a value as JSON itself)."""
    headers = {"Content-Type": request.content_type}
    if request.signed_in:
        headers["Authorization"] = api.token
    raw = urllib.request.Request(api.base_url + request.path, data=request.body, method=request.method, headers=headers)
    try:
        with urllib.request.urlopen(raw, timeout=30) as response:
            status, payload = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, payload = error.code, error.read()
    try:
        return status, json.loads(payload) if payload else None
    except json.JSONDecodeError:
        return status, payload.decode(errors="replace")


def _operation(path: str, method: str) -> tuple[str, str]:
    path = path.split("?")[0]
    return re.sub(r"^/tasks/[^/]+", "/tasks/{taskId}", path), method.lower()


def test_hostile_requests_get_their_4xx_none_a_5xx_and_record_nothing(api: Any, data_bucket: str) -> None:
    # Given alice's tasks so far and the statuses the served OpenAPI document declares per operation
    before = len(api.all_tasks())
    swagger = api.call("GET", "/swagger?format=json")
    assert swagger.status == 200, swagger.text
    declared = {
        (path, method): {int(code) for code in operation["responses"]}
        for path, operations in swagger.body["paths"].items()
        for method, operation in operations.items()
    }
    # When every hostile request is sent through the gateway
    requests = corpus(data_bucket)
    answers = {request.name: send(api, request) for request in requests}
    # Then none is a 5xx, and each has its status
    assert {name: status for name, (status, _) in answers.items() if status >= 500} == {}
    assert {name: status for name, (status, _) in answers.items()} == {request.name: request.status for request in requests}
    # And each answer names the field, the limit or the reason
    for request in requests:
        assert request.names in json.dumps(answers[request.name][1]), (request.name, answers[request.name])
    # And each status is declared for its operation
    for request in requests:
        assert request.status in declared[_operation(request.path, request.method)], request.name
    # And alice has no more tasks than before
    assert len(api.all_tasks()) == before
