"""AWS-exact edges of the local cloud's gateways: a failing WebSocket route, every WebSocket API of the
template served, and a REST API's binary media types."""

from __future__ import annotations

import base64
import json
import re

import pytest
from conformance_support import STAGE, Aws, http
from websockets.sync.client import connect

from busline.localcloud.testing import RunningCloud

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

# Cold workers run inside the handshake and the first message.
HANDSHAKE_TIMEOUT_S = 20
REPLY_TIMEOUT_S = 15
FAILURE_DETAIL = "fixture failure: secret detail"  # what functions/ws_second.py raises


def test_a_failing_websocket_route_answers_the_generic_error_not_the_exception(cloud: RunningCloud) -> None:
    """AWS: when a route's integration fails, API Gateway sends the client its own frame {"message":
    "Internal server error", "connectionId": ..., "requestId": ...}, nothing of the function's error."""
    # Given a client of the second WebSocket API, whose `fail` route raises
    url = cloud.endpoints["websocketApis"]["SecondWsApi"]
    with connect(url, open_timeout=HANDSHAKE_TIMEOUT_S) as client:
        client.send(json.dumps({"kind": "whoami"}))
        connection_id = json.loads(client.recv(timeout=REPLY_TIMEOUT_S))["connectionId"]
        # When it sends a message for that route
        client.send(json.dumps({"kind": "fail"}))
        frame = client.recv(timeout=REPLY_TIMEOUT_S)

    # Then the frame is API Gateway's generic error for this connection, without the exception's text
    error = json.loads(frame)
    assert sorted(error) == ["connectionId", "message", "requestId"]
    assert (error["message"], error["connectionId"]) == ("Internal server error", connection_id)
    assert len(error["requestId"]) == 16
    assert FAILURE_DETAIL not in str(frame)


def test_every_websocket_api_of_the_template_is_served(cloud: RunningCloud, aws: Aws) -> None:
    """AWS serves each WebSocket API at wss://{api-id}.execute-api.{region}.amazonaws.com/{stage}; locally
    the API id is the first path segment (endpoints.json `websocketApis`)."""
    # Given endpoints.json's URL of each WebSocket API
    urls = cloud.endpoints["websocketApis"]
    websocket, second_id = cloud.endpoints["websocket"], aws.outputs["SecondWsApiId"]
    assert sorted(urls) == ["SecondWsApi", "WsApi"]
    assert re.fullmatch(rf"{re.escape(websocket)}/[0-9a-f]{{10}}/{STAGE}", urls["WsApi"])
    assert urls["SecondWsApi"] == f"{websocket}/{second_id}/second"

    # When a client of each API sends a message its own route selection routes
    with connect(urls["WsApi"] + "?token=good", open_timeout=HANDSHAKE_TIMEOUT_S) as first:
        first.send(json.dumps({"action": "echo", "message": "to the first"}))
        first_reply = json.loads(first.recv(timeout=REPLY_TIMEOUT_S))
    replies = []
    for url in (urls["SecondWsApi"], f"{websocket}/second"):  # and the URL a template's wss:// URL becomes
        with connect(url, open_timeout=HANDSHAKE_TIMEOUT_S) as second:
            second.send(json.dumps({"kind": "whoami"}))
            replies.append(json.loads(second.recv(timeout=REPLY_TIMEOUT_S)))

    # Then the first API's authorizer and echo route answered, and the second API's whoami route saw its
    # own API id and stage, its reply pushed through @connections
    assert (first_reply["route"], first_reply["echo"]) == ("echo", "to the first")
    assert [(reply["apiId"], reply["stage"], reply["route"]) for reply in replies] == [
        (second_id, "second", "whoami")] * 2


def test_rest_binary_media_types_decide_how_bodies_travel(cloud: RunningCloud) -> None:
    """AWS ("Content type conversions in API Gateway",
    https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-payload-encodings-workflow.html):
    a request whose Content-Type is among the API's binaryMediaTypes reaches a Lambda proxy integration
    base64-encoded; a base64 result (isBase64Encoded) becomes bytes when the request's first Accept media
    type is among them, and stays base64 text otherwise."""
    # Given the REST API's BinaryMediaTypes (application/octet-stream) and BinaryEchoFunction, which sends
    # back the bytes it received base64-encoded and says whether they came base64-encoded
    url = f"{cloud.endpoints['rest']}/binary-echo"
    payload = b"\x00\x01binary\xfe\xff"

    # When a binary body asks for binary back, and a JSON body asks for JSON
    binary = http("POST", url, payload, {"Content-Type": "application/octet-stream",
                                         "Accept": "application/octet-stream"})
    text = http("POST", url, b'{"n": 1}', {"Content-Type": "application/json", "Accept": "application/json"})

    # Then the binary body travelled base64 and came back as its bytes
    assert (binary.status, binary.headers["X-Received-Base64"], binary.body) == (200, "true", payload)
    # And the JSON body travelled as text, and its base64 answer stayed text for the JSON Accept
    assert (text.status, text.headers["X-Received-Base64"], text.body) == (200, "false",
                                                                            base64.b64encode(b'{"n": 1}'))
