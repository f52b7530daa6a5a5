"""A local cloud (real template, --demo data) and a headless Chromium for the browser tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from busline.localcloud.testing import FolderCloud, RunningCloud

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
folder_cloud = FolderCloud(Path(__file__).parent)
pytest_runtest_teardown = folder_cloud.teardown_hook


@pytest.fixture(scope="session")
def e2e_cloud() -> Iterator[RunningCloud]:
    # the screenshot and the logs stay in its data dir for a look after the run
    yield folder_cloud.start(TEMPLATE, "e2e", extra_args=CLOUD_ARGS)
    folder_cloud.close()
