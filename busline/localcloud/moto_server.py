"""moto over HTTP with keep-alive connections, as AWS's endpoints serve: one connection carries a client's calls.

moto's ThreadedMotoServer runs Werkzeug's development server, which answers every request with "Connection:
close", so each AWS call of every function, event source and gateway cost a new TCP connection and a new
server thread (measured with moto_speed's patches: 1,500 small calls took 6.2-6.7 s that way, 5.7-6.0 s on
kept connections). Werkzeug closes because http.server cannot tell where a request body the application left
unread ends, and after each answer it drains whatever the socket still holds, which on a kept connection
would be the client's next request. Here each request's body is read whole before moto sees it (moto reads
every body whole anyway), so nothing of it is left on the connection, and the drain finds nothing.
"""

from __future__ import annotations

import io
import socket
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import ThreadedWSGIServer

from busline.localcloud.http_io import HttpServerThread, OpenSocketsTracking, TrackedServer

# A kept connection nobody uses for this long is closed (its server thread ends); the client's pool notices the
# close before it reuses the connection and opens a new one.
IDLE_CONNECTION_S = 60.0


class _KeepAliveHandler(MotoRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_CONNECTION_S

    def setup(self) -> None:
        super().setup()
        # Werkzeug writes the headers and the body apart: without this the body would wait for the client's
        # delayed ACK of the headers (40 ms) on a connection that stays open.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def make_environ(self) -> dict[str, Any]:
        environ = super().make_environ()
        try:
            body = self._whole_body(environ)
        except ValueError:  # a Content-Length that is no number: answered as before, on a connection that closes
            self.close_connection = True
            return environ
        environ["wsgi.input"] = io.BytesIO(body)
        # The stream now ends where the body does, so Werkzeug may read it in one call instead of 64 KiB at a
        # time into a growing buffer (a copy and a half of every upload, on the server every call waits on).
        environ["wsgi.input_terminated"] = True
        # What Werkzeug drains after its answer now comes from here: nothing, not the next request.
        self.rfile = io.BufferedReader(io.BytesIO(b""))
        return environ

    def _whole_body(self, environ: dict[str, Any]) -> bytes:
        if environ.get("wsgi.input_terminated"):  # chunked: Werkzeug's DechunkedInput reads to the last chunk
            return bytes(environ["wsgi.input"].read())
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length <= 0:
            return b""
        body = bytes(self.rfile.read(length))
        if len(body) != length:
            raise ConnectionError(f"the client sent {len(body):,} of the {length:,} body bytes it announced")
        return body

    def run_wsgi(self) -> None:
        connection = self.rfile
        try:
            super().run_wsgi()
        finally:
            self.rfile = connection  # the next request on this connection is read from the socket again

    def send_header(self, keyword: str, value: str) -> None:
        # Werkzeug asks every answer to close its connection; keep it open unless the client asked to close
        # or the answer went wrong half way (both set close_connection).
        if keyword.lower() == "connection" and value.lower() == "close" and not self.close_connection:
            return
        super().send_header(keyword, value)

    def log_error(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        if args and isinstance(args[0], TimeoutError):
            return  # an idle kept connection timing out is how it ends, not an error
        super().log_error(format, *args)


class _Server(OpenSocketsTracking, ThreadedWSGIServer):
    pass


class KeepAliveMotoServer(HttpServerThread):
    """ThreadedMotoServer's start and stop, over kept connections; stop also ends the idle ones and frees the port."""

    WHAT = "the moto server"

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port, _KeepAliveHandler, self.WHAT)

    def _bind(self) -> TrackedServer:
        return _Server(self.host, self.port, DomainDispatcherApplication(create_backend_app), handler=_KeepAliveHandler)
