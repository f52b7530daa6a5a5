"""Fixtures for the event-source tests: a moto server on a free loopback port, a model, runtimes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sources_helpers import ACCOUNT, REGION, Harness

from busline.localcloud.model import CloudModel, Endpoints
from busline.localcloud.runtime import FunctionRuntime
from busline.localcloud.testing import moto_server


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def harness(moto_endpoint: str, tmp_path: Path) -> Harness:
    host, port = moto_endpoint.removeprefix("http://").split(":")
    endpoints = Endpoints.for_base_port(host, int(port) - 3)
    model = CloudModel(region=REGION, account_id=ACCOUNT, endpoints=endpoints)
    return Harness(model=model, data_dir=tmp_path, record_file=tmp_path / "records.jsonl")


@pytest.fixture
def runtime_for(harness: Harness) -> Iterator[Callable[..., FunctionRuntime]]:
    runtimes: list[FunctionRuntime] = []

    def make(**kwargs: Any) -> FunctionRuntime:
        runtime = FunctionRuntime(harness.model, harness.data_dir, **kwargs)
        runtimes.append(runtime)
        return runtime

    yield make
    for runtime in runtimes:
        runtime.close()
