"""Talking to the local cloud: submit a task and follow it on the WebSocket, switch moto's recorder."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

TASK_TIMEOUT_S = 900.0
TERMINAL = ("SUCCEEDED", "FAILED")


def _http_json(method: str, url: str, token: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json", "Authorization": token}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            raw = response.read()
    except urllib.error.HTTPError as error:
        raise RuntimeError(f"{method} {url} answered {error.code}: {error.read()[:2000]!r}") from error
    return json.loads(raw) if raw else None


@dataclass
class FollowedTask:
    task_id: str
    seconds: float
    final: dict[str, Any]
    latencies_ms: list[float] = field(default_factory=list)
    messages: int = 0
    # (client receive time, the snapshot's updatedAtMs) of every frame, the answer to `subscribe` first
    frames: list[tuple[float, float]] = field(default_factory=list)


def run_task(
    endpoints: dict[str, Any], body: dict[str, Any], token: str, timeout_s: float = TASK_TIMEOUT_S
) -> FollowedTask:
    """Submit `body` as the user of `token`, follow it on the WebSocket until its terminal snapshot, return
    what was seen."""
    from websockets.sync.client import connect

    from busline.localcloud.testing import websocket_url

    frames: list[tuple[float, float]] = []
    messages = 0
    with connect(websocket_url(endpoints, token), open_timeout=30, max_size=None) as socket:
        started = time.monotonic()
        accepted = _http_json("POST", endpoints["rest"] + "/tasks", token, body)
        task_id = accepted["taskId"]
        socket.send(json.dumps({"action": "subscribe", "taskId": task_id}))
        deadline = started + timeout_s
        while True:
            if time.monotonic() > deadline:
                raise RuntimeError(f"task {task_id} did not finish within {timeout_s:g} s")
            try:
                raw = socket.recv(timeout=max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                continue
            received_ms = time.time() * 1000
            message = json.loads(raw)
            if "taskId" not in message:  # a refusal, e.g. {"error": "task … not found"}
                raise RuntimeError(f"WebSocket error for {task_id}: {message['error']}")
            messages += 1
            frames.append((received_ms, float(message["updatedAtMs"])))
            if message["status"] in TERMINAL:
                seconds = time.monotonic() - started
                break
    final = _http_json("GET", f"{endpoints['rest']}/tasks/{task_id}", token)
    if final["status"] != "SUCCEEDED":
        raise RuntimeError(f"task {task_id} ended {final['status']}: {final.get('error')}")
    # the first frame answers `subscribe` (the snapshot as stored), so it measures the subscribe, not a push
    latencies = [received_ms - updated_ms for received_ms, updated_ms in frames[1:]]
    return FollowedTask(task_id, seconds, final, latencies, messages, frames)


def task_images(dynamodb: Any, streams: Any, table_name: str, task_ids: set[str]) -> dict[str, list[dict[str, Any]]]:
    """Every new image of these tasks the tasks table's stream holds, in the order they were written."""
    stream_arn = dynamodb.describe_table(TableName=table_name)["Table"]["LatestStreamArn"]
    images: dict[str, list[dict[str, Any]]] = {task_id: [] for task_id in task_ids}
    for shard in streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = streams.get_records(ShardIterator=iterator, Limit=1000)
            for record in page["Records"]:
                image = record["dynamodb"].get("NewImage") or {}
                task_id = image.get("taskId", {}).get("S")
                if task_id in images:
                    images[task_id].append(image)
            # an open shard always hands out a next iterator: an empty page is its end for now
            iterator = page.get("NextShardIterator") if page["Records"] else None
    return images


def task_writes_ms(dynamodb: Any, streams: Any, table_name: str, task_ids: set[str]) -> dict[str, list[float]]:
    """Every write of these tasks as the tasks table's stream holds it: the `updatedAtMs` of each new image."""
    images = task_images(dynamodb, streams, table_name, task_ids)
    return {
        task_id: sorted({float(image["updatedAtMs"]["N"]) for image in held if "updatedAtMs" in image})
        for task_id, held in images.items()
    }


def index_writes(images: list[dict[str, Any]], attributes: set[str]) -> int:
    """Writes a global secondary index holding `attributes` (its keys and projected ones) took from a task's
    successive images: DynamoDB writes the index only when one of them changes, or the item first holds them."""
    written, last = 0, None
    for image in images:
        held = {name: image[name] for name in attributes if name in image}
        if held != last and held:
            written += 1
        last = held
    return written


def recorder(aws_endpoint: str, action: str) -> str:
    url = f"{aws_endpoint}/moto-api/recorder/{action}"
    request = urllib.request.Request(
        url, method="GET" if action == "download-recording" else "POST", data=None
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return response.read().decode()
