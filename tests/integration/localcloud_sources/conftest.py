"""Fixtures for the event-source tests: a moto server on a free loopback port, a model, runtimes."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from moto.server import ThreadedMotoServer
from sources_helpers import ACCOUNT, REGION, Harness

from busline.localcloud.model import CloudModel, Endpoints
from busline.localcloud.runtime import FunctionRuntime


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


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
