"""AWS-exact edges of the gateways: every WebSocket API of a template is served (each with its own routes,
route selection and @connections), and a REST API's binaryMediaTypes decide how bodies travel.

Real sockets on loopback; the function runtime is replaced by plain Python functions with its `invoke`
signature (the runtime is tested on its own).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from gateway_fakes import HOST, Functions, free_port
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from busline.localcloud.gateways import RestGateway, WebSocketGateway, websocket_api_urls
from busline.localcloud.model import CloudModel, Endpoints, RestRoute, WsApi
from busline.localcloud.proxy_integration import matches_media_types

pytestmark = pytest.mark.timeout(60)





def wait_for(predicate: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


# ==================================================================================================
# Every WebSocket API


PROGRESS = WsApi(logical_id="ProgressApi", api_id="progress01", name="progress",
                 route_selection_expression="$request.body.action", stage="prod",
                 routes={"$connect": "Connect", "echo": "Echo"})
CHAT = WsApi(logical_id="ChatApi", api_id="chatapi002", name="chat", route_selection_expression="$request.body.kind",
             stage="beta", routes={"whoami": "Whoami", "fail": "Fail"})


@dataclass
class TwoApis:
    gateway: WebSocketGateway
    functions: Functions
    ws: str
    management: str


@contextlib.contextmanager
def two_websocket_apis() -> Iterator[TwoApis]:
    ws_port, management_port = free_port(), free_port()
    endpoints = Endpoints(host=HOST, rest="", websocket=f"ws://{HOST}:{ws_port}", web="", aws="",
                          management=f"http://{HOST}:{management_port}", postgres="")
    model = CloudModel(region="us-east-1", account_id="123456789012", endpoints=endpoints, ws_apis=[PROGRESS, CHAT])

    def whoami(event: dict[str, Any]) -> dict[str, Any]:
        context = event["requestContext"]
        client = management_client(f"http://{HOST}:{management_port}/{context['stage']}")
        client.post_to_connection(ConnectionId=context["connectionId"],
                                  Data=json.dumps({"apiId": context["apiId"], "route": context["routeKey"]}).encode())
        return {"statusCode": 200}

    def fail(event: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("secret detail of the failure")

    functions = Functions({"Connect": lambda event: {"statusCode": 200}, "Echo": lambda event: {"statusCode": 200},
                           "Whoami": whoami, "Fail": fail})
    gateway = WebSocketGateway(model, functions, HOST, ws_port, management_port)
    gateway.start()
    try:
        yield TwoApis(gateway, functions, f"ws://{HOST}:{ws_port}", f"http://{HOST}:{management_port}")
    finally:
        gateway.stop()


def management_client(endpoint: str) -> Any:
    return boto3.client("apigatewaymanagementapi", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def test_every_websocket_api_is_served_at_its_id_and_stage() -> None:
    # Given two WebSocket APIs, the first with a $connect route
    with two_websocket_apis() as setup:
        # When clients connect at each API's URLs, and at one's id with the other's stage, and send a
        # message the second API routes by its selection expression
        replies = {}
        for path in ("", "/prod", "/progress01/prod", "/beta", "/chatapi002/beta"):
            with connect(setup.ws + path) as client:
                client.send(json.dumps({"kind": "whoami"}))
                reply = json.loads(client.recv(timeout=10))
                replies[path] = reply.get("apiId") or reply["message"]
        with pytest.raises(InvalidStatus) as refused, connect(setup.ws + "/chatapi002/prod"):
            pass

    # Then the first API serves /, /prod and /<its id>/prod (its $connect ran each time; the message is no
    # route of it), the second /beta and /<its id>/beta with its own routes; the mix is unknown
    assert replies == {"": "Forbidden", "/prod": "Forbidden", "/progress01/prod": "Forbidden",
                       "/beta": "chatapi002", "/chatapi002/beta": "chatapi002"}
    assert [event["requestContext"]["apiId"] for event in setup.functions.of("Connect")] == ["progress01"] * 3
    assert refused.value.response.status_code == 404
    assert websocket_api_urls(setup.gateway.model) == {
        "ProgressApi": f"{setup.ws}/progress01/prod", "ChatApi": f"{setup.ws}/chatapi002/beta"}


def test_a_failing_route_sends_the_generic_error_and_an_api_id_scopes_connections() -> None:
    """AWS: a route whose integration fails answers the client {"message": "Internal server error",
    "connectionId", "requestId"}, never the exception."""
    with two_websocket_apis() as setup, connect(setup.ws + "/chatapi002/beta") as client:
        # Given a client of the second API
        client.send(json.dumps({"kind": "whoami"}))
        client.recv(timeout=10)
        connection_id = setup.functions.of("Whoami")[0]["requestContext"]["connectionId"]

        # When its failing route runs, and @connections is called naming the other API, then its own
        client.send(json.dumps({"kind": "fail"}))
        failure = client.recv(timeout=10)
        other_api = management_client(f"{setup.management}/progress01/prod")
        with pytest.raises(other_api.exceptions.GoneException):
            other_api.post_to_connection(ConnectionId=connection_id, Data=b"not yours")
        management_client(f"{setup.management}/chatapi002/beta").post_to_connection(
            ConnectionId=connection_id, Data=b"yours")
        pushed = client.recv(timeout=10)

    # Then the client got API Gateway's generic message, and only its own API's push
    document = json.loads(failure)
    assert sorted(document) == ["connectionId", "message", "requestId"]
    assert (document["message"], document["connectionId"]) == ("Internal server error", connection_id)
    assert "secret" not in str(failure)
    assert pushed == "yours"


# ==================================================================================================
# REST binaryMediaTypes


@pytest.mark.parametrize(("header", "matches"), [
    ("application/octet-stream", True),
    ("Application/Octet-Stream; charset=binary", True),
    ("image/png", True),
    ("image/webp,image/*,*/*;q=0.8", True),  # only the first Accept media type counts
    ("text/html,image/png", False),
    ("*/*", False),
    ("", False),
    (None, False),
])
def test_media_types_match_exactly_or_by_wildcard(header: str | None, matches: bool) -> None:
    # Given binaryMediaTypes with an exact type and a wildcard / When a header is compared / Then it matches or not
    assert matches_media_types(header, ["application/octet-stream", "image/*"]) is matches


@contextlib.contextmanager
def rest_api_with_binary_types(functions: Functions) -> Iterator[int]:
    port = free_port()
    endpoints = Endpoints(host=HOST, rest=f"http://{HOST}:{port}", websocket="", web="", aws="", management="",
                          postgres="")
    route = RestRoute(function="Echo", method="POST", path="/echo",
                      binary_media_types=["application/octet-stream", "image/*"])
    gateway = RestGateway(CloudModel(region="us-east-1", account_id="123456789012", endpoints=endpoints,
                                     rest_routes=[route]), functions, HOST, port)
    gateway.start()
    try:
        yield port
    finally:
        gateway.stop()


def post(port: int, body: bytes, headers: dict[str, str]) -> tuple[int, http.client.HTTPMessage, bytes]:
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        connection.request("POST", "/Prod/echo", body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def test_rest_binary_media_types_decide_request_and_response_encoding() -> None:
    """AWS ("Content type conversions in API Gateway", https://docs.aws.amazon.com/apigateway/latest/
    developerguide/api-gateway-payload-encodings-workflow.html): a request whose Content-Type is among the
    binaryMediaTypes reaches the function base64-encoded; a base64 result is decoded to bytes when the
    request's first Accept media type is among them, else returned as the base64 text."""
    # Given a REST API whose binaryMediaTypes are application/octet-stream and image/*, and a function that
    # answers with the bytes it received, base64-encoded (isBase64Encoded true)
    def echo(event: dict[str, Any]) -> dict[str, Any]:
        received = base64.b64decode(event["body"]) if event["isBase64Encoded"] else event["body"].encode()
        return {"statusCode": 200, "headers": {"Content-Type": "application/octet-stream"},
                "body": base64.b64encode(received).decode(), "isBase64Encoded": True}

    functions = Functions({"Echo": echo})
    with rest_api_with_binary_types(functions) as port:
        # When text and binary bodies are posted with binary and text Accept headers
        binary = post(port, b"\x89PNG\xff", {"Content-Type": "image/png", "Accept": "image/png"})
        utf8_binary = post(port, b"plain", {"Content-Type": "application/octet-stream", "Accept": "*/*"})
        text = post(port, b'{"a": 1}', {"Content-Type": "application/json", "Accept": "application/json"})

    # Then binary Content-Types were base64 for the function (even valid UTF-8), JSON was text
    assert [(event["isBase64Encoded"], event["body"]) for _, event in functions.events] == [
        (True, base64.b64encode(b"\x89PNG\xff").decode()),
        (True, base64.b64encode(b"plain").decode()),
        (False, '{"a": 1}'),
    ]
    # And only the binary Accept got bytes back; the others got the function's base64 text
    assert [(status, body) for status, _, body in (binary, utf8_binary, text)] == [
        (200, b"\x89PNG\xff"),
        (200, base64.b64encode(b"plain")),
        (200, base64.b64encode(b'{"a": 1}')),
    ]
