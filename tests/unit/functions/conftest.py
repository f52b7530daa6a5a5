"""Handler tests: the real handler modules against moto (`mock_aws`), fed the events/ files.

Every handler is called app.py, so each test imports its module afresh from its folder under a unique
name (as a fresh Lambda container would), after the fixture has set the environment the template sets.
"""

from __future__ import annotations

import importlib.util
import sys
import uuid
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from aws_lambda_powertools.utilities import parameters
from handler_kit import REGION, REPO, WS_ENDPOINT, Cloud, FakeLambdaContext, create_resources
from moto import mock_aws


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    """moto with template.yaml's resources (provisioned by the local cloud's provisioner), and the
    environment the template gives every function, pointing at them."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
        "POWERTOOLS_SERVICE_NAME": "busline", "POWERTOOLS_METRICS_NAMESPACE": "Busline",
        "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_DEV": "false", "LOG_LEVEL": "WARNING",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        created = create_resources()
        for name, value in {
            "TASKS_TABLE": created.tasks_table, "CONNECTIONS_TABLE": created.connections_table,
            "IDEMPOTENCY_TABLE": created.idempotency_table, "DATA_BUCKET": created.bucket, "EVENT_BUS_NAME": created.bus,
            "NOTIFICATION_TOPIC_ARN": created.topic_arn,
            "FAULTS_PARAMETER": created.faults_parameter, "CHUNK_ROWS": "20000", "MAX_RECEIVE_COUNT": "3",
            "STALL_SECONDS": "300", "DATABASE_SECRET_ARN": "", "WEBSOCKET_MANAGEMENT_ENDPOINT": WS_ENDPOINT,
            "PAGE_TOKEN_SECRET_ARN": created.stack.name("PageTokenSecret") if created.stack else "",
            "WEB_ORIGIN": created.stack.environment("ApiFunction")["WEB_ORIGIN"] if created.stack else "",
        }.items():
            monkeypatch.setenv(name, value)
        if created.stack is not None:
            api_environment = created.stack.environment("ApiFunction")
            for name in ("SCHEDULES_TABLE", "SCHEDULE_GROUP", "SCHEDULED_RUN_FUNCTION_ARN", "SCHEDULER_ROLE_ARN"):
                monkeypatch.setenv(name, api_environment[name])
        parameters.clear_caches()
        yield created
        parameters.clear_caches()


@pytest.fixture
def load_handler(cloud: Cloud) -> Iterator[Any]:
    """Import src/<folder>/app.py (or src/<folder>/<module>.py for "folder/module") as a fresh module
    (a cold start) inside the moto session."""
    loaded: list[str] = []

    def load(handler: str) -> ModuleType:
        folder, _, module_name = handler.partition("/")
        name = f"busline_handler_{folder}_{module_name}_{uuid.uuid4().hex}"
        spec = importlib.util.spec_from_file_location(name, REPO / "src" / folder / f"{module_name or 'app'}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        loaded.append(name)
        spec.loader.exec_module(module)
        return module

    yield load
    for name in loaded:
        sys.modules.pop(name, None)


@pytest.fixture
def context() -> FakeLambdaContext:
    return FakeLambdaContext()
