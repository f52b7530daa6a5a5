"""`busline local up` as a child process, end to end: the smoke template served, and a refused template
leaving nothing running."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from busline.localcloud.testing import running_cloud

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "provision"

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def test_local_up_serves_an_api_function(cloud_data_dir: Path) -> None:
    # Given the smoke template (one function behind GET /hello/{name}) and a parameter override
    with running_cloud(
        FIXTURES / "smoke" / "template.yaml", cloud_data_dir, extra_args=["--param", "Greeting=hi"], timeout_s=60
    ) as cloud:
        # Then endpoints.json has every documented key
        assert sorted(cloud.endpoints) == [
            "aws", "chaos", "httpApis", "management", "oauth", "outputs", "postgres", "region", "rest", "web",
            "websocket", "websocketApis",
        ]
        assert (cloud.endpoints["httpApis"], cloud.endpoints["websocketApis"]) == ({}, {})
        assert cloud.endpoints["outputs"] == {"ApiUrl": f"http://127.0.0.1:{cloud.base_port}/Prod"}
        # When the function is called through the local REST gateway
        with urllib.request.urlopen(f"{cloud.endpoints['outputs']['ApiUrl']}/hello/ada", timeout=30) as response:
            body = json.loads(response.read())
        assert body == {"name": "ada", "greeting": "hi"}
    # And after SIGTERM it exits cleanly and removes endpoints.json
    assert cloud.process.returncode == 0
    assert not (cloud_data_dir / "endpoints.json").exists()
    assert processes_mentioning(str(cloud_data_dir)) == []


def test_local_up_refuses_an_unsupported_resource_and_stops_what_it_started(
    tmp_path: Path, cloud_data_dir: Path
) -> None:
    # Given a template with an EC2 VPC (moto and Postgres are already up when provisioning refuses it)
    data_dir = cloud_data_dir
    unsupported = tmp_path / "template.yaml"
    unsupported.write_text((FIXTURES / "unsupported.yaml").read_text())
    # When `busline local up` runs / Then it exits 1 naming the resource
    with pytest.raises(RuntimeError, match=r"exited with 1:\s+error: Network: AWS::EC2::VPC is not supported"), \
            running_cloud(unsupported, data_dir, timeout_s=60):
        pass
    # And the Postgres it started is gone
    assert processes_mentioning(str(data_dir)) == []


def processes_mentioning(text: str) -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text in cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                found.append(int(cmdline.parent.name))
        except OSError:
            continue  # the process ended while we looked
    return found
