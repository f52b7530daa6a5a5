"""MiniStack (PyPI `ministack`), the peer the local cloud is compared with: started on a free loopback
port with a scratch folder for everything it writes, and stopped with every process it started.

Used by `make conformance-peer` (tests/conformance_peer) and by `make bench` (the call-latency table).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

MINISTACK_START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
# MiniStack binds 0.0.0.0 unless told otherwise, and starts an MQTT listener on 0.0.0.0:8883 and, for
# Transfer Family, SFTP listeners: loopback only, and neither listener.
MINISTACK_SETTINGS = {
    "BIND_HOST": "127.0.0.1",
    "MINISTACK_HOST": "127.0.0.1",
    "IOT_MTLS_ENABLED": "0",
    "SFTP_ENABLED": "0",
    "LOG_LEVEL": "WARNING",
    # Python functions run as warm worker processes, not in Docker
    "LAMBDA_EXECUTOR": "local",
}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def ministack(executable: Path) -> Iterator[str]:
    """MiniStack's endpoint, on a free loopback port with a scratch folder for everything it writes (state,
    function workers, its pid file); the whole process group is stopped and the folder removed afterwards."""
    scratch = Path(tempfile.mkdtemp(prefix="busline-peer-ministack-"))
    port = free_port()
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": str(scratch),
        "TMPDIR": str(scratch),
        "STATE_DIR": str(scratch / "state"),
        "S3_DATA_DIR": str(scratch / "s3"),
        "GATEWAY_PORT": str(port),
        **MINISTACK_SETTINGS,
    }
    log = (scratch / "ministack.log").open("wb")
    process = subprocess.Popen([str(executable)], env=environment, stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(process, f"{endpoint}/_ministack/health", scratch / "ministack.log")
        yield endpoint
    finally:
        _stop_group(process)
        log.close()
        shutil.rmtree(scratch, ignore_errors=True)


def _wait_ready(process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + MINISTACK_START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"MiniStack exited with {process.returncode}:\n{log_path.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"MiniStack did not answer {url} within {MINISTACK_START_TIMEOUT_S:.0f} s")
        time.sleep(0.3)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the group (MiniStack and the function workers it spawned), SIGKILL what is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=STOP_TIMEOUT_S)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # workers outlive their parent's SIGTERM otherwise
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)
