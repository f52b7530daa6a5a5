"""The fixture's REST API (Lambda proxy integrations) from the outside: the scenarios of
tests/integration/localcloud/test_conformance_rest.py, sent as plain HTTP to each peer's stage URL."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import Any

from .model import Aws, Observation, Scenario

PROXY_DOC = "https://docs.aws.amazon.com/apigateway/latest/developerguide/set-up-lambda-proxy-integrations.html"
BINARY_DOC = "https://docs.aws.amazon.com/apigateway/latest/developerguide/lambda-proxy-binary-media.html"
GATEWAY_RESPONSES_DOC = (
    "https://docs.aws.amazon.com/apigateway/latest/developerguide/supported-gateway-response-types.html"
)
BINARY_PAYLOAD = b"\x00\x01fixture\xfe\xff"  # what the fixture's functions/api.py returns for /binary
RAW_BYTES = bytes([0, 1, 2, 254, 255])


def call(aws: Aws, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    """One request to the peer's stage URL: status, headers, body (error statuses are answers too)."""
    if not aws.rest_url:
        raise RuntimeError("the fixture's REST API is not deployed on this peer")
    sent = dict(headers or {})
    if aws.rest_host:
        sent["Host"] = aws.rest_host
    request = urllib.request.Request(f"{aws.rest_url}{path}", data=body, method=method, headers=sent)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def as_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def rest_get(aws: Aws) -> Observation:
    status, headers, body = call(aws, "GET", "/items/42?color=blue")
    teapot, _, teapot_body = call(aws, "GET", "/items/teapot")
    return {
        "status": status, "contentType": headers.get("Content-Type"), "item": headers.get("X-Fixture-Item"),
        "multi": headers.get_all("X-Fixture-Multi"), "body": as_json(body),
        "teapot": [teapot, as_json(teapot_body).get("id") if isinstance(as_json(teapot_body), dict) else None],
    }  # fmt: skip


def rest_post(aws: Aws) -> Observation:
    document = {"name": "widget", "count": 3}
    status, headers, body = call(aws, "POST", "/items/7", json.dumps(document).encode(),
                                 {"Content-Type": "application/json"})
    return {"status": status, "location": headers.get("Location"), "body": as_json(body)}


def rest_binary(aws: Aws) -> Observation:
    status, headers, body = call(aws, "GET", "/binary", headers={"Accept": "application/octet-stream"})
    echoed, echo_headers, echo_body = call(aws, "POST", "/binary-echo", RAW_BYTES, {
        "Content-Type": "application/octet-stream", "Accept": "application/octet-stream"})  # fmt: skip
    return {
        "binary": [status, headers.get("Content-Type"), base64.b64encode(body).decode()],
        "echo": [echoed, echo_headers.get("X-Received-Base64"), base64.b64encode(echo_body).decode()],
    }


def rest_unknown(aws: Aws) -> Observation:
    answers = {}
    for method, path in (("GET", "/no/such/route"), ("DELETE", "/items/1")):
        status, _, body = call(aws, method, path)
        answers[f"{method} {path}"] = [status, as_json(body)]
    return answers


MISSING_TOKEN = [403, {"message": "Missing Authentication Token"}]

SCENARIOS = [
    Scenario("rest.get", "proxy GET: status, single and multi-value headers, body; a custom 418", PROXY_DOC,
             {"status": 200, "contentType": "application/json", "item": "42", "multi": ["one", "two"],
              "body": {"id": "42", "query": {"color": "blue"}, "resource": "/items/{id}", "stage": "Prod"},
              "teapot": [418, "teapot"]}, rest_get, needs_fixture=True),
    Scenario("rest.post", "proxy POST: the body reaches the function, its 201 and Location come back", PROXY_DOC,
             {"status": 201, "location": "/items/7", "body": {"id": "7", "received": {"name": "widget", "count": 3}}},
             rest_post, needs_fixture=True),
    Scenario("rest.binary", "binaryMediaTypes: a base64 answer arrives as bytes, a binary body reaches the "
             "function base64-encoded", BINARY_DOC,
             {"binary": [200, "application/octet-stream", base64.b64encode(BINARY_PAYLOAD).decode()],
              "echo": [200, "true", base64.b64encode(RAW_BYTES).decode()]}, rest_binary, needs_fixture=True),
    Scenario("rest.unknown-route", "a path or method the API does not declare", GATEWAY_RESPONSES_DOC,
             {"GET /no/such/route": MISSING_TOKEN, "DELETE /items/1": MISSING_TOKEN}, rest_unknown,
             needs_fixture=True),
]
