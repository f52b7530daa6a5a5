"""correlation.py: which id a request gives its task, and how events and log lines get it."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from aws_lambda_powertools import Logger
from busline_core import correlation
from busline_core.bus import EventPublisher
from busline_core.contracts import ChunkExtracted, Counts, TaskFinished, TaskStatus
from busline_core.errors import InvalidTask


@pytest.fixture(autouse=True)
def unbound() -> Iterator[None]:
    correlation.bind(None)
    yield
    correlation.bind(None)


class _Events:
    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803 - boto3's name
        self.entries += Entries
        return {"FailedEntryCount": 0, "Entries": [{"EventId": str(n)} for n in range(len(Entries))]}


@pytest.mark.parametrize(
    "headers, expected",
    [
        (None, "api-request-1"),
        ({"x-correlation-id": "order-sync:42/7"}, "order-sync:42/7"),
        ({"X-Correlation-Id": "A" * 128}, "A" * 128),
    ],
)
def test_a_request_gives_its_header_or_else_its_request_id(headers: dict[str, str] | None, expected: str) -> None:
    assert correlation.from_request(headers, "api-request-1") == expected


@pytest.mark.parametrize("sent", ["", "two words", "-leading", "A" * 129, "naïve", "a\nb"])
def test_a_malformed_header_is_the_clients_mistake_naming_it(sent: str) -> None:
    with pytest.raises(InvalidTask) as raised:
        correlation.from_request({"X-Correlation-Id": sent}, "api-request-1")
    assert [error["field"] for error in raised.value.errors] == ["X-Correlation-Id"]


def test_published_events_carry_the_bound_id_unless_they_name_their_own() -> None:
    # Given a publisher and a bound correlation id
    events = _Events()
    publisher = EventPublisher(events, "bus")
    correlation.bind("task-request-9")
    # When an event without an id and one with its own are published
    publisher.publish("ChunkExtracted", ChunkExtracted(taskId="t", chunk=0, key="k", rows=1))
    publisher.publish(
        "TaskSucceeded",
        TaskFinished(taskId="t", status=TaskStatus.SUCCEEDED, counts=Counts(), correlationId="the-tasks-own"),
    )
    # Then the first got the bound id and the second kept its own
    assert [json.loads(entry["Detail"])["correlationId"] for entry in events.entries] == [
        "task-request-9", "the-tasks-own"
    ]


def test_log_lines_carry_the_bound_id_and_the_next_record_does_not_inherit_it(capsys: pytest.CaptureFixture[str]) -> None:
    # Given a function's logger (the service the layer's child loggers belong to)
    logger = Logger(service=correlation._logger.service, logger_handler=logging.StreamHandler())
    # When one record's id is bound, then a record of no task
    correlation.bind("first-task")
    logger.info("working on the first")
    correlation.bind(None)
    logger.info("working on the next")
    # Then the first line has the id and the second none
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line.get("correlation_id") for line in lines] == ["first-task", None]
