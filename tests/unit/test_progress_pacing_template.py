"""template.yaml's side of live progress pacing: no batching window on the tasks stream, and the pace
(ProgressFramesPerSecond) handed to ProgressFunction, whose settings agree with its bounds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from busline_core.settings import StreamSettings
from pydantic import ValidationError
from samtranslator.yaml_helper import yaml_parse

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


@pytest.fixture(scope="module")
def sam() -> dict[str, Any]:
    return yaml_parse(TEMPLATE.read_text())


def test_the_tasks_stream_has_no_batching_window(sam: dict[str, Any]) -> None:
    # Given the progress function's stream event / Then a change is delivered without being held back
    event = sam["Resources"]["ProgressFunction"]["Properties"]["Events"]["TaskChanges"]
    assert event["Type"] == "DynamoDB"
    assert event["Properties"]["MaximumBatchingWindowInSeconds"] == 0
    assert "ProgressBatchWindow" not in sam["Parameters"]
    assert "ProgressBatchWindow" not in TEMPLATE.read_text()


def test_the_pace_is_a_parameter_the_progress_function_reads(sam: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the parameter and the function's environment
    parameter = sam["Parameters"]["ProgressFramesPerSecond"]
    variables = sam["Resources"]["ProgressFunction"]["Properties"]["Environment"]["Variables"]
    # Then the function gets it, and its settings default and bounds are the parameter's
    assert variables["PROGRESS_FRAMES_PER_SECOND"] == {"Ref": "ProgressFramesPerSecond"}
    # (the tasks table, read again after a throttled wait, comes from the functions' Globals)
    assert sam["Globals"]["Function"]["Environment"]["Variables"]["TASKS_TABLE"] == {"Ref": "TasksTable"}
    monkeypatch.setenv("TASKS_TABLE", "tasks")
    monkeypatch.setenv("CONNECTIONS_TABLE", "connections")
    monkeypatch.setenv("WEBSOCKET_MANAGEMENT_ENDPOINT", "https://example.invalid/dev")
    monkeypatch.delenv("PROGRESS_FRAMES_PER_SECOND", raising=False)
    assert StreamSettings().progress_frames_per_second == parameter["Default"] == 4
    for allowed in (parameter["MinValue"], parameter["MaxValue"]):
        monkeypatch.setenv("PROGRESS_FRAMES_PER_SECOND", str(allowed))
        assert StreamSettings().progress_frames_per_second == allowed
    for refused in (parameter["MinValue"] - 0.5, parameter["MaxValue"] + 1):
        monkeypatch.setenv("PROGRESS_FRAMES_PER_SECOND", str(refused))
        with pytest.raises(ValidationError, match="progress_frames_per_second"):
            StreamSettings()
