"""One measured run on the local cloud, and what it comes to on AWS: its cost, and its work per chunk."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from busline_core.pricing import (
    CostEstimate,
    Usage,
    dynamodb_item_bytes,
    estimate_cost,
    lambda_gb_seconds,
    read_units,
    write_units,
)

from busline.bench.calls import CallStats, count_calls, iter_recorded_requests, read_in_blocks
from busline.bench.cloud import TASK_TIMEOUT_S, FollowedTask, index_writes, recorder, run_task, task_images
from busline.bench.functions import ConsoleWindow, FunctionUsage, ProcessStats, WorkerMonitor
from busline.bench.projection import MeasuredWork, StepWork

# After the terminal snapshot: what the task still sets off (its last progress pushes, the finished
# notification) belongs to it, so the window stays open a little longer.
SETTLE_S = 2.0
STEP_FUNCTIONS = {"extract": "ExtractFunction", "transform": "TransformFunction", "load": "LoadFunction"}
_DYNAMODB_WRITES = ("PutItem", "UpdateItem", "DeleteItem")
_DYNAMODB_READS = ("GetItem", "Query", "Scan")


@dataclass
class TaskItem:
    """The task's DynamoDB item after the run, which sizes the writes and reads of the tasks table."""

    table: str
    bytes: int
    whole_item_indexes: int  # global secondary indexes projecting ALL: each write is written there too
    other_indexes: int
    # writes of the task to the other indexes, counted from the stream's images (None: one per write and index)
    other_index_writes: int | None = None


@dataclass
class RunMeasurement:
    label: str
    followed: FollowedTask
    calls: CallStats | None  # None: moto's recording could not be read
    invocations: dict[str, FunctionUsage]
    processes: ProcessStats
    task_item: TaskItem | None
    memory_mb: dict[str, int] = field(default_factory=dict)

    @property
    def chunks(self) -> int:
        phases = self.followed.final.get("phases") or {}
        for phase in ("extract", "transform", "load"):
            total = (phases.get(phase) or {}).get("total")
            if total:
                return int(total)
        return 0

    @property
    def rows(self) -> int:
        return int(self.followed.final["counts"]["read"])


def measured_run(
    label: str,
    cloud: Any,
    body: dict[str, Any],
    token: str,
    recording_path: Path,
    memory_mb: dict[str, int],
    aws: Any,
    streams: Any = None,
    timeout_s: float = TASK_TIMEOUT_S,
) -> RunMeasurement:
    """Run `body` as a task with the recorder on, the console window open and the workers watched."""
    endpoints = cloud.endpoints
    window = ConsoleWindow(cloud.log_path)
    monitor = WorkerMonitor(cloud.process.pid, cloud.data_dir / "logs")
    recorder(endpoints["aws"], "reset-recording")
    recorder(endpoints["aws"], "start-recording")
    window.open()
    monitor.start()
    try:
        followed = run_task(endpoints, body, token, timeout_s)
        time.sleep(SETTLE_S)
    finally:
        recorder(endpoints["aws"], "stop-recording")
        processes = monitor.stop()
    invocations = window.close()
    queue_urls = [value for name, value in endpoints["outputs"].items() if name.endswith("QueueUrl")]
    try:
        calls: CallStats | None = count_calls(
            iter_recorded_requests(read_in_blocks(recording_path)), queue_urls
        )
    except ValueError as error:  # a damaged recording must not throw away the measured run
        print(f"could not read moto's recording: {error}", file=sys.stderr)
        calls = None
    task_item = _task_item(aws, streams, endpoints["outputs"].get("TasksTableName"), followed.task_id)
    return RunMeasurement(label, followed, calls, invocations, processes, task_item, memory_mb)


def _task_item(aws: Any, streams: Any, table: str | None, task_id: str) -> TaskItem | None:
    if not table:
        return None
    try:
        item = aws.get_item(TableName=table, Key={"taskId": {"S": task_id}}).get("Item")
        description = aws.describe_table(TableName=table)["Table"]
    except Exception as error:  # the cost falls back to one unit per call; say why
        print(f"could not size the task item: {error}", file=sys.stderr)
        return None
    if not item:
        return None
    indexes = description.get("GlobalSecondaryIndexes") or []
    whole = [index for index in indexes if (index.get("Projection") or {}).get("ProjectionType") == "ALL"]
    others = [index for index in indexes if index not in whole]
    written = None
    if others and streams is not None:
        try:
            images = task_images(aws, streams, table, {task_id})[task_id]
        except Exception as error:  # then each write counts once per index; say why
            print(f"could not read the task's writes from the stream: {error}", file=sys.stderr)
        else:
            written = sum(index_writes(images, _index_attributes(index)) for index in others)
    return TaskItem(table, dynamodb_item_bytes(item), len(whole), len(others), written)


