"""Helpers for the event-source tests: a hand-built CloudModel against a moto server."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from busline.localcloud.model import CloudModel, FunctionSpec

FUNCTIONS_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "functions"
REGION = "us-east-1"
ACCOUNT = "123456789012"
@dataclass
class Harness:
    model: CloudModel
    data_dir: Path
    record_file: Path

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.model.endpoints.aws,  # type: ignore[call-overload]
                            region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")

    def add_function(self, logical_id: str, handler: str, **overrides: Any) -> FunctionSpec:
        values: dict[str, Any] = {
            "logical_id": logical_id,
            "name": f"test-{logical_id}",
            "arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:test-{logical_id}",
            "handler": handler,
            "code_dir": FUNCTIONS_DIR,
            "layer_dirs": [],
            "environment": {"RECORD_FILE": str(self.record_file)},
            "timeout_s": 3.0,
        }
        values.update(overrides)
        spec = FunctionSpec(**values)
        self.model.functions[logical_id] = spec
        return spec

    def records(self) -> list[dict[str, Any]]:
        if not self.record_file.exists():
            return []
        return [json.loads(line) for line in self.record_file.read_text().splitlines() if line]

    def unique(self, prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
