"""HTTP plumbing the local gateways share: a threaded server that frees its port on stop, JSON
responses, bounded body reads, safe invocation, and API Gateway's header, query and time shapes.

In a module of its own so the REST gateway, the WebSocket gateway and the static site depend on it,
not on each other.
"""

from __future__ import annotations

import contextlib
import errno
import json
import secrets
import socket
import string
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qsl

from busline.localcloud.model import PortInUse

LINGER_S = 2.0


class InvocationOutcome(Protocol):
    """What `FunctionRuntime.invoke` returns (runtime.InvocationResult); only these fields are read."""

    ok: bool
    payload: Any
    error: str | None
    error_type: str | None
    duration_ms: float
    timed_out: bool
    killed: bool


class Invoker(Protocol):
    def invoke(
        self, function_logical_id: str, event: dict[str, Any], /, *, trigger: str, allow_chaos: bool = ...
    ) -> InvocationOutcome: ...


@dataclass
class _RuntimeFailure:
    ok: bool
    payload: Any
    error: str | None
    error_type: str | None
    duration_ms: float = 0.0
    timed_out: bool = False
    killed: bool = False


def invoke_safely(runtime: Invoker, function: str, event: dict[str, Any], trigger: str) -> InvocationOutcome:
    """Invoke, turning a failure of the runtime itself into a failed invocation.

    A gateway must still answer its client (502, an error frame) when the runtime cannot run the function.
    """
    try:
        # Chaos targets the event-driven steps; a failed API call would only make clients resubmit.
        return runtime.invoke(function, event, trigger=trigger, allow_chaos=False)
    except Exception as exc:  # noqa: BLE001 - reported, then answered like a function error
        print(f"[gateway] could not invoke {function} ({trigger}): {type(exc).__name__}: {exc}", file=sys.stderr)
        return _RuntimeFailure(ok=False, payload=None, error=str(exc), error_type=type(exc).__name__)


def api_gateway_request_time(moment: datetime) -> str:
    """API Gateway's `requestTime`, e.g. `22/Nov/2026:09:46:26 +0000`."""
    return moment.strftime("%d/%b/%Y:%H:%M:%S +0000")


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def now_utc() -> datetime:
    return datetime.now(UTC)


def random_token(length: int, suffix: str = "") -> str:
    """Opaque ids shaped like API Gateway's (`extendedRequestId`, connection ids ending in `=`)."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length)) + suffix


def split_headers(pairs: list[tuple[str, str]]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """`headers` keeps the last value of a repeated header (as API Gateway does), `multiValueHeaders` all."""
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in pairs:
        single[name] = value
        multi.setdefault(name, []).append(value)
    return single, multi


def split_query(query: str) -> tuple[dict[str, str] | None, dict[str, list[str]] | None]:
    """API Gateway sends null, not {}, when there is no query string."""
    pairs = parse_qsl(query, keep_blank_values=True)
    if not pairs:
        return None, None
    return split_headers(pairs)


class OpenSocketsTracking:
    """A socketserver mixin that remembers open client sockets so stop() can end idle keep-alive connections too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.open_sockets: set[socket.socket] = set()
        self.open_sockets_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.open_sockets_lock:
            self.open_sockets.add(request)
        super().process_request(request, client_address)  # type: ignore[misc]

    def shutdown_request(self, request: Any) -> None:
        with self.open_sockets_lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)  # type: ignore[misc]

    def close_open_sockets(self) -> None:
        with self.open_sockets_lock:
            sockets = list(self.open_sockets)
        for client in sockets:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)


class _TrackingHTTPServer(OpenSocketsTracking, ThreadingHTTPServer):
    daemon_threads = True


class TrackedServer(Protocol):
    """What HttpServerThread runs: a threading socketserver with OpenSocketsTracking."""

    server_address: Any

    def serve_forever(self, poll_interval: float = ...) -> None: ...
    def shutdown(self) -> None: ...
    def server_close(self) -> None: ...
    def close_open_sockets(self) -> None: ...


class HttpServerThread:
    """A ThreadingHTTPServer on its own daemon thread: bind on start, free the port on stop."""

    def __init__(self, host: str, port: int, handler_class: Callable[..., BaseHTTPRequestHandler], what: str) -> None:
        self.host = host
        self.port = port
        self.what = what
        self._handler_class = handler_class
        self._server: TrackedServer | None = None
        self._thread: threading.Thread | None = None

    def _bind(self) -> TrackedServer:
        return _TrackingHTTPServer((self.host, self.port), self._handler_class)

    @property
    def bound_port(self) -> int:
        """The port bound (the one the OS chose for port 0)."""
        if self._server is None:
            raise RuntimeError(f"{self.what} is not started")
        return int(self._server.server_address[1])

    def start(self) -> TrackedServer:
        if self._server is not None:
            raise RuntimeError(f"{self.what} is already started")
        try:
            server = self._bind()
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(self.host, self.port, self.what) from exc
            raise
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1},
            name=f"busline-{self.what.replace(' ', '-')}", daemon=True,
        )
        self._thread.start()
        return server

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_open_sockets()
        if thread is not None:
            thread.join(timeout=5)


class JsonResponder(BaseHTTPRequestHandler):
    """Common response writing; HTTP/1.1 keep-alive, so every response carries a Content-Length."""

    protocol_version = "HTTP/1.1"
    server_version = "busline-local"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        # The runtime prints one line per invocation; per-request access logs would only double it.
        pass

    def send_body(self, status: int, body: bytes, headers: list[tuple[str, str]] | None = None,
                  *, close: bool = False) -> None:
        self.send_response(status)
        for name, value in headers or []:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        if close:
            self._lingering_close()

    def _lingering_close(self) -> None:
        """Discard what the client is still sending before closing, for a bounded time.

        Closing a socket with unread input sends a reset, which can destroy the response (a 413, a 404)
        before the client reads it. Discarded bytes are never buffered, so an oversized body costs nothing.
        """
        with contextlib.suppress(OSError):
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(0.2)
            deadline = time.monotonic() + LINGER_S
            while time.monotonic() < deadline and self.connection.recv(65536):
                pass

    def send_json(self, status: int, document: Any, headers: list[tuple[str, str]] | None = None,
                  *, close: bool = False) -> None:
        body = json.dumps(document).encode()
        self.send_body(status, body, [("Content-Type", "application/json"), *(headers or [])], close=close)

    def has_body(self) -> bool:
        return ("chunked" in self.headers.get("Transfer-Encoding", "").lower()
                or self.headers.get("Content-Length", "0").strip() not in ("", "0"))

    def read_body(self, limit: int) -> bytes | None:
        """The request body, or None if it is larger than `limit` (checked before reading it)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(limit)
        length_header = self.headers.get("Content-Length")
        if not length_header:
            return b""
        try:
            length = int(length_header)
        except ValueError:
            return b""
        if length > limit:
            return None
        return self.rfile.read(length)

    def _read_chunked(self, limit: int) -> bytes | None:
        parts: list[bytes] = []
        total = 0
        while True:
            size_line = self.rfile.readline(1024)
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                # Trailers end with an empty line.
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            total += size
            if total > limit:
                return None
            parts.append(self.rfile.read(size))
            self.rfile.readline(1024)
