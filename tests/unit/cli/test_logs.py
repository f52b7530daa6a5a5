"""`busline logs`: a task's lines from every function's log, in time order, found by its correlation id."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.stub import Stubber
from test_tasks import RUNNING, SUCCEEDED, TASK_ID, write_endpoints
from test_tasks import fake_api as fake_api  # noqa: F401 - the fixture

from busline.cli import logs as log_lines

CORRELATION_ID = "order-sync:42"


def _line(at: str, message: str, **keys: Any) -> str:
    record = {"level": "INFO", "location": "x:1", "message": message, "timestamp": f"2026-12-01 {at}+0000",
              "service": "busline", "function_name": "f", **keys}  # fmt: skip
    return json.dumps(record) + "\n"


def _logs_dir(tmp_path: Path) -> Path:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "ApiFunction.log").write_text(
        "START RequestId: 1 Version: $LATEST\n"
        + _line("10:00:00,100", "task accepted", task_id=TASK_ID, correlation_id=CORRELATION_ID)
        + _line("10:00:00,200", "task accepted", task_id="another", correlation_id="someone-else")
    )
    (logs / "ExtractFunction.log").write_text(
        _line("10:00:01,000", "source planned", correlation_id=CORRELATION_ID, ranges=3)
    )
    (logs / "LoadFunction.log").write_text(
        _line("10:00:03,500", "task committed", task_id=TASK_ID, correlation_id=CORRELATION_ID, loaded=7)
        + _line("10:00:02,250", "Record processing exception", task_id=TASK_ID, correlation_id=CORRELATION_ID,
                chunk=1, level="WARNING", exception="Traceback…\nClientError: ServiceUnavailable")
        + '{"half a line'
    )  # fmt: skip
    return logs


def test_logs_prints_the_tasks_lines_from_every_function_in_time_order(runner, cli_app, fake_api, tmp_path):
    # Given a finished task with a correlation id, and the local cloud's log files beside its endpoints.json
    fake_api.answer("GET", f"/tasks/{TASK_ID}", (200, {**SUCCEEDED, "correlationId": CORRELATION_ID}))
    endpoints = write_endpoints(tmp_path, fake_api.url)
    _logs_dir(tmp_path)
    # When its logs are asked for
    result = runner.invoke(cli_app, ["logs", TASK_ID, "--endpoints", str(endpoints)])
    # Then the task's four lines are printed, oldest first, and no other task's
    assert result.exit_code == 0, result.output + result.stderr
    assert result.stdout.splitlines() == [
        f"Task {TASK_ID} · correlation id {CORRELATION_ID}",
        "10:00:00.100  ApiFunction          INFO    task accepted",
        "10:00:01.000  ExtractFunction      INFO    source planned  ranges=3",
        "10:00:02.250  LoadFunction         WARNING Record processing exception  chunk=1 "
        "exception=ClientError: ServiceUnavailable",
        "10:00:03.500  LoadFunction         INFO    task committed  loaded=7",
    ]


def test_logs_of_another_owners_task_is_not_found(runner, cli_app, fake_api, tmp_path):
    # Given a task the API does not show this caller / When its logs are asked for
    endpoints = write_endpoints(tmp_path, fake_api.url)
    _logs_dir(tmp_path)
    result = runner.invoke(cli_app, ["logs", "not-mine", "--endpoints", str(endpoints)])
    # Then it is not found, and no line is printed
    assert (result.exit_code, result.stdout) == (1, "")
    assert "task not-mine not found" in result.stderr


def test_follow_prints_lines_as_they_are_written_until_the_task_ends(tmp_path):
    # Given a running task's logs
    logs = _logs_dir(tmp_path)
    reader = log_lines.LocalLogs(logs)
    finished = threading.Event()

    def finish_later() -> None:
        time.sleep(0.3)
        with (logs / "TransformFunction.log").open("a") as stream:
            stream.write(_line("10:00:02,000", "chunk transformed", task_id=TASK_ID, correlation_id=CORRELATION_ID))
        finished.set()

    writer = threading.Thread(target=finish_later)
    writer.start()
    # When followed
    seen = [line.message for line in log_lines.follow(
        lambda: reader.new_lines(CORRELATION_ID, TASK_ID), finished.is_set, poll_s=0.05, grace_s=0.2
    )]  # fmt: skip
    writer.join()
    # Then each line came once, the late one after the first four, and following stopped after the end
    assert seen == ["task accepted", "source planned", "Record processing exception", "task committed",
                    "chunk transformed"]  # fmt: skip


def test_on_aws_one_logs_insights_query_finds_the_lines_by_correlation_id_or_task_id():
    # Given the CloudWatch Logs API, answering one query
    import boto3

    client = boto3.client("logs", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    since = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    until = datetime(2026, 12, 1, 10, 5, tzinfo=UTC)
    groups = ["/aws/lambda/busline-ExtractFunction-1", "/aws/lambda/busline-LoadFunction-2"]
    with Stubber(client) as stub:
        stub.add_response(
            "start_query",
            {"queryId": "q1"},
            {
                "logGroupNames": groups,
                "startTime": int(since.timestamp()),
                "endTime": int(until.timestamp()) + 1,
                "queryString": f'fields @timestamp, @log, level, message, chunk, exception | filter correlation_id = '
                f'"{CORRELATION_ID}" or task_id = "{TASK_ID}" | sort @timestamp asc | limit 10000',
            },
        )
        stub.add_response("get_query_results", {"status": "Running", "results": []}, {"queryId": "q1"})
        stub.add_response(
            "get_query_results",
            {
                "status": "Complete",
                "results": [
                    [{"field": "@timestamp", "value": "2026-12-01 10:00:03.500"},
                     {"field": "@log", "value": "123456789012:/aws/lambda/busline-LoadFunction-2"},
                     {"field": "level", "value": "INFO"}, {"field": "message", "value": "task committed"}],
                    [{"field": "@timestamp", "value": "2026-12-01 10:00:01.000"},
                     {"field": "@log", "value": "123456789012:/aws/lambda/busline-ExtractFunction-1"},
                     {"field": "level", "value": "INFO"}, {"field": "message", "value": "source planned"},
                     {"field": "chunk", "value": "0"}],
                ],
            },
            {"queryId": "q1"},
        )  # fmt: skip
        # When the lines are asked for
        found = log_lines.insights_lines(client, groups, CORRELATION_ID, TASK_ID, since, until, sleep=lambda _: None)
    # Then they come in time order, named by function
    assert [line.render() for line in found] == [
        "10:00:01.000  busline-ExtractFunction-1 INFO    source planned  chunk=0",
        "10:00:03.500  busline-LoadFunction-2 INFO    task committed",
    ]


def test_an_id_a_query_cannot_carry_is_never_put_in_one():
    import pytest

    with pytest.raises(ValueError):
        log_lines.insights_query('x" or 1=1', TASK_ID)
    assert RUNNING["status"] == "TRANSFORMING"
