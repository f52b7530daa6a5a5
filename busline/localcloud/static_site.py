"""The browser page: the files of `web/` plus `/config.json` (the local endpoints), never cached.

Never cached because the page is edited while the local cloud runs and the endpoints change with --port.
"""

from __future__ import annotations

import json
from functools import partial
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from busline.localcloud.http_io import HttpServerThread
from busline.localcloud.model import LocalCloudError

_NO_CACHE = (("Cache-Control", "no-store, no-cache, must-revalidate, max-age=0"),
             ("Pragma", "no-cache"), ("Expires", "0"))


class _StaticHandler(SimpleHTTPRequestHandler):
    # ES modules are refused by browsers unless served with a JavaScript MIME type.
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map,
                      ".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css",
                      ".json": "application/json", ".svg": "image/svg+xml", ".wasm": "application/wasm"}
    server_version = "busline-local"
    sys_version = ""

    def __init__(self, *args: Any, config_body: bytes, **kwargs: Any) -> None:
        self.config_body = config_body
        super().__init__(*args, **kwargs)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        pass

    def end_headers(self) -> None:
        for name, value in _NO_CACHE:
            self.send_header(name, value)
        super().end_headers()

    def do_GET(self) -> None:
        if urlsplit(self.path).path == "/config.json":
            self._send_config(with_body=True)
            return
        super().do_GET()

    def do_HEAD(self) -> None:
        if urlsplit(self.path).path == "/config.json":
            self._send_config(with_body=False)
            return
        super().do_HEAD()

    def list_directory(self, path: str | Path) -> None:  # type: ignore[override]
        # A listing of web/ is never what the page wants; answer like a static host would.
        self.send_error(404, "Not Found")
        return None

    def _send_config(self, *, with_body: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.config_body)))
        self.end_headers()
        if with_body:
            self.wfile.write(self.config_body)


class StaticSite:
    WHAT = "static web site"

    def __init__(self, web_dir: Path, config: dict[str, Any], host: str, port: int) -> None:
        self.web_dir = Path(web_dir)
        self.config = config
        self.host = host
        self.port = port
        self._server: HttpServerThread | None = None

    def start(self) -> None:
        if not self.web_dir.is_dir():
            raise LocalCloudError(f"web directory {self.web_dir} does not exist (the {self.WHAT} serves it)")
        config_body = json.dumps(self.config, indent=2).encode()
        handler = partial(_StaticHandler, directory=str(self.web_dir.resolve()), config_body=config_body)
        self._server = HttpServerThread(self.host, self.port, handler, self.WHAT)
        self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
