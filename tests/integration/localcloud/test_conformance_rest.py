"""REST gateway: the handler's status, headers and body come back unchanged; unknown routes are 404 JSON."""

from __future__ import annotations

import json

import pytest
from conformance_support import Aws, http, wait_until

from busline.localcloud.testing import RunningCloud

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

BINARY_PAYLOAD = b"\x00\x01fixture\xfe\xff"  # what functions/api.py returns base64-encoded


def test_get_returns_the_handlers_status_headers_and_body(cloud: RunningCloud) -> None:
    # Given the GET /items/{id} route of ApiFunction
    rest = cloud.endpoints["rest"]
    # When we call it with a path and a query parameter
    response = http("GET", f"{rest}/items/42?color=blue")
    # Then status, headers (single and multi-value) and body are the handler's
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["X-Fixture-Item"] == "42"
    assert response.headers.get_all("X-Fixture-Multi") == ["one", "two"]
    assert response.json() == {
        "id": "42",
        "query": {"color": "blue"},
        "resource": "/items/{id}",
        "stage": "Prod",
    }


def test_custom_status_code_is_passed_through(cloud: RunningCloud) -> None:
    # Given the handler answers 418 for the item "teapot"
    # When we ask for it
    response = http("GET", f"{cloud.endpoints['rest']}/items/teapot")
    # Then the gateway returns 418 with the handler's body
    assert response.status == 418
    assert response.json()["id"] == "teapot"


def test_post_gets_the_body_and_returns_201_with_location(cloud: RunningCloud) -> None:
    # Given a JSON document
    document = {"name": "widget", "count": 3}
    # When we POST it to /items/7
    response = http(
        "POST",
        f"{cloud.endpoints['rest']}/items/7",
        body=json.dumps(document).encode(),
        headers={"Content-Type": "application/json"},
    )
    # Then the handler saw the body and its 201 + Location come back
    assert response.status == 201
    assert response.headers["Location"] == "/items/7"
    assert response.json() == {"id": "7", "received": document}


def test_stage_prefixed_url_from_the_outputs_reaches_the_same_route(cloud: RunningCloud, aws: Aws) -> None:
    # Given the ApiUrl output (https://<api>.execute-api... rewritten to <rest>/Prod)
    api_url = aws.outputs["ApiUrl"]
    # When we call a route under it
    response = http("GET", f"{api_url}/items/9")
    # Then the stage prefix is stripped and the route answers
    assert response.status == 200
    assert response.json() == {"id": "9", "query": None, "resource": "/items/{id}", "stage": "Prod"}


def test_base64_body_is_decoded_to_bytes(cloud: RunningCloud) -> None:
    # Given a route whose handler returns isBase64Encoded=true
    # When we fetch it
    response = http(
        "GET", f"{cloud.endpoints['rest']}/binary", headers={"Accept": "application/octet-stream"}
    )
    # Then the client receives the raw bytes
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.body == BINARY_PAYLOAD


@pytest.mark.parametrize(("method", "path"), [("GET", "/no/such/route"), ("DELETE", "/items/1")])
def test_unknown_route_is_403_missing_authentication_token(cloud: RunningCloud, method: str, path: str) -> None:
    """API Gateway's MISSING_AUTHENTICATION_TOKEN gateway response: a REST API answers a path or method it
    does not declare with 403 (https://docs.aws.amazon.com/apigateway/latest/developerguide/
    supported-gateway-response-types.html)."""
    # Given a path (or a method on a known path) that no route declares
    # When we call it
    response = http(method, f"{cloud.endpoints['rest']}{path}")
    # Then the gateway answers 403 with AWS's JSON message, without invoking anything
    assert response.status == 403
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == {"message": "Missing Authentication Token"}


def test_handler_output_goes_to_its_log_file(cloud: RunningCloud, run_id: str) -> None:
    # Given ApiFunction prints one line per request
    log_file = cloud.data_dir / "logs" / "ApiFunction.log"
    # When we make a request with a unique id
    assert http("GET", f"{cloud.endpoints['rest']}/items/{run_id}").status == 200
    # Then that line is in <data-dir>/logs/ApiFunction.log
    expected = f"fixture-api GET /items/{run_id}"
    wait_until(
        lambda: log_file.exists() and expected in log_file.read_text(errors="replace"),
        10,
        f"{expected!r} in {log_file}",
    )
