"""src/progress: the stream handler (stream.py), the WebSocket routes (routes.py) and the watchdog."""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from typing import Any

import boto3
import pytest
from busline_core.progress import USAGE, FrameThrottle
from busline_core.task_state import ExtractStarted
from handler_kit import OWNER, REGION, Cloud, FakeLambdaContext, event_file, of_type, small_spec, submit

SAMPLE_TASK = "5f0c2a7e-8d41-4b9a-9a3e-6c1d2b7f4e10"  # the task in events/progress_stream.json and ws_subscribe.json


def ws_event(name: str, connection_id: str, route: str | None = None, body: Any = None) -> dict[str, Any]:
    event = copy.deepcopy(event_file(name))
    event["requestContext"]["connectionId"] = connection_id
    if route is not None:
        event["requestContext"]["routeKey"] = route
    if body is not None:
        event["body"] = json.dumps(body)
    return event


def connection(cloud: Cloud, connection_id: str) -> dict[str, Any] | None:
    table = boto3.resource("dynamodb", region_name=REGION).Table(cloud.connections_table)
    return table.get_item(Key={"connectionId": connection_id}).get("Item")


def test_connect_subscribe_and_disconnect(cloud: Cloud, load_handler: Any, context: FakeLambdaContext) -> None:
    # Given a submitted task and the WebSocket routes' function
    routes = load_handler("progress/routes")
    task_id = submit(small_spec(f"s3://{cloud.bucket}/uploads/{OWNER}/in.csv"))
    # When a client connects and subscribes to the task
    connected = routes.lambda_handler(ws_event("ws_connect.json", "conn-A"), context)
    subscribed = routes.lambda_handler(ws_event("ws_subscribe.json", "conn-A", body={"action": "subscribe", "taskId": task_id}), context)
    # Then both answer 200, the subscription is stored and the current snapshot was pushed at once
    assert connected == {"statusCode": 200}
    assert subscribed == {"statusCode": 200}
    assert connection(cloud, "conn-A")["taskId"] == task_id
    [snapshot] = cloud.pushed("conn-A")
    assert (snapshot["taskId"], snapshot["status"]) == (task_id, "ACCEPTED")
    # When it disconnects / Then the connection is forgotten
    assert routes.lambda_handler(ws_event("ws_connect.json", "conn-A", route="$disconnect"), context) == {"statusCode": 200}
    assert connection(cloud, "conn-A") is None


