"""WebSocket gateway (API Gateway WebSocket API) and its @connections management API.

The WebSocket server runs on its own thread and event loop; function invocations block, so they run on
a thread pool. The management API is a ThreadingHTTPServer whose threads hand sends over to the
gateway loop with `asyncio.run_coroutine_threadsafe`.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import errno
import http
import json
import sys
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from busline.localcloud.authorizers import policy_effect
from busline.localcloud.http_io import (
    HttpServerThread,
    Invoker,
    JsonResponder,
    api_gateway_request_time,
    epoch_ms,
    invoke_safely,
    now_utc,
    random_token,
    split_headers,
    split_query,
)
from busline.localcloud.model import CloudModel, PortInUse, WsApi

MAX_FRAME_BYTES = 128 * 1024  # API Gateway WebSocket message quota
CONNECT_TIMEOUT_S = 35.0  # authorizer + $connect on cold workers; API Gateway allows 29 s per integration
SEND_TIMEOUT_S = 10.0
_KNOWN_STATUSES = {status.value for status in http.HTTPStatus}


@dataclass
class Connection:
    connection_id: str
    api: WsApi
    socket: ServerConnection
    connected_at: datetime
    source_ip: str
    user_agent: str | None
    headers: dict[str, str]
    multi_headers: dict[str, list[str]]
    authorizer: dict[str, Any] | None = None
    last_active_at: datetime = field(default_factory=now_utc)


@dataclass
class _Handshake:
    """What process_request learned, handed to the connection handler once the upgrade succeeded."""

    api: WsApi
    connection_id: str
    connected_at: datetime
    authorizer: dict[str, Any] | None


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _identity_value(source: str, headers: Headers, query: dict[str, str] | None) -> str | None:
    """`route.request.header.Auth` / `route.request.querystring.token` (also the `$request.` form)."""
    for prefix, kind in (("route.request.header.", "header"), ("$request.header.", "header"),
                         ("route.request.querystring.", "query"), ("$request.querystring.", "query")):
        if source.startswith(prefix):
            name = source[len(prefix):]
            return headers.get(name) if kind == "header" else (query or {}).get(name)
    return None


def select_route(api: WsApi, body: str | None) -> str | None:
    """The route key for a message: the selection expression's value if routed, else `$default`."""
    expression = api.route_selection_expression or ""
    prefix = "$request.body."
    if body is not None and expression.startswith(prefix):
        try:
            value: Any = json.loads(body)
        except ValueError:
            value = None
        for key in expression[len(prefix):].split("."):
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, str | int | float | bool) and str(value) in api.routes:
            return str(value)
    return "$default" if "$default" in api.routes else None


def websocket_api_urls(model: CloudModel) -> dict[str, str]:
    """Each WebSocket API's connection URL (logical id -> URL), as its stage's wss:// URL on AWS."""
    return {api.logical_id: model.endpoints.websocket + api.local_path for api in model.ws_apis}