def _index_attributes(index: dict[str, Any]) -> set[str]:
    projection = index.get("Projection") or {}
    return {key["AttributeName"] for key in index["KeySchema"]} | set(projection.get("NonKeyAttributes") or ())


# --- what the run costs on AWS --------------------------------------------------------------------


def lambda_totals(run: RunMeasurement) -> tuple[int, float]:
    """Invocations and GB-seconds (billed milliseconds, cold starts included, at each MemorySize)."""
    invocations = sum(usage.invocations for usage in run.invocations.values())
    gb_seconds = sum(
        lambda_gb_seconds(usage.billed_ms, run.memory_mb.get(name, 128))
        for name, usage in run.invocations.items()
    )
    return invocations, gb_seconds


def dynamodb_units(calls: CallStats, item: TaskItem | None) -> tuple[float, float]:
    """Write and read units: the task item's size on the tasks table (and its indexes), one unit elsewhere
    (connections and idempotency records are far under 1 KB)."""
    writes = reads = 0.0
    # an index projecting a few attributes takes one unit a write, and only the writes the stream shows changing them
    index_units = 0 if item is None or item.other_index_writes is None else item.other_index_writes
    writes += index_units
    for (table, operation), count in calls.dynamodb_by_table.items():
        on_tasks = item is not None and table == item.table
        if operation in _DYNAMODB_WRITES:
            per_write = (
                write_units(item.bytes, item.whole_item_indexes)
                + (0 if item.other_index_writes is not None else item.other_indexes)
                if on_tasks and item is not None
                else 1
            )
            writes += count * per_write
        elif operation in _DYNAMODB_READS:
            reads += count * (read_units(item.bytes) if on_tasks and item is not None else 1.0)
    return writes, reads


def run_usage(run: RunMeasurement) -> Usage:
    invocations, gb_seconds = lambda_totals(run)
    messages = run.followed.messages + 1  # the frames received, and the subscribe sent
    minutes = math.ceil(run.followed.seconds / 60)
    if run.calls is None:
        return Usage(
            lambda_invocations=invocations, lambda_gb_seconds=gb_seconds,
            websocket_messages=messages, websocket_connection_minutes=minutes,
        )  # fmt: skip
    writes, reads = dynamodb_units(run.calls, run.task_item)
    return Usage(
        calls=dict(run.calls.aws_by_operation),
        lambda_invocations=invocations,
        lambda_gb_seconds=gb_seconds,
        eventbridge_events=run.calls.eventbridge_entries,
        sqs_deliveries=run.calls.sqs_messages_deleted,
        dynamodb_write_units=writes,
        dynamodb_read_units=reads,
        websocket_messages=messages,
        websocket_connection_minutes=minutes,
    )


def run_cost(run: RunMeasurement) -> CostEstimate:
    return estimate_cost(run_usage(run))


# --- the run's work per chunk, for the projection ------------------------------------------------


def measured_work(run: RunMeasurement, load_max_concurrency: int) -> MeasuredWork:
    chunks = max(1, run.chunks)
    steps: list[StepWork] = []
    step_of = {function: step for step, function in STEP_FUNCTIONS.items()}
    for function, usage in sorted(
        run.invocations.items(), key=lambda pair: (_step_order(step_of.get(pair[0])), pair[0])
    ):
        step = step_of.get(function)
        steps.append(
            StepWork(
                name=step or function,
                seconds_per_chunk=usage.billed_ms / 1000 / chunks,
                cpu_seconds_per_chunk=run.processes.cpu_seconds.get(function, 0.0) / chunks,
                invocations_per_chunk=usage.invocations / chunks,
                memory_mb=run.memory_mb.get(function, 128),
                # an unsplittable source is extracted by one invocation, whatever the chunks
                serial=step == "extract" and usage.invocations <= 1 < chunks,
                max_concurrency=load_max_concurrency if step == "load" else None,
                etl=step is not None,
            )
        )
    total = run_usage(run)
    per_chunk = Usage(
        calls={key: count / chunks for key, count in total.calls.items()},
        lambda_architecture=total.lambda_architecture,
        eventbridge_events=None if total.eventbridge_events is None else total.eventbridge_events / chunks,
        sqs_deliveries=total.sqs_deliveries / chunks,
        dynamodb_write_units=None
        if total.dynamodb_write_units is None
        else total.dynamodb_write_units / chunks,
        dynamodb_read_units=None if total.dynamodb_read_units is None else total.dynamodb_read_units / chunks,
        websocket_messages=total.websocket_messages / chunks,
    )
    return MeasuredWork(rows=max(1, run.rows), chunks=chunks, steps=tuple(steps), usage_per_chunk=per_chunk)


def _step_order(step: str | None) -> int:
    order = list(STEP_FUNCTIONS)
    return order.index(step) if step in order else len(order)
