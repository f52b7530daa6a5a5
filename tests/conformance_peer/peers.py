"""The two peers, started on loopback and stopped with everything they started: MiniStack, and our local
cloud (`busline local up` on the conformance fixture, exactly what the conformance suite runs)."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

from busline.bench.ministack import ministack as started_ministack
from busline.localcloud.testing import RunningCloud, new_data_dir, running_cloud

from .fixture import FIXTURE_PARAMETERS, FIXTURE_TEMPLATE
from .model import Aws

CLOUD_START_TIMEOUT_S = 180.0
# The local cloud sweeps expired items every 60 s by default; the TTL scenario should not wait that long.
TTL_SWEEP_SECONDS = "2"


@contextlib.contextmanager
def ministack(executable: Path) -> Iterator[Aws]:
    with started_ministack(executable) as endpoint:
        yield Aws("MiniStack", endpoint)


@contextlib.contextmanager
def local_cloud(template: Path = FIXTURE_TEMPLATE) -> Iterator[tuple[Aws, RunningCloud]]:
    """`busline local up` on the fixture (moto with our patches, our event sources), stopped afterwards;
    its data dir (Postgres, logs) removed."""
    data_dir = new_data_dir("peer-ours")
    arguments = [argument for name, value in FIXTURE_PARAMETERS.items() for argument in ("--param", f"{name}={value}")]
    try:
        with running_cloud(template, data_dir, extra_args=arguments, timeout_s=CLOUD_START_TIMEOUT_S,
                           env={"BUSLINE_TTL_SWEEP_SECONDS": TTL_SWEEP_SECONDS}) as cloud:
            endpoints = cloud.endpoints
            outputs = dict(endpoints["outputs"])
            # ApiUrl is the fixture's REST stage URL, localized to the REST gateway
            yield Aws("ours", endpoints["aws"], region=endpoints["region"], outputs=outputs,
                      rest_url=outputs.get("ApiUrl", "")), cloud
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
