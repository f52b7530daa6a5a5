"""Local clouds for the resilience suite.

Chaos runs each get their own cloud (the chaos spec is fixed when a cloud starts). The DLQ drills
(poison, stall, replay) share one fault-free cloud with MaxReceiveCount=2 and a fast watchdog; it is closed
as soon as the last test of this folder is done, so it never overlaps the clouds of other suites on a small
machine.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from busline.localcloud.testing import FolderCloud, RunningCloud

from .resilience_support import DRILL_ARGS, START_TIMEOUT_S, TEMPLATE

folder_cloud = FolderCloud(Path(__file__).parent)
pytest_runtest_teardown = folder_cloud.teardown_hook


@pytest.fixture(scope="session")
def drill_cloud() -> Iterator[RunningCloud]:
    yield folder_cloud.start(TEMPLATE, "drill", extra_args=DRILL_ARGS, timeout_s=START_TIMEOUT_S)
    folder_cloud.close()