def test_a_change_stored_while_subscribing_is_in_the_answer(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a submitted task, and its extract starting after subscribe has read the task but before the
    # subscription is stored (so the stream finds no watcher for that change)
    routes = load_handler("progress/routes")
    task_id = submit(small_spec(f"s3://{cloud.bucket}/uploads/{OWNER}/in.csv"))
    routes.lambda_handler(ws_event("ws_connect.json", "conn-S"), context)
    store_subscription = routes.deps.connections.subscribe

    def extract_starts_first(connection_id: str, subscribed_task: str) -> None:
        routes.deps.tasks.apply(subscribed_task, ExtractStarted())
        store_subscription(connection_id, subscribed_task)

    monkeypatch.setattr(routes.deps.connections, "subscribe", extract_starts_first)
    # When the client subscribes
    routes.lambda_handler(ws_event("ws_subscribe.json", "conn-S", body={"action": "subscribe", "taskId": task_id}), context)
    # Then the one snapshot it gets already shows the extract running
    [snapshot] = cloud.pushed("conn-S")
    assert (snapshot["taskId"], snapshot["status"]) == (task_id, "EXTRACTING")


def test_subscribe_to_an_unknown_task_and_unknown_actions_get_a_message(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext
) -> None:
    # Given the sample subscribe event (its task does not exist here) and a message with no route
    routes = load_handler("progress/routes")
    routes.lambda_handler(ws_event("ws_connect.json", "conn-B"), context)
    # When both are handled
    subscribed = routes.lambda_handler(ws_event("ws_subscribe.json", "conn-B"), context)
    defaulted = routes.lambda_handler(ws_event("ws_subscribe.json", "conn-B", route="$default", body={"hello": 1}), context)
    # Then each answers 200 and pushes exactly one explanatory message
    assert subscribed == defaulted == {"statusCode": 200}
    assert cloud.pushed("conn-B") == [{"error": f"task {SAMPLE_TASK} not found"}, USAGE]


def test_stream_batch_is_coalesced_into_one_push_per_subscriber(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext
) -> None:
    # Given two of the owner's connections and one of another owner subscribed to the sample task
    # (recorded directly: the task is only in the stream)
    stream = load_handler("progress/stream")
    for connection_id in ("conn-C", "conn-D"):
        stream.deps.connections.add(connection_id, OWNER, SAMPLE_TASK)
    stream.deps.connections.add("conn-E", "someone-else", SAMPLE_TASK)
    # When the sample stream batch (two MODIFY records of that task) is handled
    stream.lambda_handler(event_file("progress_stream.json"), context)
    # Then each of the owner's connections got exactly one message, the newest snapshot; the other none
    for connection_id in ("conn-C", "conn-D"):
        [message] = cloud.pushed(connection_id)
        assert message["taskId"] == SAMPLE_TASK
        assert message["counts"] == {"read": 336776, "filtered": 2941, "rejected": 156, "loaded": 77411, "deleted": 0}
        assert message["phases"]["load"]["done"] == 4
    assert cloud.pushed("conn-E") == []


def stream_event(*images: dict[str, Any]) -> dict[str, Any]:
    """The sample stream event with one MODIFY record per new image given, in order."""
    event = copy.deepcopy(event_file("progress_stream.json"))
    template = event["Records"][-1]
    event["Records"] = []
    for index, image in enumerate(images):
        record = copy.deepcopy(template)
        record["eventID"] = f"event-{index}"
        record["dynamodb"]["NewImage"] = image
        record["dynamodb"]["Keys"] = {"taskId": image["taskId"]}
        event["Records"].append(record)
    return event


def image(task_id: str, status: str, updated_at_ms: int, loaded: int) -> dict[str, Any]:
    new_image = copy.deepcopy(event_file("progress_stream.json")["Records"][-1]["dynamodb"]["NewImage"])
    new_image.update(taskId={"S": task_id}, status={"S": status}, updatedAtMs={"N": str(updated_at_ms)},
                     count_loaded={"N": str(loaded)})
    return new_image


def _paced_on_a_fake_clock(frames_per_second: float) -> tuple[FrameThrottle, list[float], list[float]]:
    """A throttle whose clock is `now[0]` and whose sleeps are recorded in `slept` and move `now` on."""
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    return FrameThrottle(frames_per_second, clock=lambda: now[0], sleep=sleep), now, slept


def test_stream_pushes_are_paced_per_task_and_the_final_state_is_not_held_back(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given PROGRESS_FRAMES_PER_SECOND=2 (the template parameter ProgressFramesPerSecond), read at cold start
    monkeypatch.setenv("PROGRESS_FRAMES_PER_SECOND", "2")
    stream = load_handler("progress/stream")
    assert (stream.throttle.burst, stream.throttle.window_s) == (2, 1.0)
    # (the same pace on a fake clock, so the test does not sleep)
    stream.throttle, now, slept = _paced_on_a_fake_clock(2)
    stream.deps.connections.add("conn-F", OWNER, SAMPLE_TASK)
    # When the task's first change arrives, then two newer ones 0.1 s apart, then its final state 0.1 s later
    for version in (1, 2, 3):
        stream.lambda_handler(stream_event(image(SAMPLE_TASK, "LOADING", version, 100 * version)), context)
        now[0] += 0.1
    stream.lambda_handler(stream_event(image(SAMPLE_TASK, "SUCCEEDED", 4, 400)), context)
    # Then the first two went out at once, the third after waiting until the first was a second old (0.8 s
    # more), and the final state without any wait, last
    assert slept == [pytest.approx(0.8)]
    frames = cloud.pushed("conn-F")
    assert [(frame["status"], frame["counts"]["loaded"]) for frame in frames] == [
        ("LOADING", 100), ("LOADING", 200), ("LOADING", 300), ("SUCCEEDED", 400),
    ]


def test_a_change_that_waited_is_pushed_as_the_task_stands_after_the_wait(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext
) -> None:
    # Given a watched task whose item is stored at time `stored`, and a pace of 2 frames/s on a fake clock
    stream = load_handler("progress/stream")
    task_id = submit(small_spec(f"s3://{cloud.bucket}/uploads/{OWNER}/in.csv"))
    stored = int(cloud.task(task_id)["updatedAtMs"])
    stream.throttle, now, slept = _paced_on_a_fake_clock(2)
    stream.deps.connections.add("conn-G", OWNER, task_id)
    # When two changes are pushed 0.1 s apart, a third comes 0.1 s later (the item has moved on since it
    # was written), and then come the stream records of the stored state and of a newer one
    stream.lambda_handler(stream_event(image(task_id, "ACCEPTED", stored - 30, 1)), context)
    now[0] += 0.1
    stream.lambda_handler(stream_event(image(task_id, "ACCEPTED", stored - 20, 2)), context)
    now[0] += 0.1
    stream.lambda_handler(stream_event(image(task_id, "ACCEPTED", stored - 10, 3)), context)
    stream.lambda_handler(stream_event(image(task_id, "ACCEPTED", stored, 0)), context)
    now[0] += 1.0
    stream.lambda_handler(stream_event(image(task_id, "ACCEPTED", stored + 10, 4)), context)
    # Then the third frame, after its 0.8 s wait, is the stored state rather than the change that waited;
    # the stored state's own record sends nothing, and the newer one goes out at once
    assert slept == [pytest.approx(0.8)]
    frames = cloud.pushed("conn-G")
    assert [(frame["updatedAtMs"], frame["counts"]["loaded"]) for frame in frames] == [
        (stored - 30, 1), (stored - 20, 2), (stored, 0), (stored + 10, 4),
    ]


def test_a_task_nobody_watches_costs_no_wait(cloud: Cloud, load_handler: Any, context: FakeLambdaContext) -> None:
    # Given the stream function with a throttle that may not sleep, and no subscriber of a task
    stream = load_handler("progress/stream")

    def no_sleep(seconds: float) -> None:
        raise AssertionError(f"slept {seconds} s for a task nobody watches")

    stream.throttle = FrameThrottle(4, clock=lambda: 0.0, sleep=no_sleep)
    # When two changes of it come in two invocations / Then neither waits nor pushes
    for version in (1, 2):
        stream.lambda_handler(stream_event(image("unwatched-task", "LOADING", version, version)), context)


def test_watchdog_fails_a_stalled_task_only(cloud: Cloud, load_handler: Any, context: FakeLambdaContext) -> None:
    # Given two tasks, one last updated 10 minutes ago (STALL_SECONDS is 300)
    watchdog = load_handler("progress/watchdog")
    fresh = submit(small_spec(f"s3://{cloud.bucket}/uploads/{OWNER}/in.csv"))
    stalled = submit(small_spec(f"s3://{cloud.bucket}/uploads/{OWNER}/in.csv"))
    cloud.age_task(stalled, timedelta(minutes=10))
    cloud.published()
    # When the scheduled event arrives
    watchdog.lambda_handler(event_file("watchdog_schedule.json"), context)
    # Then only the stalled task is FAILED, with a message naming the phase, and announced once
    assert cloud.task(fresh)["status"] == "ACCEPTED"
    task = cloud.task(stalled)
    assert task["status"] == "FAILED"
    assert task["error"]["message"].startswith("stalled in extract: no progress for 6")
    assert [e["detail"]["taskId"] for e in of_type(cloud.published(), "TaskFailed")] == [stalled]


def test_another_owners_subscribe_answers_like_a_missing_task(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext
) -> None:
    # Given the owner's task, and bob connected through the authorizer with his own principal
    routes = load_handler("progress/routes")
    task_id = submit(small_spec(f"s3://{cloud.bucket}/uploads/{OWNER}/in.csv"))
    bobs_connect = ws_event("ws_connect.json", "conn-bob")
    bobs_connect["requestContext"]["authorizer"] = {"principalId": "bob-sub", "owner": "bob-sub"}
    routes.lambda_handler(bobs_connect, context)
    # When bob subscribes to the owner's task and to a task that does not exist
    for wanted in (task_id, "no-such-task"):
        subscribe = ws_event("ws_subscribe.json", "conn-bob", body={"action": "subscribe", "taskId": wanted})
        subscribe["requestContext"]["authorizer"] = {"principalId": "bob-sub", "owner": "bob-sub"}
        assert routes.lambda_handler(subscribe, context) == {"statusCode": 200}
    # Then both answers read alike, and bob's connection subscribes to nothing
    assert cloud.pushed("conn-bob") == [{"error": f"task {task_id} not found"}, {"error": "task no-such-task not found"}]
    assert "taskId" not in connection(cloud, "conn-bob")
    assert connection(cloud, "conn-bob")["owner"] == "bob-sub"


def test_a_connection_without_an_authorizer_principal_is_refused(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext
) -> None:
    # Given a $connect event that did not pass through the authorizer
    routes = load_handler("progress/routes")
    event = ws_event("ws_connect.json", "conn-anon")
    del event["requestContext"]["authorizer"]
    # When it is handled / Then it is refused and nothing is stored
    assert routes.lambda_handler(event, context) == {"statusCode": 401}
    assert connection(cloud, "conn-anon") is None
