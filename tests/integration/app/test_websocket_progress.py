"""Live progress of the flights demo over the WebSocket API: ordered, coalesced, and ending with the result."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.integration

PHASES = ("extract", "transform", "load")
# 17 chunks x 3 phases is ~50 task-item writes; coalescing must keep pushes to tens, never per row.
MAX_MESSAGES = 200


def test_subscriber_gets_an_immediate_snapshot_then_updates(flights_run: Any) -> None:
    # Given a client that subscribed right after submitting the flights demo
    messages = flights_run.messages
    # Then the first message is the task's snapshot, and more than the subscribe answer followed
    assert messages[0]["taskId"] == flights_run.task_id
    assert messages[0]["pipeline"] == "flights"
    assert len(messages) >= 2, messages


def test_done_counts_never_go_backwards(flights_run: Any) -> None:
    # Given every message the subscriber received, in order
    messages = flights_run.messages
    # Then per phase the done count and the snapshot time never decrease
    for phase in PHASES:
        done = [message["phases"][phase]["done"] for message in messages]
        assert done == sorted(done), f"{phase}: {done}"
    stamps = [message["updatedAtMs"] for message in messages]
    assert stamps == sorted(stamps), stamps
    # and every message is about the subscribed task
    assert {message["taskId"] for message in messages} == {flights_run.task_id}


def test_last_message_is_terminal_and_carries_the_final_counts(flights_run: Any) -> None:
    # Given the last message the subscriber received
    last = flights_run.messages[-1]
    # Then it is the terminal one, with the same counts and phases as GET /tasks/{id}
    assert last["status"] == "SUCCEEDED"
    assert last["counts"] == flights_run.final["counts"]
    assert last["phases"] == flights_run.final["phases"]


def test_progress_is_coalesced(flights_run: Any) -> None:
    # Given a run of 336,776 rows in 17 chunks
    # Then the subscriber got tens of messages, not one per row or per write
    assert 2 <= len(flights_run.messages) <= MAX_MESSAGES, len(flights_run.messages)
