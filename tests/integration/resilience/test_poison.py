"""Poison messages and stalled tasks end in FAILED with a reason, never in a task that runs forever.

A poisoned chunk (the fault switch makes transform fail every delivery) is dead-lettered after MaxReceiveCount
deliveries and fails its task with phase, chunk and error, over REST and over the WebSocket. A task whose
chunk messages are lost (the rule that routes them had no target while it was extracted) is failed by the
watchdog.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from websockets.sync.client import connect

from busline.localcloud.testing import RunningCloud, websocket_url

from .resilience_support import (
    DRILL_MAX_RECEIVE_COUNT,
    DRILL_VISIBILITY_S,
    FAULT_MESSAGE,
    POISON_BOUND_S,
    STALL_SECONDS,
    Api,
    aws_client,
    generate_orders,
    queue_depth,
    run_cli,
    set_fault_switch,
    upload_task,
)

pytestmark = pytest.mark.integration

POISON_ROWS = 1500  # two chunks: both are poisoned, so the DLQ must hold exactly two messages
STALL_BOUND_S = STALL_SECONDS + 40  # idle time + a 5 s watchdog tick + extract and slack


@pytest.fixture
def transform_poisoned(drill_cloud: RunningCloud) -> Iterator[None]:
    set_fault_switch(drill_cloud.endpoints, "transform:fail")
    try:
        yield
    finally:
        set_fault_switch(drill_cloud.endpoints, "none")


def follow_until_terminal(
    signed_url: str, api: Api, spec: dict[str, Any], timeout_s: float
) -> list[dict[str, Any]]:
    """Connect, submit, subscribe; every snapshot pushed until the terminal one."""
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    with connect(signed_url, open_timeout=30) as socket:
        task_id = api.submit(spec)
        socket.send(json.dumps({"action": "subscribe", "taskId": task_id}))
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, (
                f"no terminal snapshot for {task_id} within {timeout_s} s; last: {messages[-1:]}"
            )
            try:
                message = json.loads(socket.recv(timeout=remaining))
            except TimeoutError:
                continue
            assert message.get("taskId") == task_id, f"the WebSocket answered {message}"
            messages.append(message)
            if message["status"] in ("SUCCEEDED", "FAILED"):
                return messages


def test_poisoned_chunks_reach_the_dlq_and_fail_the_task(
    stalled_task: StalledTask, drill_cloud: RunningCloud, transform_poisoned: None
) -> None:
    # (stalled_task is only requested to start the watchdog drill early; it runs alongside this one)
    # Given transform fails every delivery (fault switch), and a 1,500-row task (2 chunks) followed over the WebSocket
    endpoints = drill_cloud.endpoints
    api = Api(endpoints)
    sqs = aws_client(endpoints, "sqs")
    dlq_url = endpoints["outputs"]["TransformDeadLetterQueueUrl"]
    assert queue_depth(sqs, dlq_url) == (0, 0)
    spec = upload_task(drill_cloud, "poison", generate_orders(unique=POISON_ROWS, repeated=0, salt=11))
    started = time.monotonic()

    # When the task runs
    messages = follow_until_terminal(websocket_url(endpoints, api.token), api, spec, timeout_s=POISON_BOUND_S)
    seconds = time.monotonic() - started
    task_id = messages[-1]["taskId"]

    # Then the WebSocket pushed the FAILED snapshot naming phase, chunk and the error
    pushed = messages[-1]
    assert pushed["status"] == "FAILED", pushed
    assert pushed["error"]["phase"] == "transform"
    assert pushed["error"]["chunk"] in (0, 1)
    assert FAULT_MESSAGE in pushed["error"]["message"]
    # and GET /tasks/{id} says the same: extract done, transform stuck at 0 of 2, nothing loaded
    snapshot = api.task(task_id)
    assert snapshot["status"] == "FAILED"
    assert snapshot["error"] == pushed["error"]
    assert snapshot["phases"]["extract"] == {"done": 2, "total": 2, "status": "completed"}
    assert snapshot["phases"]["transform"]["done"] == 0
    assert snapshot["counts"]["loaded"] == 0
    print(f"\npoisoned task FAILED after {seconds:.1f} s: {snapshot['error']}")

    # and both chunk messages end in the transform DLQ (moved on the receive after the last allowed one)
    deadline = time.monotonic() + DRILL_VISIBILITY_S + 15
    while queue_depth(sqs, dlq_url)[0] < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert queue_depth(sqs, dlq_url) == (2, 0)
    assert queue_depth(sqs, endpoints["outputs"]["TransformQueueUrl"]) == (0, 0)
    listed = run_cli(
        "dlq",
        "show",
        "--task",
        task_id,
        "--json",
        "--endpoints",
        str(drill_cloud.data_dir / "endpoints.json"),
    )
    assert listed.returncode == 0, listed.stderr
    shown = json.loads(listed.stdout)
    assert sorted((row["taskId"], row["phase"], row["chunk"]) for row in shown) == [
        (task_id, "transform", 0),
        (task_id, "transform", 1),
    ]
    assert {row["receiveCount"] >= DRILL_MAX_RECEIVE_COUNT for row in shown} == {True}

    # Finally the DLQ is purged through the CLI, so later drills start from an empty DLQ
    purged = run_cli(
        "dlq",
        "purge",
        "--queue",
        "transform",
        "--yes",
        "--endpoints",
        str(drill_cloud.data_dir / "endpoints.json"),
    )
    assert purged.returncode == 0, purged.stdout + purged.stderr
    assert queue_depth(sqs, dlq_url) == (0, 0)


def _rule_routing_to(events: Any, bus: str, queue_arn: str) -> tuple[str, list[dict[str, Any]]]:
    for rule in events.list_rules(EventBusName=bus)["Rules"]:
        targets = events.list_targets_by_rule(Rule=rule["Name"], EventBusName=bus)["Targets"]
        if any(target["Arn"] == queue_arn for target in targets):
            return rule["Name"], targets
    raise AssertionError(f"no rule on {bus} routes to {queue_arn}")


@dataclass(frozen=True)
class StalledTask:
    task_id: str
    submitted: float  # time.monotonic() at submission


@pytest.fixture(scope="module")
def stalled_task(drill_cloud: RunningCloud) -> StalledTask:
    """A task whose ChunkExtracted events went nowhere (the routing rule had no target while it was extracted),
    as if every transform message had been lost. Started before the poison drill so that the watchdog's
    StallSeconds of idling overlap it instead of adding to the folder's run time."""
    endpoints = drill_cloud.endpoints
    api = Api(endpoints)
    events = aws_client(endpoints, "events")
    sqs = aws_client(endpoints, "sqs")
    bus = endpoints["outputs"]["EventBusName"]
    queue_arn = sqs.get_queue_attributes(
        QueueUrl=endpoints["outputs"]["TransformQueueUrl"], AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    spec = upload_task(drill_cloud, "stalled", generate_orders(unique=500, repeated=0, salt=12))
    rule, targets = _rule_routing_to(events, bus, queue_arn)
    events.remove_targets(Rule=rule, EventBusName=bus, Ids=[target["Id"] for target in targets])
    try:
        submitted = time.monotonic()
        task_id = api.submit(spec)
        # extract publishes ChunkExtracted before it completes: once completed, its events are lost
        api.wait_until(
            task_id,
            lambda task: task["phases"]["extract"]["status"] == "completed",
            "extracted",
            timeout_s=STALL_BOUND_S,
        )
    finally:
        events.put_targets(Rule=rule, EventBusName=bus, Targets=targets)
    return StalledTask(task_id, submitted)


def test_watchdog_fails_a_task_whose_chunks_stop_moving(
    drill_cloud: RunningCloud, stalled_task: StalledTask
) -> None:
    # Given a task whose extracted chunks never reached transform (their messages were lost)
    api = Api(drill_cloud.endpoints)

    # When it sits idle for longer than StallSeconds while the watchdog ticks (every 5 s here)
    remaining_s = STALL_BOUND_S - (time.monotonic() - stalled_task.submitted)
    snapshot = api.wait_terminal([stalled_task.task_id], timeout_s=max(remaining_s, 1.0))[
        stalled_task.task_id
    ]
    seconds = time.monotonic() - stalled_task.submitted

    # Then the watchdog has failed it, saying where it stalled and for how long
    assert snapshot["status"] == "FAILED", snapshot
    assert snapshot["phases"]["extract"] == {"done": 1, "total": 1, "status": "completed"}
    assert snapshot["phases"]["transform"]["done"] == 0
    assert snapshot["error"]["phase"] == "transform"
    assert snapshot["error"]["chunk"] is None
    assert snapshot["error"]["message"].startswith("stalled in transform: no progress for ")
    idle_s = int(snapshot["error"]["message"].split("no progress for ")[1].split(" s")[0])
    assert STALL_SECONDS <= idle_s <= STALL_BOUND_S
    print(f"\nstalled task FAILED {seconds:.1f} s after submission: {snapshot['error']['message']}")
