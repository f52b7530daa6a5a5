"""Fixtures for the CLI tests: a typer app made of the CLI's own modules, and a moto-backed deployment."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
import typer
from busline_core.task_state import TaskState
from busline_core.tasks_repo import TasksRepository
from moto import mock_aws
from typer.testing import CliRunner

from busline.cli import dlq, tasks
from busline.localcloud.in_process import provision_in_process

REGION = "us-east-1"
TEMPLATE = Path(__file__).resolve().parents[3] / "template.yaml"


@pytest.fixture
def cli_app(monkeypatch: pytest.MonkeyPatch) -> typer.Typer:
    # Wide consoles so table rows are not wrapped and tests can read a row as one line.
    for console in (dlq.console, dlq.err_console, tasks.console, tasks.err_console):
        monkeypatch.setattr(console, "width", 300)
    # The same wiring as busline/cli/main.py, without the `local` sub-app (not needed here).
    app = typer.Typer()
    app.add_typer(dlq.app, name="dlq")
    tasks.register(app)
    return app


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("BUSLINE_ENDPOINTS", "BUSLINE_API_URL", "AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        yield


@dataclass
class FakeDeployment:
    """The template's queues, DLQs and tasks table in moto, described by an endpoints.json like `busline local up` writes."""

    endpoints_file: Path
    outputs: dict[str, str]
    sqs: Any
    table: Any

    def queue_url(self, phase: str) -> str:
        return self.outputs[f"{phase.capitalize()}QueueUrl"]

    def dlq_url(self, phase: str) -> str:
        return self.outputs[f"{phase.capitalize()}DeadLetterQueueUrl"]

    def dead_letter(self, phase: str, task_id: str, chunk: int | None = None) -> str:
        """Put an EventBridge-shaped message straight into a phase's DLQ; return its message id."""
        detail: dict[str, Any] = {"taskId": task_id}
        detail_type = "TaskSubmitted"
        if chunk is not None:
            detail.update(phase=phase, chunk=chunk, key=f"tasks/{task_id}/x/{chunk:06d}.jsonl.gz", rows=10)
            detail_type = "ChunkExtracted" if phase == "transform" else "ChunkTransformed"
        event = {"version": "0", "id": f"evt-{task_id}-{chunk}", "detail-type": detail_type, "source": "busline",
                 "account": "123456789012", "time": "2026-11-22T10:00:00Z", "region": REGION,
                 "resources": [], "detail": detail}
        sent = self.sqs.send_message(
            QueueUrl=self.dlq_url(phase), MessageBody=json.dumps(event),
            MessageAttributes={"origin": {"DataType": "String", "StringValue": "test"}},
        )
        return str(sent["MessageId"])

    def failed_task(self, task_id: str, failure: Any) -> None:
        """A task recorded as the API records it, then failed by `failure` (a state-machine event)."""
        tasks = TasksRepository(self.table)
        tasks.create(TaskState.submitted(task_id, "local-user", "adhoc", "{}", datetime.now(UTC)))
        assert tasks.apply(task_id, failure) is not None

    def depth(self, url: str) -> int:
        attributes = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
        return int(attributes["Attributes"]["ApproximateNumberOfMessages"])

    def drain(self, url: str) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        while batch := self.sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        ).get("Messages", []):
            messages.extend(batch)
        return messages


@pytest.fixture
def deployment(aws_env: None, tmp_path: Path) -> FakeDeployment:
    """template.yaml's queues, DLQs and tables, provisioned in moto by the local cloud's provisioner."""
    outputs = dict(provision_in_process(TEMPLATE, region=REGION).outputs)
    endpoints_file = tmp_path / "endpoints.json"
    # No "aws" endpoint: boto3 talks to the default AWS endpoints, which mock_aws intercepts in-process.
    endpoints_file.write_text(json.dumps({"rest": "http://127.0.0.1:9", "region": REGION, "outputs": outputs}))
    table = boto3.resource("dynamodb", region_name=REGION).Table(outputs["TasksTableName"])
    return FakeDeployment(
        endpoints_file=endpoints_file, outputs=outputs, sqs=boto3.client("sqs", region_name=REGION), table=table
    )
