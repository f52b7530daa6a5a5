"""Shared by every test folder: make the Lambda layer (`busline_core`) importable as it is on AWS, and
the one local cloud of template.yaml that the app and browser suites share."""

import os
import sys
from pathlib import Path

# Rich wraps what the CLI prints at the width it finds, 80 columns without a terminal: a message naming a
# temporary path (longer under pytest-xdist's per-worker folders) must not wrap mid-word in a test.
os.environ.setdefault("COLUMNS", "250")

LAYER_DIR = Path(__file__).resolve().parent.parent / "src" / "layer"
if str(LAYER_DIR) not in sys.path:
    sys.path.insert(0, str(LAYER_DIR))



import shutil  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402

from busline.localcloud.testing import FolderCloud, RunningCloud, new_data_dir  # noqa: E402

TESTS = Path(__file__).resolve().parent
TEMPLATE = TESTS.parent / "template.yaml"
# Shorter than the AWS-sized defaults, so a broken step shows up in a minute, not in six.
DEMO_CLOUD_ARGS = [
    "--demo",
    # extract streams the whole source in one invocation: 20 s is not enough on a busy 2-CPU box
    "--param", "StepTimeout=60",
    "--param", "QueueVisibilityTimeout=70",
    "--param", "MaxReceiveCount=3",
    "--param", "ChunkRows=20000",
    "--param", "ProgressFramesPerSecond=4",
    # schedules fire on a 60x clock, so a test sees a rate(5 minutes) schedule fire twice in 5 s; the
    # watchdog's rule keeps firing once a real minute
    "--schedule-scale", "60",
    "--param", "WatchdogSchedule=rate(60 minutes)",
    # every notification is also mailed to the operator (the local cloud keeps mail in <data dir>/outbox)
    "--param", "NotificationEmail=ops@example.com",
]  # fmt: skip
DEMO_CLOUD_START_TIMEOUT_S = 180.0

# tests/e2e and tests/integration/app run the same template with the same parameters, one folder right
# after the other in pytest's order: one cloud serves both and is closed after the last of their tests,
# so it never runs alongside the clouds of the suites that follow on a small machine.
demo_clouds = FolderCloud(TESTS / "e2e", TESTS / "integration" / "app")
pytest_runtest_teardown = demo_clouds.teardown_hook


@pytest.fixture(scope="session")
def demo_cloud() -> Iterator[RunningCloud]:
    """template.yaml with --demo data and a real Postgres. The browser suite runs first and expects a
    cloud without earlier tasks; the app suite's assertions hold whatever ran before them."""
    yield demo_clouds.start(TEMPLATE, "demo", extra_args=DEMO_CLOUD_ARGS, timeout_s=DEMO_CLOUD_START_TIMEOUT_S)
    demo_clouds.close()


@pytest.fixture(autouse=True)
def fresh_usage_meter(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test counts AWS usage (busline_core.usage) from zero: a meter is per container, and a test
    process is many containers one after the other."""
    from busline_core import usage

    monkeypatch.setattr(usage, "METER", usage.UsageMeter(memory_mb=1024))
    yield


@pytest.fixture
def cloud_data_dir() -> Iterator[Path]:
    """A data dir for `busline local up` that Postgres can enter (pytest's tmp_path is under a 0700 folder)."""
    folder = new_data_dir("test")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def loopback_files(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, folder): a temporary folder served over plain http on 127.0.0.1, the way tests serve
    sources (readable only where AllowLoopbackHttpSources is on, as on the local cloud)."""
    import http.server
    import threading
    from functools import partial
    from typing import Any

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
