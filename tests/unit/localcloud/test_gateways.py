"""REST gateway, WebSocket gateway + @connections API, static site: real sockets on loopback.

The function runtime is another team's part; here a test double (`FakeRuntime`) calls plain Python
functions with the runtime's `invoke` signature and records every call.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import boto3
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from busline.localcloud.gateways import RestGateway, StaticSite, WebSocketGateway
from busline.localcloud.model import CloudModel, Endpoints, PortInUse, RestRoute, WsApi

pytestmark = pytest.mark.timeout(60)

HOST = "127.0.0.1"
Handler = Callable[[dict[str, Any]], Any]


class FunctionTimedOut(Exception):
    """Raised by a test function to play a function that ran past its timeout."""


@dataclass
class FakeInvocationResult:
    ok: bool
    payload: Any = None
    error: str | None = None
    error_type: str | None = None
    duration_ms: float = 1.0
    timed_out: bool = False
    killed: bool = False


class FakeRuntime:
    """Same `invoke` signature as runtime.FunctionRuntime; runs handlers in the calling thread."""

    def __init__(self, functions: dict[str, Handler]) -> None:
        self.functions = functions
        self.calls: list[tuple[str, dict[str, Any], str]] = []
        self._lock = threading.Lock()

    def invoke(self, function_logical_id: str, event: dict[str, Any], *, trigger: str, allow_chaos: bool = True) -> FakeInvocationResult:
        with self._lock:
            self.calls.append((function_logical_id, event, trigger))
        try:
            payload = self.functions[function_logical_id](event)
        except FunctionTimedOut:
            return FakeInvocationResult(ok=False, error="Task timed out", error_type="TimeoutError", timed_out=True)
        except Exception as exc:  # noqa: BLE001 - the runtime reports every handler error
            return FakeInvocationResult(ok=False, error=str(exc), error_type=type(exc).__name__)
        return FakeInvocationResult(ok=True, payload=payload)

    def events_of(self, function: str) -> list[dict[str, Any]]:
        with self._lock:
            return [event for name, event, _ in self.calls if name == function]


@pytest.fixture(autouse=True)
def no_gateway_threads_left() -> Iterator[None]:
    yield
    # stop() must end the server threads, the WebSocket loop and its invocation pool.
    assert wait_for(lambda: not [t for t in threading.enumerate() if t.name.startswith("busline-")], 2.0), \
        [t.name for t in threading.enumerate()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def wait_for(predicate: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def make_model(*, rest_routes: list[RestRoute] | None = None, ws_apis: list[WsApi] | None = None,
               ws_port: int = 0, management_port: int = 0) -> CloudModel:
    endpoints = Endpoints(
        host=HOST, rest="", websocket=f"ws://{HOST}:{ws_port}", web="", aws="",
        management=f"http://{HOST}:{management_port}", postgres="",
    )
    return CloudModel(region="us-east-1", account_id="123456789012", endpoints=endpoints,
                      rest_routes=rest_routes or [], ws_apis=ws_apis or [])


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


# ==================================================================================================
# REST gateway


@contextlib.contextmanager
def rest_gateway(
    routes: list[RestRoute], functions: dict[str, Handler],
    gateway_responses: dict[str, dict[str, dict[str, str]]] | None = None,
) -> Iterator[tuple[int, FakeRuntime]]:
    runtime = FakeRuntime(functions)
    port = free_port()
    model = make_model(rest_routes=routes)
    model.rest_gateway_responses.update(gateway_responses or {})
    gateway = RestGateway(model, runtime, HOST, port)
    gateway.start()
    try:
        yield port, runtime
    finally:
        gateway.stop()


def echo(event: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": 200, "body": json.dumps({"resource": event["resource"]})}


def test_rest_returns_handler_status_headers_and_body_with_path_and_query_in_event() -> None:
    # Given a GET route with a path parameter whose handler sets status, headers and cookies
    def get_item(event: dict[str, Any]) -> dict[str, Any]:
        return {
            "statusCode": 201,
            "headers": {"X-Item": event["pathParameters"]["id"], "Content-Type": "application/json"},
            "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"], "X-Item": [event["pathParameters"]["id"]]},
            "body": json.dumps({"ok": True}),
        }

    routes = [RestRoute(function="GetItem", method="GET", path="/items/{id}", stage="Prod")]
    with rest_gateway(routes, {"GetItem": get_item}) as (port, runtime):
        # When it is called through the stage prefix with a repeated query parameter
        status, headers, body = request(port, "GET", "/Prod/items/42?color=red&color=blue&size=L",
                                        headers={"X-Trace": "t-1"})

    # Then the handler's response comes back unchanged
    assert status == 201
    assert headers.get_all("X-Item") == ["42"]  # given in both maps: merged into one
    assert headers["Content-Type"] == "application/json"
    assert headers.get_all("Set-Cookie") == ["a=1", "b=2"]
    assert json.loads(body) == {"ok": True}
    # And the handler saw a REST proxy event (v1) with the parameters
    [(function, event, trigger)] = runtime.calls
    assert (function, trigger) == ("GetItem", "api GET /items/{id}")
    assert event["resource"] == "/items/{id}"
    assert event["path"] == "/items/42"
    assert event["httpMethod"] == "GET"
    assert event["pathParameters"] == {"id": "42"}
    assert event["queryStringParameters"] == {"color": "blue", "size": "L"}
    assert event["multiValueQueryStringParameters"] == {"color": ["red", "blue"], "size": ["L"]}
    assert event["headers"]["X-Trace"] == "t-1"
    assert event["multiValueHeaders"]["X-Trace"] == ["t-1"]
    assert event["stageVariables"] is None
    assert event["body"] is None
    assert event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["resourcePath"] == "/items/{id}"
    assert context["path"] == "/Prod/items/42"
    assert context["stage"] == "Prod"
    assert context["httpMethod"] == "GET"
    assert context["accountId"] == "123456789012"
    assert context["protocol"] == "HTTP/1.1"
    assert context["identity"]["sourceIp"] == HOST
    assert len(context["requestId"]) == 36
    assert isinstance(context["requestTimeEpoch"], int)


def test_rest_without_query_string_sends_nulls_and_the_most_specific_route_wins() -> None:
    # Given overlapping routes: a literal, a parameter, a greedy proxy (ANY) and an exact POST
    routes = [
        RestRoute(function="Param", method="GET", path="/items/{id}"),
        RestRoute(function="Literal", method="GET", path="/items/special"),
        RestRoute(function="Proxy", method="ANY", path="/{proxy+}"),
        RestRoute(function="Create", method="POST", path="/items"),
    ]
    functions: dict[str, Handler] = {name: echo for name in ("Param", "Literal", "Proxy", "Create")}
    with rest_gateway(routes, functions) as (port, runtime):
        # When each kind of path is requested
        answers = [
            json.loads(request(port, "GET", path)[2])["resource"]
            for path in ("/items/special", "/items/7", "/other/a/b", "/Prod/items/7")
        ]
        post_status, _, post_body = request(port, "POST", "/items", body=b'{"name": "x"}',
                                            headers={"Content-Type": "application/json"})

    # Then literal beats parameter beats greedy, and the exact method beats ANY
    assert answers == ["/items/special", "/items/{id}", "/{proxy+}", "/items/{id}"]
    assert (post_status, json.loads(post_body)) == (200, {"resource": "/items"})
    events = [event for _, event, _ in runtime.calls]
    assert [event["queryStringParameters"] for event in events] == [None] * 5
    assert events[0]["pathParameters"] is None
    assert events[2]["pathParameters"] == {"proxy": "other/a/b"}
    assert events[4]["body"] == '{"name": "x"}'
    assert events[4]["isBase64Encoded"] is False


def test_rest_binary_bodies_travel_base64_both_ways() -> None:
    # Given a handler that answers with binary content, base64-encoded as the proxy contract says
    reply = bytes(range(256))

    def binary(event: dict[str, Any]) -> dict[str, Any]:
        return {"statusCode": 200, "headers": {"Content-Type": "application/octet-stream"},
                "body": base64.b64encode(reply).decode(), "isBase64Encoded": True}

    routes = [RestRoute(function="Upload", method="PUT", path="/blobs/{name}")]
    sent = b"\x89PNG\r\n\x1a\n\xff\xfe"
    with rest_gateway(routes, {"Upload": binary}) as (port, runtime):
        # When binary bytes are sent
        status, headers, body = request(port, "PUT", "/blobs/logo.png", body=sent,
                                        headers={"Content-Type": "application/octet-stream"})

    # Then the handler got them base64-encoded and the client got the decoded reply
    [(_, event, _)] = runtime.calls
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == sent
    assert (status, headers["Content-Type"], body) == (200, "application/octet-stream", reply)


def test_rest_unknown_route_is_403_missing_token_and_handler_failures_are_502_and_504() -> None:
    # Given a failing, a timing-out and a malformed handler, and a route the runtime cannot run
    def broken(event: dict[str, Any]) -> dict[str, Any]:
        raise ValueError("boom")

    def slow(event: dict[str, Any]) -> dict[str, Any]:
        raise FunctionTimedOut()

    routes = [
        RestRoute(function="Broken", method="GET", path="/broken"),
        RestRoute(function="Slow", method="GET", path="/slow"),
        RestRoute(function="Malformed", method="GET", path="/malformed"),
        RestRoute(function="NotDeployed", method="GET", path="/missing"),
    ]
    functions: dict[str, Handler] = {"Broken": broken, "Slow": slow, "Malformed": lambda event: {"body": "x"}}
    with rest_gateway(routes, functions) as (port, runtime):
        # When each is called, plus a path no route matches
        answers = [request(port, "GET", path) for path in ("/nowhere", "/broken", "/slow", "/malformed", "/missing")]

    # Then API Gateway's status codes and JSON messages come back
    assert [(status, json.loads(body)) for status, _, body in answers] == [
        (403, {"message": "Missing Authentication Token"}),
        (502, {"message": "Internal server error"}),
        (504, {"message": "Endpoint request timed out"}),
        (502, {"message": "Internal server error"}),
        (502, {"message": "Internal server error"}),
    ]
    assert [headers["Content-Type"] for _, headers, _ in answers] == ["application/json"] * 5
    assert [name for name, _, _ in runtime.calls] == ["Broken", "Slow", "Malformed", "NotDeployed"]


def test_rest_body_over_10_mb_is_413_without_reading_it() -> None:
    # Given a POST route
    routes = [RestRoute(function="Create", method="POST", path="/items")]
    with rest_gateway(routes, {"Create": echo}) as (port, runtime), \
            socket.create_connection((HOST, port), timeout=10) as client:
        # When an 11 MB body is announced and only its first 64 KB are sent
        size = 11 * 1024 * 1024
        client.sendall(f"POST /items HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
                       f"Content-Length: {size}\r\n\r\n".encode() + b"x" * 65536)
        response = client.makefile("rb").read()

        # And an ordinary client sends a whole 11 MB body
        status, _, whole_body_answer = request(port, "POST", "/items", body=b"y" * size)

    # Then the gateway answers 413 at once, both clients read it, and the function is never invoked
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 413 Request Entity Too Large"
    assert json.loads(body) == {"message": "Request Too Long"}
    assert (status, json.loads(whole_body_answer)) == (413, {"message": "Request Too Long"})
    assert runtime.calls == []


def test_rest_events_work_with_powertools_rest_resolver() -> None:
    # Given the app's kind of handler: a Powertools APIGatewayRestResolver with CORS
    from aws_lambda_powertools.event_handler import APIGatewayRestResolver, CORSConfig

    app = APIGatewayRestResolver(cors=CORSConfig(allow_origin="*"))

    @app.get("/tasks/<task_id>")
    def get_task(task_id: str) -> dict[str, Any]:
        return {"taskId": task_id, "owner": app.current_event.get_query_string_value("owner")}

    @app.post("/tasks")
    def create_task() -> tuple[dict[str, Any], int]:
        return {"received": app.current_event.json_body}, 201

    routes = [RestRoute(function="Api", method="GET", path="/tasks/{id}"),
              RestRoute(function="Api", method="POST", path="/tasks")]
    no_context = cast(Any, None)
    with rest_gateway(routes, {"Api": lambda event: app.resolve(event, no_context)}) as (port, _):
        # When both routes are called through the gateway
        got = request(port, "GET", "/Prod/tasks/t-42?owner=ann", headers={"Origin": "http://127.0.0.1:3002"})
        created = request(port, "POST", "/Prod/tasks", body=b'{"pipeline": "flights"}',
                          headers={"Content-Type": "application/json"})

    # Then the resolver routed them and its responses came back
    assert (got[0], json.loads(got[2])) == (200, {"taskId": "t-42", "owner": "ann"})
    assert got[1]["Access-Control-Allow-Origin"] == "*"
    assert (created[0], json.loads(created[2])) == (201, {"received": {"pipeline": "flights"}})


def test_rest_busy_port_raises_port_in_use_naming_it_and_stop_frees_it() -> None:
    # Given a port somebody else listens on
    with socket.socket() as squatter:
        squatter.bind((HOST, 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        gateway = RestGateway(make_model(), FakeRuntime({}), HOST, port)
        # When the gateway starts on it
        with pytest.raises(PortInUse) as raised:
            gateway.start()
    # Then the error names the port and what wanted it
    assert raised.value.port == port
    assert str(raised.value) == (f"port {port} on {HOST} (REST gateway) is already in use; "
                                 "pick another base with --port")
    # And once the port is free, start/stop leaves it free again
    gateway.start()
    assert not port_is_free(port)
    gateway.stop()
    assert port_is_free(port)


def test_rest_preflight_for_a_routed_path_without_options_route() -> None:
    # Given only GET/POST routes (SAM's Cors would answer OPTIONS on AWS)
    routes = [RestRoute(function="List", method="GET", path="/tasks"),
              RestRoute(function="Create", method="POST", path="/tasks")]
    with rest_gateway(routes, {"List": echo, "Create": echo}) as (port, runtime):
        # When a browser sends its preflight from the web page's origin
        status, headers, body = request(port, "OPTIONS", "/tasks", headers={
            "Origin": "http://127.0.0.1:3002", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"})

    # Then it is allowed without invoking anything
    assert (status, body) == (204, b"")
    assert headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:3002"
    assert headers["Access-Control-Allow-Methods"] == "GET,POST,OPTIONS"
    assert headers["Access-Control-Allow-Headers"] == "content-type"
    assert runtime.calls == []


# ==================================================================================================
# WebSocket gateway


@dataclass
class WsSetup:
    gateway: WebSocketGateway
    runtime: FakeRuntime
    ws_port: int
    management_port: int

    @property
    def url(self) -> str:
        return f"ws://{HOST}:{self.ws_port}/prod"

    def management_client(self) -> Any:
        return boto3.client(
            "apigatewaymanagementapi", endpoint_url=f"http://{HOST}:{self.management_port}/prod",
            region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing",
        )


@contextlib.contextmanager
def ws_gateway(functions: dict[str, Handler], routes: dict[str, str], *, authorizer: str | None = None,
               identity_sources: list[str] | None = None) -> Iterator[WsSetup]:
    ws_port, management_port = free_port(), free_port()
    api = WsApi(logical_id="ProgressApi", api_id="wsapi12345", name="progress",
                route_selection_expression="$request.body.action", stage="prod", routes=routes,
                connect_authorizer=authorizer, authorizer_identity_sources=identity_sources or [])
    model = make_model(ws_apis=[api], ws_port=ws_port, management_port=management_port)
    runtime = FakeRuntime(functions)
    gateway = WebSocketGateway(model, runtime, HOST, ws_port, management_port)
    gateway.start()
    try:
        yield WsSetup(gateway, runtime, ws_port, management_port)
    finally:
        gateway.stop()


def ok(event: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": 200}


WS_ROUTES = {"$connect": "Connect", "$disconnect": "Disconnect", "subscribe": "Subscribe", "$default": "Default"}


def test_ws_connect_invokes_connect_route_with_api_gateway_event() -> None:
    # Given a WebSocket API with a $connect route
    with ws_gateway({"Connect": ok, "Disconnect": ok}, WS_ROUTES) as setup, \
            connect(setup.url + "?token=abc&token=def&lang=en", additional_headers={"X-Client": "tests"},
                    user_agent_header="pytest-ws"):
        # When a client connects (the handshake has completed here)
        [connect_event] = setup.runtime.events_of("Connect")

    # Then $connect saw API Gateway's CONNECT event
    context = connect_event["requestContext"]
    assert context["routeKey"] == "$connect"
    assert context["eventType"] == "CONNECT"
    assert context["messageDirection"] == "IN"
    assert context["stage"] == "prod"
    assert context["apiId"] == "wsapi12345"
    assert context["identity"] == {"sourceIp": HOST, "userAgent": "pytest-ws"}
    assert context["connectionId"].endswith("=")
    assert len(context["connectionId"]) == 16
    assert context["domainName"] == f"{HOST}:{setup.ws_port}"
    assert isinstance(context["connectedAt"], int)
    assert isinstance(context["requestTimeEpoch"], int)
    assert "authorizer" not in context
    assert connect_event["headers"]["X-Client"] == "tests"
    assert connect_event["queryStringParameters"] == {"token": "def", "lang": "en"}
    assert connect_event["multiValueQueryStringParameters"] == {"token": ["abc", "def"], "lang": ["en"]}
    assert connect_event["isBase64Encoded"] is False


def test_ws_messages_route_by_action_then_default_and_handlers_push_through_management_api() -> None:
    # Given a subscribe route that answers through the management API, like unchanged Lambda code does
    pushes: list[str] = []

    def subscribe(event: dict[str, Any]) -> dict[str, Any]:
        connection_id = event["requestContext"]["connectionId"]
        client = boto3.client(
            "apigatewaymanagementapi", endpoint_url=f"http://{HOST}:{management_port}/prod",
            region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing",
        )
        client.post_to_connection(ConnectionId=connection_id, Data=json.dumps({"subscribed": True}).encode())
        pushes.append(connection_id)
        return {"statusCode": 200}

    functions: dict[str, Handler] = {"Connect": ok, "Disconnect": ok, "Subscribe": subscribe, "Default": ok}
    with ws_gateway(functions, WS_ROUTES) as setup:
        management_port = setup.management_port
        with connect(setup.url) as client:
            # When a routed message and two unrouted ones arrive
            client.send(json.dumps({"action": "subscribe", "taskId": "t-1"}))
            pushed = json.loads(client.recv(timeout=10))
            client.send(json.dumps({"action": "nope"}))
            client.send("not json")
            assert wait_for(lambda: len(setup.runtime.events_of("Default")) == 2)

    # Then the routed one reached Subscribe, whose post_to_connection came back to the client
    assert pushed == {"subscribed": True}
    [subscribe_event] = setup.runtime.events_of("Subscribe")
    assert subscribe_event["requestContext"]["routeKey"] == "subscribe"
    assert subscribe_event["requestContext"]["eventType"] == "MESSAGE"
    assert len(subscribe_event["requestContext"]["messageId"]) == 16
    assert json.loads(subscribe_event["body"]) == {"action": "subscribe", "taskId": "t-1"}
    assert subscribe_event["isBase64Encoded"] is False
    assert pushes == [subscribe_event["requestContext"]["connectionId"]]
    # And the others went to $default
    default_events = setup.runtime.events_of("Default")
    assert sorted(event["body"] for event in default_events) == sorted(['{"action": "nope"}', "not json"])
    assert {event["requestContext"]["routeKey"] for event in default_events} == {"$default"}


def test_ws_message_without_route_gets_forbidden_and_failing_route_internal_error() -> None:
    # Given an API with no $default route and a route whose handler fails
    def broken(event: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("boom")

    routes = {"subscribe": "Subscribe"}
    with ws_gateway({"Subscribe": broken}, routes) as setup, connect(setup.url) as client:
        # When an unrouted and a failing message are sent
        client.send(json.dumps({"action": "unknown"}))
        forbidden = json.loads(client.recv(timeout=10))
        client.send(json.dumps({"action": "subscribe"}))
        failed = json.loads(client.recv(timeout=10))

    # Then the client gets API Gateway's messages
    assert forbidden["message"] == "Forbidden"
    assert failed["message"] == "Internal server error"
    assert forbidden["connectionId"] == failed["connectionId"]
    assert len(forbidden["requestId"]) == 16
    assert len(setup.runtime.events_of("Subscribe")) == 1


def test_ws_after_close_disconnect_is_invoked_and_post_is_gone() -> None:
    # Given a connected client whose connection the management API knows
    with ws_gateway({"Connect": ok, "Disconnect": ok}, WS_ROUTES) as setup:
        management = setup.management_client()
        with connect(setup.url, user_agent_header="pytest-ws") as client:
            connection_id = setup.runtime.events_of("Connect")[0]["requestContext"]["connectionId"]
            info = management.get_connection(ConnectionId=connection_id)
            management.post_to_connection(ConnectionId=connection_id, Data=b"\x00\xff binary")
            received = client.recv(timeout=10)
        # When the client closes
        assert wait_for(lambda: len(setup.runtime.events_of("Disconnect")) == 1)

        # Then posting raises GoneException, as boto3 does against API Gateway
        with pytest.raises(management.exceptions.GoneException):
            management.post_to_connection(ConnectionId=connection_id, Data=b"late")
        with pytest.raises(management.exceptions.GoneException):
            management.get_connection(ConnectionId=connection_id)

    assert info["Identity"] == {"SourceIp": HOST, "UserAgent": "pytest-ws"}
    assert info["ConnectedAt"].year >= 2024
    assert info["LastActiveAt"] >= info["ConnectedAt"]
    assert received == b"\x00\xff binary"  # not UTF-8 -> a binary frame
    [disconnect_event] = setup.runtime.events_of("Disconnect")
    assert disconnect_event["requestContext"]["routeKey"] == "$disconnect"
    assert disconnect_event["requestContext"]["eventType"] == "DISCONNECT"
    assert disconnect_event["requestContext"]["connectionId"] == connection_id
    assert disconnect_event["requestContext"]["disconnectStatusCode"] == 1000


def test_ws_delete_connection_closes_the_client() -> None:
    # Given a connected client
    with ws_gateway({"Connect": ok, "Disconnect": ok}, WS_ROUTES) as setup, connect(setup.url) as client:
        connection_id = setup.runtime.events_of("Connect")[0]["requestContext"]["connectionId"]
        # When a function deletes the connection
        setup.management_client().delete_connection(ConnectionId=connection_id)
        # Then the client sees the close and $disconnect runs
        with pytest.raises(Exception, match="1000"):
            client.recv(timeout=10)
        assert wait_for(lambda: len(setup.runtime.events_of("Disconnect")) == 1)


def test_ws_connect_route_refusing_refuses_the_upgrade() -> None:
    # Given a $connect route that answers 403
    functions: dict[str, Handler] = {"Connect": lambda event: {"statusCode": 403}, "Disconnect": ok}
    with ws_gateway(functions, WS_ROUTES) as setup:
        # When a client connects, Then the upgrade is refused with that status
        with pytest.raises(InvalidStatus) as refused, connect(setup.url):
            pass
        assert refused.value.response.status_code == 403
        assert setup.runtime.events_of("Disconnect") == []


def test_ws_authorizer_deny_unauthorized_and_allow() -> None:
    # Given a REQUEST authorizer keyed on the `token` query parameter
    def authorize(event: dict[str, Any]) -> dict[str, Any]:
        token = event["queryStringParameters"]["token"]
        if token == "bad":
            raise Exception("Unauthorized")
        effect = "Allow" if token == "good" else "Deny"
        return {
            "principalId": "user-1",
            "policyDocument": {"Version": "2012-10-17", "Statement": [
                {"Action": "execute-api:Invoke", "Effect": effect, "Resource": event["methodArn"]}]},
            "context": {"tenant": "acme"},
        }

    functions: dict[str, Handler] = {"Auth": authorize, "Connect": ok, "Disconnect": ok}
    with ws_gateway(functions, WS_ROUTES, authorizer="Auth",
                    identity_sources=["route.request.querystring.token"]) as setup:
        # When clients connect with a denied, an invalid and no token
        statuses = []
        for query in ("?token=deny", "?token=bad", ""):
            with pytest.raises(InvalidStatus) as refused, connect(setup.url + query):
                pass
            statuses.append(refused.value.response.status_code)
        # And with a good one
        with connect(setup.url + "?token=good"):
            pass

    # Then the refusals are 403, 401 and 401 (missing identity source: the authorizer is not called)
    assert statuses == [403, 401, 401]
    auth_events = setup.runtime.events_of("Auth")
    assert len(auth_events) == 3
    assert auth_events[0]["type"] == "REQUEST"
    assert auth_events[0]["methodArn"] == "arn:aws:execute-api:us-east-1:123456789012:wsapi12345/prod/$connect"
    assert auth_events[0]["requestContext"]["eventType"] == "CONNECT"
    assert auth_events[0]["requestContext"]["routeKey"] == "$connect"
    # And only the allowed client reached $connect, with the authorizer's principal and context
    [connect_event] = setup.runtime.events_of("Connect")
    assert connect_event["requestContext"]["authorizer"] == {"principalId": "user-1", "tenant": "acme"}


def test_ws_plain_http_and_unknown_paths_never_reach_connect() -> None:
    # Given a WebSocket API on stage `prod`
    with ws_gateway({"Connect": ok, "Disconnect": ok}, WS_ROUTES) as setup:
        # When a plain HTTP GET and a WebSocket upgrade on a foreign path arrive
        plain_status, _, _ = request(setup.ws_port, "GET", "/prod")
        with pytest.raises(InvalidStatus) as refused, connect(f"ws://{HOST}:{setup.ws_port}/other"):
            pass

    # Then they are answered 426 and 404 and $connect never ran
    assert (plain_status, refused.value.response.status_code) == (426, 404)
    assert setup.runtime.calls == []


def test_ws_busy_port_raises_port_in_use_and_stop_frees_both_ports() -> None:
    # Given a running gateway with a client connected
    with ws_gateway({"Connect": ok, "Disconnect": ok}, WS_ROUTES) as setup:
        ws_port, management_port = setup.ws_port, setup.management_port
        client = connect(setup.url)
        # When a second gateway wants the same ports
        second = WebSocketGateway(setup.gateway.model, setup.runtime, HOST, ws_port, free_port())
        with pytest.raises(PortInUse) as raised:
            second.start()
        assert (raised.value.port, "(WebSocket gateway)" in str(raised.value)) == (ws_port, True)
        third = WebSocketGateway(setup.gateway.model, setup.runtime, HOST, free_port(), management_port)
        with pytest.raises(PortInUse) as raised_management:
            third.start()
        assert raised_management.value.port == management_port
        assert "(@connections management API)" in str(raised_management.value)
    # Then after stop() both ports are free (even with a client that never closed)
    client.close()
    assert (port_is_free(ws_port), port_is_free(management_port)) == (True, True)
    assert port_is_free(third.ws_port)


# ==================================================================================================
# Static site


def test_static_site_serves_files_index_and_config_without_caching(tmp_path: Path) -> None:
    # Given a web folder with an index and a module
    (tmp_path / "index.html").write_text("<h1>Busline</h1>")
    (tmp_path / "app.js").write_text("export const x = 1;")
    config = {"rest": "http://127.0.0.1:3000", "websocket": "ws://127.0.0.1:3001"}
    port = free_port()
    site = StaticSite(tmp_path, config, HOST, port)
    site.start()
    try:
        # When the page, a script, the config and a missing file are fetched
        index = request(port, "GET", "/")
        script = request(port, "GET", "/app.js")
        served_config = request(port, "GET", "/config.json?v=1")
        missing = request(port, "GET", "/nope.html")
    finally:
        site.stop()

    # Then each comes back with no-cache headers
    assert (index[0], index[2]) == (200, b"<h1>Busline</h1>")
    assert (script[0], script[1]["Content-Type"]) == (200, "text/javascript")
    assert (served_config[0], json.loads(served_config[2])) == (200, config)
    assert served_config[1]["Content-Type"] == "application/json"
    assert missing[0] == 404
    assert [answer[1]["Cache-Control"] for answer in (index, script, served_config)] == [
        "no-store, no-cache, must-revalidate, max-age=0"] * 3
    assert port_is_free(port)


def test_static_site_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    site = StaticSite(tmp_path / "web", {}, HOST, free_port())
    with pytest.raises(Exception, match=r"web directory .*/web does not exist"):
        site.start()


# ==================================================================================================
# REST gateway: Lambda authorizers and gateway responses


def _policy(effect: str, resource: str) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}]}


def test_rest_token_authorizer_allows_denies_caches_and_hands_its_context_to_the_function() -> None:
    from busline.localcloud.model import RestAuthorizer

    # Given a TOKEN authorizer (cached 300 s, token must look like "allow-*" or "deny-*") in front of a route
    def authorize(event: dict[str, Any]) -> dict[str, Any]:
        token = event["authorizationToken"]
        if token == "raise-unauthorized":
            raise Exception("Unauthorized")  # noqa: TRY002 - API Gateway's contract
        if token == "explode":
            raise RuntimeError("bug in the authorizer")
        effect = "Allow" if token.startswith("allow") else "Deny"
        # every item, not just this one: the answer is cached and reused for the other items
        every_item = event["methodArn"].rsplit("/", 1)[0] + "/*"
        return {"principalId": f"user-{token}", "policyDocument": _policy(effect, every_item),
                "context": {"tenant": "acme", "tier": 2}}

    authorizer = RestAuthorizer(name="Tokens", kind="token", function="Auth",
                                identity_sources=["method.request.header.Authorization"],
                                identity_validation=r"(allow|deny|raise|explode)-?.*", ttl_s=300)
    routes = [RestRoute(function="Echo", method="GET", path="/items/{id}", stage="dev", authorizer=authorizer)]
    functions: dict[str, Handler] = {
        "Echo": lambda event: {"statusCode": 200, "body": json.dumps(event["requestContext"]["authorizer"])},
        "Auth": authorize,
    }
    with rest_gateway(routes, functions) as (port, runtime):
        # When it is called without a token, with a malformed one, allowed (twice), denied, refused and broken
        answers = [
            request(port, "GET", "/dev/items/1"),
            request(port, "GET", "/dev/items/1", headers={"Authorization": "nonsense"}),
            request(port, "GET", "/dev/items/1", headers={"Authorization": "allow-ada"}),
            request(port, "GET", "/dev/items/2", headers={"Authorization": "allow-ada"}),
            request(port, "GET", "/dev/items/1", headers={"Authorization": "deny-bob"}),
            request(port, "GET", "/dev/items/1", headers={"Authorization": "raise-unauthorized"}),
            request(port, "GET", "/dev/items/1", headers={"Authorization": "explode"}),
        ]
        auth_events = runtime.events_of("Auth")

    # Then API Gateway's answers come back, and only allowed requests reach the function
    statuses = [(status, json.loads(body)) for status, _, body in answers]
    assert statuses[0] == (401, {"message": "Unauthorized"})
    assert statuses[1] == (401, {"message": "Unauthorized"})
    assert statuses[4] == (403, {"Message": "User is not authorized to access this resource with an explicit deny"})
    assert statuses[5] == (401, {"message": "Unauthorized"})
    assert statuses[6] == (500, {"message": None})
    for status, context in statuses[2:4]:
        assert status == 200
        assert {key: context[key] for key in ("principalId", "tenant", "tier")} == {
            "principalId": "user-allow-ada", "tenant": "acme", "tier": 2}
    # And the authorizer ran once per distinct token (the second allow-ada came from the cache; the
    # missing and malformed tokens never invoked it), with the TOKEN event shape
    assert [event["authorizationToken"] for event in auth_events] == [
        "allow-ada", "deny-bob", "raise-unauthorized", "explode"]
    assert auth_events[0] == {
        "type": "TOKEN", "authorizationToken": "allow-ada",
        "methodArn": f"arn:aws:execute-api:us-east-1:123456789012:{auth_events[0]['methodArn'].split(':')[5].split('/')[0]}/dev/GET/items/1",
    }
    assert [name for name, _, _ in runtime.calls].count("Echo") == 2


def test_rest_request_authorizer_reads_the_query_string_and_gateway_responses_add_headers() -> None:
    from busline.localcloud.model import RestAuthorizer

    # Given a REQUEST authorizer reading ?key= (no caching) and DEFAULT_4XX headers for the API
    def authorize(event: dict[str, Any]) -> dict[str, Any]:
        allowed = event["queryStringParameters"]["key"] == "open-sesame"
        return {"principalId": "k", "policyDocument": _policy("Allow" if allowed else "Deny", "arn:aws:execute-api:*")}

    authorizer = RestAuthorizer(name="Keys", kind="request", function="Auth",
                                identity_sources=["method.request.querystring.key"], ttl_s=0)
    routes = [RestRoute(function="Echo", method="GET", path="/things", stage="dev", authorizer=authorizer,
                        api_logical_id="Api")]
    functions: dict[str, Handler] = {"Echo": lambda event: {"statusCode": 200, "body": "{}"}, "Auth": authorize}
    responses = {"Api": {"DEFAULT_4XX": {"Access-Control-Allow-Origin": "*"}}}
    with rest_gateway(routes, functions, responses) as (port, runtime):
        # When it is called without the key, with a wrong one, and with the right one (twice)
        missing = request(port, "GET", "/dev/things")
        wrong = request(port, "GET", "/dev/things?key=guess")
        right = [request(port, "GET", "/dev/things?key=open-sesame") for _ in range(2)]
    # Then refusals carry the gateway response header, and without caching each request asked the authorizer
    assert (missing[0], missing[1]["Access-Control-Allow-Origin"]) == (401, "*")
    assert (wrong[0], wrong[1]["Access-Control-Allow-Origin"]) == (403, "*")
    assert [status for status, _, _ in right] == [200, 200]
    auth_events = runtime.events_of("Auth")
    assert len(auth_events) == 3
    assert auth_events[0]["type"] == "REQUEST"
    assert auth_events[0]["httpMethod"] == "GET"
    assert auth_events[0]["methodArn"].endswith("/dev/GET/things")