class WebSocketGateway:
    """Serves every `model.ws_apis` entry on ws_port and their @connections API on management_port.

    Each API is at its `local_path` (`/{api-id}/{stage}`), and at `/{stage}` unless an API before it has
    that stage: the template's `wss://{api-id}.execute-api…/{stage}` URLs are localized to the latter. The
    first API is also at `/`.
    """

    WHAT = "WebSocket gateway"
    MANAGEMENT_WHAT = "@connections management API"

    def __init__(self, model: CloudModel, runtime: Invoker, host: str, ws_port: int, management_port: int) -> None:
        self.model = model
        self.runtime = runtime
        self.host = host
        self.ws_port = ws_port
        self.management_port = management_port
        self.apis = list(model.ws_apis)
        self._connections: dict[str, Connection] = {}
        self._handshakes: dict[uuid.UUID, _Handshake] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._stopping = False
        self._management = HttpServerThread(host, management_port, self._management_handler(), self.MANAGEMENT_WHAT)

    # ---------------------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"{self.WHAT} is already started")
        self._stopping = False
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="busline-ws-invoke")
        loop = asyncio.new_event_loop()
        started: concurrent.futures.Future[None] = concurrent.futures.Future()
        thread = threading.Thread(target=self._run_loop, args=(loop, started), name="busline-websocket", daemon=True)
        thread.start()
        try:
            started.result(timeout=10)
        except BaseException:
            thread.join(timeout=5)
            self._pool.shutdown(wait=False)
            self._pool = None
            raise
        self._loop, self._thread = loop, thread
        try:
            self._management.start()
        except BaseException:
            self.stop()
            raise

    def _run_loop(self, loop: asyncio.AbstractEventLoop, started: concurrent.futures.Future[None]) -> None:
        asyncio.set_event_loop(loop)
        try:
            self._server = loop.run_until_complete(self._open_server())
        except OSError as exc:
            error: BaseException = (PortInUse(self.host, self.ws_port, self.WHAT)
                                    if exc.errno == errno.EADDRINUSE else exc)
            started.set_exception(error)
            loop.close()
            return
        except BaseException as exc:  # noqa: BLE001 - handed to the thread that called start()
            started.set_exception(exc)
            loop.close()
            return
        started.set_result(None)
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _open_server(self) -> Server:
        return await serve(
            self._serve_connection, self.host, self.ws_port,
            process_request=self._process_request,
            open_timeout=CONNECT_TIMEOUT_S,
            max_size=MAX_FRAME_BYTES,
            server_header="busline-local",
        )

    def stop(self) -> None:
        self._stopping = True
        self._management.stop()
        loop, thread, server = self._loop, self._thread, self._server
        self._loop = self._thread = self._server = None
        if loop is not None and server is not None:
            async def close() -> None:
                server.close()
                await server.wait_closed()

            with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
                asyncio.run_coroutine_threadsafe(close(), loop).result(timeout=15)
            loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=10)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        with self._lock:
            self._connections.clear()
            self._handshakes.clear()

    # ---------------------------------------------------------------------------------------- events

    def _request_context(self, api: WsApi, route_key: str, event_type: str, connection_id: str,
                         connected_at: datetime, source_ip: str, user_agent: str | None,
                         authorizer: dict[str, Any] | None) -> dict[str, Any]:
        moment = now_utc()
        context: dict[str, Any] = {
            "routeKey": route_key,
            "eventType": event_type,
            "extendedRequestId": random_token(15, "="),
            "requestTime": api_gateway_request_time(moment),
            "messageDirection": "IN",
            "stage": api.stage,
            "connectedAt": epoch_ms(connected_at),
            "requestTimeEpoch": epoch_ms(moment),
            "identity": {"sourceIp": source_ip, "userAgent": user_agent},
            "requestId": random_token(15, "="),
            "domainName": f"{self.host}:{self.ws_port}",
            "connectionId": connection_id,
            "apiId": api.api_id,
        }
        if authorizer is not None:
            context["authorizer"] = authorizer
        return context

    def _method_arn(self, api: WsApi, route_key: str) -> str:
        return f"arn:aws:execute-api:{self.model.region}:{self.model.account_id}:{api.api_id}/{api.stage}/{route_key}"

    async def _invoke(self, function: str, event: dict[str, Any], trigger: str) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._pool, lambda: invoke_safely(self.runtime, function, event, trigger))

    # ---------------------------------------------------------------------------------------- handshake

    def api_at(self, path: str) -> WsApi | None:
        """The API a connection URL's path names, None if none does."""
        segments = [unquote(segment) for segment in path.split("/") if segment]
        if not segments:
            return self.apis[0] if self.apis else None
        if len(segments) == 1:
            return next((api for api in self.apis if segments[0] == api.stage), None)
        return next((api for api in self.apis if segments == [api.api_id, api.stage]), None)

    async def _process_request(self, socket: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        api = self.api_at(url.path)
        if api is None:
            return socket.respond(http.HTTPStatus.NOT_FOUND, '{"message": "Not Found"}')
        if "websocket" not in request.headers.get("Upgrade", "").lower():
            # A plain HTTP request (a health check, a browser tab) must not run the $connect route.
            return socket.respond(http.HTTPStatus.UPGRADE_REQUIRED, "WebSocket connections only\n")
        try:
            handshake = await self._authorize_and_connect(api, socket, request, url.query)
        except _Refused as refused:
            status = refused.status if refused.status in _KNOWN_STATUSES else 500
            response = socket.respond(status, json.dumps({"message": refused.message}))
            del response.headers["Content-Type"]
            response.headers["Content-Type"] = "application/json"
            return response
        with self._lock:
            self._handshakes[socket.id] = handshake
        return None

    async def _authorize_and_connect(self, api: WsApi, socket: ServerConnection, request: Request,
                                     query_string: str) -> _Handshake:
        connection_id = random_token(15, "=")
        connected_at = now_utc()
        headers, multi_headers = split_headers(list(request.headers.raw_items()))
        query, multi_query = split_query(query_string)
        source_ip = str(socket.remote_address[0]) if socket.remote_address else "127.0.0.1"
        user_agent = request.headers.get("User-Agent")
        authorizer: dict[str, Any] | None = None

        if api.connect_authorizer:
            for source in api.authorizer_identity_sources:
                if not _identity_value(source, request.headers, query):
                    raise _Refused(401, "Unauthorized")  # API Gateway does not even call the authorizer
            context = self._request_context(api, "$connect", "CONNECT", connection_id, connected_at,
                                            source_ip, user_agent, None)
            event = {
                "type": "REQUEST",
                "methodArn": self._method_arn(api, "$connect"),
                "headers": headers,
                "multiValueHeaders": multi_headers,
                "queryStringParameters": query or {},
                "multiValueQueryStringParameters": multi_query or {},
                "stageVariables": {},
                "requestContext": context,
            }
            outcome = await self._invoke(api.connect_authorizer, event, "websocket authorizer")
            authorizer = self._authorizer_context(api, outcome)

        connect_function = api.routes.get("$connect")
        if connect_function:
            connect_event: dict[str, Any] = {
                "headers": headers,
                "multiValueHeaders": multi_headers,
                "requestContext": self._request_context(api, "$connect", "CONNECT", connection_id,
                                                        connected_at, source_ip, user_agent, authorizer),
                "isBase64Encoded": False,
            }
            if query is not None:
                connect_event["queryStringParameters"] = query
                connect_event["multiValueQueryStringParameters"] = multi_query
            outcome = await self._invoke(connect_function, connect_event, "websocket $connect")
            if not outcome.ok:
                raise _Refused(500, "Internal server error")
            status = _status_of(outcome.payload)
            if not 200 <= status < 300:
                raise _Refused(status if 400 <= status <= 599 else 500, "Forbidden")
        return _Handshake(api, connection_id, connected_at, authorizer)

    def _authorizer_context(self, api: WsApi, outcome: Any) -> dict[str, Any]:
        if not outcome.ok:
            if (outcome.error or "").strip() == "Unauthorized":
                raise _Refused(401, "Unauthorized")
            print(f"[{self.WHAT}] authorizer {api.connect_authorizer} failed: {outcome.error_type}: {outcome.error}",
                  file=sys.stderr)
            raise _Refused(500, "Internal server error")  # AuthorizerConfigurationException on AWS
        payload = outcome.payload
        if not isinstance(payload, dict) or "policyDocument" not in payload:
            print(f"[{self.WHAT}] authorizer {api.connect_authorizer} returned no policyDocument", file=sys.stderr)
            raise _Refused(500, "Internal server error")
        if policy_effect(payload["policyDocument"], self._method_arn(api, "$connect")) != "Allow":
            raise _Refused(403, "Forbidden")
        context = payload.get("context") or {}
        return {"principalId": payload.get("principalId"), **(context if isinstance(context, dict) else {})}

    # ---------------------------------------------------------------------------------------- messages

    async def _serve_connection(self, socket: ServerConnection) -> None:
        with self._lock:
            handshake = self._handshakes.pop(socket.id, None)
        if handshake is None:
            return
        api = handshake.api
        request = socket.request
        headers, multi_headers = split_headers(list(request.headers.raw_items()) if request else [])
        connection = Connection(
            connection_id=handshake.connection_id,
            api=api,
            socket=socket,
            connected_at=handshake.connected_at,
            source_ip=str(socket.remote_address[0]) if socket.remote_address else "127.0.0.1",
            user_agent=request.headers.get("User-Agent") if request else None,
            headers=headers,
            multi_headers=multi_headers,
            authorizer=handshake.authorizer,
        )
        with self._lock:
            self._connections[connection.connection_id] = connection
        pending: set[asyncio.Task[None]] = set()
        try:
            async for message in socket:
                connection.last_active_at = now_utc()
                # Like API Gateway, a slow route does not hold back the next message.
                task = asyncio.create_task(self._route_message(api, connection, message))
                pending.add(task)
                task.add_done_callback(pending.discard)
        except ConnectionClosed:
            pass
        finally:
            with self._lock:
                self._connections.pop(connection.connection_id, None)
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        if not self._stopping:
            await self._disconnect(api, connection, socket)

    async def _route_message(self, api: WsApi, connection: Connection, message: str | bytes) -> None:
        if isinstance(message, bytes):
            try:
                body, is_base64 = message.decode("utf-8"), False
            except UnicodeDecodeError:
                body, is_base64 = base64.b64encode(message).decode("ascii"), True
        else:
            body, is_base64 = message, False
        route_key = select_route(api, None if is_base64 else body)
        context = self._request_context(api, route_key or "$default", "MESSAGE", connection.connection_id,
                                        connection.connected_at, connection.source_ip, connection.user_agent,
                                        connection.authorizer)
        context["messageId"] = random_token(15, "=")
        if route_key is None:
            await self._send_error(connection, "Forbidden", context["requestId"])
            return
        event = {"requestContext": context, "body": body, "isBase64Encoded": is_base64}
        outcome = await self._invoke(api.routes[route_key], event, f"websocket {route_key}")
        if not outcome.ok:
            await self._send_error(connection, "Internal server error", context["requestId"])

    async def _send_error(self, connection: Connection, message: str, request_id: str) -> None:
        document = {"message": message, "connectionId": connection.connection_id, "requestId": request_id}
        with contextlib.suppress(ConnectionClosed):
            await connection.socket.send(json.dumps(document))

    async def _disconnect(self, api: WsApi, connection: Connection, socket: ServerConnection) -> None:
        function = api.routes.get("$disconnect")
        if not function:
            return
        context = self._request_context(api, "$disconnect", "DISCONNECT", connection.connection_id,
                                        connection.connected_at, connection.source_ip, connection.user_agent,
                                        connection.authorizer)
        context["disconnectStatusCode"] = socket.close_code if socket.close_code is not None else 1006
        context["disconnectReason"] = socket.close_reason or ""
        event = {
            "headers": connection.headers,
            "multiValueHeaders": connection.multi_headers,
            "requestContext": context,
            "isBase64Encoded": False,
        }
        await self._invoke(function, event, "websocket $disconnect")

    # ---------------------------------------------------------------------------------------- @connections

    def connection(self, connection_id: str, api_id: str | None = None) -> Connection | None:
        """The open connection; with `api_id`, only one of that API (another API does not know it)."""
        with self._lock:
            connection = self._connections.get(connection_id)
        if connection is not None and api_id is not None and connection.api.api_id != api_id:
            return None
        return connection

    def post_to_connection(self, connection_id: str, data: bytes, api_id: str | None = None) -> bool:
        """Send `data` (text frame if UTF-8, else binary); False if the connection is gone."""
        connection = self.connection(connection_id, api_id)
        loop = self._loop
        if connection is None or loop is None:
            return False
        try:
            message: str | bytes = data.decode("utf-8")
        except UnicodeDecodeError:
            message = data
        try:
            asyncio.run_coroutine_threadsafe(connection.socket.send(message), loop).result(timeout=SEND_TIMEOUT_S)
        except (ConnectionClosed, concurrent.futures.TimeoutError, RuntimeError):
            return False
        connection.last_active_at = now_utc()
        return True

    def delete_connection(self, connection_id: str, api_id: str | None = None) -> bool:
        connection = self.connection(connection_id, api_id)
        loop = self._loop
        if connection is None or loop is None:
            return False
        with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
            asyncio.run_coroutine_threadsafe(connection.socket.close(1000, "Going away"),
                                             loop).result(timeout=SEND_TIMEOUT_S)
        return True

    def _management_handler(self) -> type[JsonResponder]:
        gateway = self

        class ManagementHandler(JsonResponder):
            def _target(self) -> tuple[str, str | None] | None:
                """(connection id, API id if the URL names one), None if the path is no @connections URL.

                `/<stage>/@connections/<id>` is what a function's localized management URL calls (any API
                of the gateway); `/<api-id>/<stage>/@connections/<id>` names the API as AWS's host does.
                """
                segments = [unquote(segment) for segment in urlsplit(self.path).path.split("/") if segment]
                api_id = segments[0] if len(segments) == 4 else None
                segments = segments[-2:] if len(segments) in (3, 4) else segments
                if len(segments) == 2 and segments[0] == "@connections":
                    return segments[1], api_id
                return None

            def _gone(self) -> None:
                # botocore reads the error code from this header: unchanged handler code sees GoneException.
                self.send_json(410, {"message": None}, [("x-amzn-ErrorType", "GoneException")])

            def _forbidden(self) -> None:
                self.send_json(403, {"message": "Forbidden"}, [("x-amzn-ErrorType", "ForbiddenException")],
                               close=self.has_body())

            def do_POST(self) -> None:
                target = self._target()
                if target is None:
                    self._forbidden()
                    return
                connection_id, api_id = target
                data = self.read_body(MAX_FRAME_BYTES)
                if data is None:
                    self.send_json(413, {"message": "Message too long"},
                                   [("x-amzn-ErrorType", "PayloadTooLargeException")], close=True)
                    return
                if gateway.post_to_connection(connection_id, data, api_id):
                    self.send_body(200, b"")
                else:
                    self._gone()

            def do_GET(self) -> None:
                target = self._target()
                if target is None:
                    self._forbidden()
                    return
                connection = gateway.connection(*target)
                if connection is None:
                    self._gone()
                    return
                self.send_json(200, {
                    "connectedAt": _iso(connection.connected_at),
                    "identity": {"sourceIp": connection.source_ip, "userAgent": connection.user_agent or ""},
                    "lastActiveAt": _iso(connection.last_active_at),
                })

            def do_DELETE(self) -> None:
                target = self._target()
                if target is None:
                    self._forbidden()
                    return
                if gateway.delete_connection(*target):
                    self.send_body(204, b"")
                else:
                    self._gone()

        return ManagementHandler


def _status_of(payload: Any) -> int:
    """$connect results without a statusCode count as success, as on API Gateway."""
    if isinstance(payload, dict) and "statusCode" in payload:
        try:
            return int(payload["statusCode"])
        except (TypeError, ValueError):
            return 500
    return 200


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
