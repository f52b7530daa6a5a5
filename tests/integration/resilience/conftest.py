"""Local clouds for the resilience suite.

Chaos runs each get their own cloud (the chaos spec is fixed when a cloud starts). The DLQ drills
(poison, stall, replay) share one fault-free cloud with MaxReceiveCount=2 and a fast watchdog; it is closed
as soon as the last test of this folder is done, so it never overlaps the clouds of other suites on a small
machine.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from busline.localcloud.testing import RunningCloud

from .resilience_support import DRILL_ARGS, local_cloud

_drill_stack = contextlib.ExitStack()
RESILIENCE_DIR = Path(__file__).resolve().parent


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if nextitem is None or RESILIENCE_DIR not in Path(nextitem.path).resolve().parents:
        _drill_stack.close()


@pytest.fixture(scope="session")
def drill_cloud() -> Iterator[RunningCloud]:
    with _drill_stack:
        yield _drill_stack.enter_context(local_cloud("drill", DRILL_ARGS))
