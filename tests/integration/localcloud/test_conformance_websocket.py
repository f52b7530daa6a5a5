"""WebSocket gateway: REQUEST authorizer on $connect, route selection, and replies through @connections."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conformance_support import STAGE, Aws, wait_until
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from busline.localcloud.testing import RunningCloud

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

# Cold workers for the authorizer and the $connect route run inside the handshake.
HANDSHAKE_TIMEOUT_S = 20
REPLY_TIMEOUT_S = 15


def test_echo_handler_reply_reaches_a_plain_websockets_client(
    cloud: RunningCloud, aws: Aws, run_id: str
) -> None:
    # Given a client allowed by the authorizer (?token=good) on the stage set with --param
    url = f"{cloud.endpoints['websocket']}/{STAGE}?token=good"
    unrouted = json.dumps({"action": "no-such-route", "run": run_id})

    # When it sends to the echo route, to an unknown action and a non-JSON text, then closes
    with connect(url, open_timeout=HANDSHAKE_TIMEOUT_S) as client:
        client.send(json.dumps({"action": "echo", "message": f"hello {run_id}"}))
        echoed = json.loads(client.recv(timeout=REPLY_TIMEOUT_S))
        client.send(unrouted)
        fallback = json.loads(client.recv(timeout=REPLY_TIMEOUT_S))
        client.send("plain text")
        plain = json.loads(client.recv(timeout=REPLY_TIMEOUT_S))

    # Then the echo handler's post_to_connection (boto3, endpoint from the template) reached the client
    connection_id = echoed["connectionId"]
    assert echoed == {"route": "echo", "echo": f"hello {run_id}", "connectionId": connection_id}
    # And everything without a matching route went to $default with the body unchanged
    assert fallback == {"route": "$default", "body": unrouted, "connectionId": connection_id}
    assert plain == {"route": "$default", "body": "plain text", "connectionId": connection_id}
    # And $connect ran once for this connection, after the authorizer allowed it
    connects = [item for item in aws.records("ws-connect") if item["sk"] == connection_id]
    assert [(item["token"], item["principalId"], item["eventType"]) for item in connects] == [
        ("good", "fixture-user", "CONNECT")
    ]

    # And $disconnect ran once after the close
    def disconnects() -> list[dict[str, Any]] | None:
        found = [item for item in aws.records("ws-disconnect") if item["sk"] == connection_id]
        return found or None

    assert [item["eventType"] for item in wait_until(disconnects, 15, "$disconnect")] == ["DISCONNECT"]


def test_connect_denied_by_the_authorizer_is_refused(cloud: RunningCloud, aws: Aws, run_id: str) -> None:
    # Given a token the authorizer denies
    token = f"bad-{run_id}"
    url = f"{cloud.endpoints['websocket']}/{STAGE}?token={token}"

    # When a client tries to connect
    with pytest.raises(InvalidStatus) as refused:
        connect(url, open_timeout=HANDSHAKE_TIMEOUT_S)

    # Then the upgrade is refused with 403 (API Gateway's answer to an explicit Deny)
    assert refused.value.response.status_code == 403
    # And the authorizer was asked exactly once, and the $connect route never ran
    asked = [item for item in aws.records("ws-authorizer") if item["token"] == token]
    assert [item["effect"] for item in asked] == ["Deny"]
    assert [item for item in aws.records("ws-connect") if item["token"] == token] == []
