"""The REST API fuzzed from its own served OpenAPI document (schemathesis, on Hypothesis), signed in as
alice: valid and invalid requests for every operation; no answer is a 5xx, and every status is one the
document declares for that operation, with a body of the declared schema."""

from __future__ import annotations

from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, status_code_conformance

pytestmark = pytest.mark.integration

# Per operation and generation mode: bounded so CI's time stays predictable; derandomized so a failure
# found once is found again.
EXAMPLES = 40


def _is_the_flights_demo(case: Any) -> bool:
    """A generated submit of the flights pipeline would run the whole 336,776-row demo for every
    example; test_flights_demo.py runs it once."""
    return isinstance(case.body, dict) and case.body.get("pipeline") == "flights"


@pytest.fixture(scope="module")
def schema(api: Any) -> Any:
    served = api.call("GET", "/swagger?format=json")
    assert served.status == 200, served.text
    return schemathesis.openapi.from_dict(served.body)


def _operations(schema: Any) -> list[Any]:
    return [operation.ok() for operation in schema.get_all_operations()]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_fuzzed_requests_get_no_5xx_and_only_declared_statuses(api: Any, schema: Any, mode: GenerationMode) -> None:
    operations = _operations(schema)
    labels = sorted(operation.label for operation in operations)
    assert labels == [
        "DELETE /schedules/{scheduleId}",
        "GET /pipelines",
        "GET /pipelines/{name}/dashboard",
        "GET /schedules",
        "GET /schedules/{scheduleId}",
        "GET /tasks",
        "GET /tasks/{taskId}",
        "GET /tasks/{taskId}/rejects",
        "GET /tasks/{taskId}/rejects/summary",
        "POST /schedules",
        "POST /tasks",
        "POST /tasks/{taskId}/cancel",
        "POST /uploads",
    ]
    session = requests.Session()
    headers = {"Authorization": api.token}
    seen: dict[str, set[int]] = {label: set() for label in labels}
    sent: list[int] = []
    strategy = st.one_of(*(operation.as_strategy(generation_mode=mode) for operation in operations))

    @given(case=strategy.filter(lambda case: not _is_the_flights_demo(case)))
    @settings(
        max_examples=EXAMPLES * len(operations),
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is reported as found
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: Any) -> None:
        # When a generated request is sent through the gateway
        response = case.call(base_url=api.base_url, session=session, headers=headers, timeout=30)
        seen[case.operation.label].add(response.status_code)
        sent.append(response.status_code)
        # Then it is no 5xx, and its status is declared for the operation
        case.validate_response(response, checks=[not_a_server_error, status_code_conformance])

    fuzz()
    # And all 520 requests were sent, every operation among them (GET /pipelines and GET /schedules take no
    # input at all, so no request of them can be invalid)
    assert len(sent) == EXAMPLES * len(operations) == 520
    inputless = {"GET /pipelines", "GET /schedules"} if mode is GenerationMode.NEGATIVE else set()
    assert {label for label, statuses in seen.items() if statuses} == set(labels) - inputless, seen
