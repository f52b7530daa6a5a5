"""A local cloud (real template, --demo data) and a headless Chromium for the browser tests."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from busline.localcloud.testing import RunningCloud, running_cloud

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
CLOUD_ARGS = [
    "--demo",
    # extract streams the whole source in one invocation: 20 s is not enough on a busy 2-CPU box
    "--param", "StepTimeout=60",
    "--param", "QueueVisibilityTimeout=70",
    "--param", "MaxReceiveCount=3",
    "--param", "ChunkRows=20000",
    "--param", "ProgressBatchWindow=1",
]  # fmt: skip


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install it with `make chromium` (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


# Closed once the last browser test is done, so it never runs alongside a later suite's cloud.
_cloud_stack = contextlib.ExitStack()
E2E_TESTS_DIR = Path(__file__).resolve().parent


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if nextitem is None or E2E_TESTS_DIR not in Path(nextitem.path).resolve().parents:
        _cloud_stack.close()


@pytest.fixture(scope="session")
def e2e_cloud() -> Iterator[RunningCloud]:
    data_dir = Path(tempfile.mkdtemp(prefix="busline-e2e-"))
    data_dir.chmod(0o755)  # Postgres runs as the `pgserver` user when we are root: it must enter the dir
    with _cloud_stack:
        yield _cloud_stack.enter_context(running_cloud(TEMPLATE, data_dir, extra_args=CLOUD_ARGS))
    # the screenshot and logs stay for a look after the run; the Postgres data does not
    shutil.rmtree(data_dir / "pg", ignore_errors=True)
