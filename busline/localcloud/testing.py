"""Start `busline local up` as a child process for tests, and make sure it is gone afterwards."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from busline.auth import Tokens, UserPool, create_user, new_password, sign_in

PORTS_PER_CLOUD = 6


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _ephemeral_ports() -> range:
    """The ports the kernel hands out to outgoing connections: a block chosen inside it can be free when
    checked and taken by some client socket a moment later, before the cloud binds it."""
    try:
        low, high = (int(part) for part in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999  # Linux's default
    return range(low, high + 1)


def free_base_port(host: str = "127.0.0.1") -> int:
    ephemeral = _ephemeral_ports()
    for _ in range(200):
        base = random.randrange(20000, 65000)
        block = range(base, base + PORTS_PER_CLOUD)
        if block.start in ephemeral or block[-1] in ephemeral:
            continue
        if all(port_is_free(host, port) for port in block):
            return base
    raise RuntimeError("no block of free ports found on loopback outside the ephemeral range")


@dataclass
class RunningCloud:
    process: subprocess.Popen[bytes]
    data_dir: Path
    base_port: int
    endpoints: dict[str, Any]

    @property
    def log_path(self) -> Path:
        return self.data_dir / "console.log"


@contextlib.contextmanager
def running_cloud(
    template: Path,
    data_dir: Path,
    *,
    extra_args: list[str] | None = None,
    env: dict[str, str] | None = None,
    timeout_s: float = 180.0,
    base_port: int | None = None,
) -> Iterator[RunningCloud]:
    """Run `busline local up` until the block ends; SIGTERM it and wait, killing the group if it hangs.

    `base_port`: the ports of an earlier run in the same data dir, so its saved AWS state is restored.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    endpoints_file = data_dir / "endpoints.json"
    endpoints_file.unlink(missing_ok=True)
    base_port = base_port or free_base_port()
    command = [
        sys.executable, "-m", "busline.cli.main", "local", "up",
        "--template", str(template), "--data-dir", str(data_dir), "--port", str(base_port),
        *(extra_args or []),
    ]
    console = (data_dir / "console.log").open("ab")
    process = subprocess.Popen(
        command, stdout=console, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + timeout_s
        while not endpoints_file.exists():
            if process.poll() is not None:
                raise RuntimeError(
                    f"busline local up exited with {process.returncode}:\n"
                    + (data_dir / "console.log").read_text(errors="replace")[-4000:]
                )
            if time.monotonic() > deadline:
                raise TimeoutError("busline local up did not write endpoints.json in time")
            time.sleep(0.2)
        endpoints = json.loads(endpoints_file.read_text())
        yield RunningCloud(process=process, data_dir=data_dir, base_port=base_port, endpoints=endpoints)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        console.close()


def new_data_dir(prefix: str) -> Path:
    """A fresh data dir Postgres can use: run as root, pgserver runs postgres as its own `pgserver` user,
    which cannot enter a 0700 temp dir (pytest's tmp_path or a bare mkdtemp)."""
    data_dir = Path(tempfile.mkdtemp(prefix=f"busline-{prefix}-"))
    data_dir.chmod(0o755)
    return data_dir


@contextlib.contextmanager
def disposable_cloud(
    template: Path, prefix: str, *, extra_args: list[str] | None = None, timeout_s: float = 180.0
) -> Iterator[RunningCloud]:
    """`running_cloud` in a new data dir; the Postgres data goes afterwards, the console and function
    logs (and anything a test saved there) stay for a post-mortem."""
    data_dir = new_data_dir(prefix)
    try:
        with running_cloud(template, data_dir, extra_args=extra_args, timeout_s=timeout_s) as cloud:
            yield cloud
    finally:
        shutil.rmtree(data_dir / "pg", ignore_errors=True)


class FolderCloud:
    """One cloud shared by the tests of some folders, closed as soon as the last of their tests is done
    rather than at the end of the session, so two suites' clouds never compete for a small machine.

    In a conftest above those folders: `shared = FolderCloud(folder, ...)`, a session fixture that
    yields `shared.start(...)`, and `pytest_runtest_teardown = shared.teardown_hook`. The folders'
    tests must run one after the other (pytest's default order does that for adjacent folders).
    """

    def __init__(self, *folders: Path) -> None:
        if not folders:
            raise ValueError("FolderCloud needs at least one folder")
        self.folders = tuple(folder.resolve() for folder in folders)
        self._stack = contextlib.ExitStack()

    @property
    def folder(self) -> Path:
        return self.folders[0]

    def start(self, template: Path, prefix: str, **options: Any) -> RunningCloud:
        return self._stack.enter_context(disposable_cloud(template, prefix, **options))

    def close(self) -> None:
        self._stack.close()

    def holds(self, path: Path) -> bool:
        return any(folder in path.resolve().parents for folder in self.folders)

    def teardown_hook(self, item: Any, nextitem: Any) -> None:
        if nextitem is None or not self.holds(Path(nextitem.path)):
            self.close()


def user_tokens(endpoints: dict[str, Any], username: str) -> Tokens:
    """Sign in to a running local cloud as `username`, creating the user first as an operator would
    (the demo user already exists and keeps its password)."""
    pool = UserPool.from_endpoints(endpoints)
    demo = endpoints["auth"]["demoUser"]
    if username == demo["username"]:
        return sign_in(pool, username, demo["password"])
    password = new_password()
    create_user(pool.client(), pool.user_pool_id, username, password)
    return sign_in(pool, username, password)


def websocket_url(endpoints: dict[str, Any], token: str) -> str:
    """The WebSocket URL with the access token in the query string, as a browser has to send it."""
    return f"{endpoints['websocket'].rstrip('/')}/?{urllib.parse.urlencode({'token': token})}"


@contextlib.contextmanager
def moto_server(host: str = "127.0.0.1") -> Iterator[str]:
    """A moto server on a free loopback port, for tests that need moto over HTTP (presigned URLs, Cognito's
    JWKS) without a whole local cloud; yields its endpoint and frees the port afterwards."""
    from busline.localcloud.moto_server import KeepAliveMotoServer

    server = KeepAliveMotoServer(host, 0)
    server.start()
    try:
        yield f"http://{host}:{server.bound_port}"
    finally:
        server.stop()
