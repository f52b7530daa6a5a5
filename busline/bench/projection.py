"""From one measured run to AWS scale: wall time and cost of N rows at C concurrent functions, beside Step
Functions Distributed Map and AWS Glue. Pure: measured numbers and stated assumptions in, numbers out.

The model, for the pipeline:
- a chunk's work on AWS, per step: the time it waited (measured seconds - CPU seconds) plus its CPU seconds
  stretched to the CPU share Lambda gives its memory size (a full vCPU at 1,769 MB, proportionally less
  below). Local waits include waiting for a core of a busy 2-core machine, so this errs on the slow side;
- chunks flow through the steps as a pipeline, so the wall time is the chunks over the narrowest rate, plus
  one chunk's trip through every step (fill and drain). The rates: C concurrent functions shared by every
  step's work; a step with a concurrency cap of its own (load's MaximumConcurrency, which also stands for
  what Postgres takes) at cap / its seconds; a step whose invocation produces several chunks (extract: one
  per byte range) at its invocations / its seconds, with as many invocations per chunk as measured, or a
  single one for a source that cannot be split;
- cost: every step's invocations and GB-seconds, and the other services' billed units, per chunk times the
  chunks (pricing.py's list prices).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from busline_core.pricing import LIST_PRICES, CostEstimate, CostLine, PriceList, Usage, estimate_cost

LAMBDA_FULL_VCPU_MB = 1769  # Lambda's memory size with one whole vCPU; CPU share scales with memory below
PIPELINE = "busline"
DISTRIBUTED_MAP = "stepfunctions-distributed-map"
GLUE = "glue"


@dataclass(frozen=True)
class StepWork:
    """One step's measured work per chunk (a step: one function, or "other" for the rest)."""

    name: str
    seconds_per_chunk: float  # billed seconds (invocations + cold starts) per chunk
    cpu_seconds_per_chunk: float  # of which on a CPU
    invocations_per_chunk: float
    memory_mb: int
    serial: bool = False  # one invocation does the step for the whole task
    max_concurrency: int | None = None  # a cap of its own, besides the account's concurrency
    etl: bool = True  # False: work only the event-driven design has (progress, WebSocket, watchdog, API)


@dataclass(frozen=True)
class MeasuredWork:
    """A measured run, per chunk."""

    rows: int
    chunks: int
    steps: tuple[StepWork, ...]
    usage_per_chunk: Usage  # the other services' billed units per chunk (Lambda's come from `steps`)
    hops: int = 3  # events a chunk waits for on its way: submitted -> extract -> transform -> load

    @property
    def rows_per_chunk(self) -> float:
        return self.rows / self.chunks


@dataclass(frozen=True)
class GlueInputs:
    rows_per_vcpu_second: float  # measured: the DuckDB script's read/filter/join rate per thread
    warehouse_rows_per_connection_second: float  # measured: its COPY + INSERT rate on one connection


@dataclass(frozen=True)
class Assumptions:
    """What the projection does not measure; each is printed next to the figures."""

    hop_latency_s: float = 0.5  # an event from a step's PutEvents to the next step's invocation on AWS
    stepfunctions_transitions_per_batch: int = 1  # one chunk per item batch, one child execution each
    stepfunctions_map_transitions: int = 3  # the parent's own: start, the Map state, end
    stepfunctions_latency_s: float = 0.1  # a state's start after the previous one ends
    glue_dpus: int = 10  # G.1X workers: 1 DPU, 4 vCPU each
    glue_vcpus_per_dpu: int = 4
    glue_startup_s: float = 30.0  # from job start to Spark running, billed
    warehouse_connections: int = 5  # Postgres writers at once: the template's LoadMaxConcurrency


@dataclass(frozen=True)
class Projection:
    approach: str
    rows: int
    concurrency: int | None  # None: does not depend on Lambda concurrency (Glue)
    chunks: int
    wall_seconds: float
    bottleneck: str
    cost: CostEstimate
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def usd(self) -> float:
        return self.cost.total_usd

    @property
    def usd_per_million_rows(self) -> float:
        return self.cost.total_usd * 1_000_000 / self.rows if self.rows else 0.0


def aws_seconds(step: StepWork) -> float:
    """A chunk's seconds for `step` on Lambda (see the module doc)."""
    share = min(1.0, step.memory_mb / LAMBDA_FULL_VCPU_MB)
    waiting = max(0.0, step.seconds_per_chunk - step.cpu_seconds_per_chunk)
    return waiting + step.cpu_seconds_per_chunk / share


def chunks_for(work: MeasuredWork, rows: int) -> int:
    return math.ceil(rows / work.rows_per_chunk)


def _flow(
    steps: tuple[StepWork, ...], chunks: int, concurrency: int, per_hop_s: float, hops: int
) -> tuple[float, str]:
    """Wall seconds of `chunks` through `steps`, and what limits the rate."""
    seconds = {step.name: aws_seconds(step) for step in steps}
    total = sum(seconds.values())
    if total <= 0:
        raise ValueError("no Lambda work was measured: nothing to project")
    rates: list[tuple[float, str]] = [(concurrency / total, f"{concurrency} concurrent functions")]
    for step in steps:
        if seconds[step.name] <= 0:
            continue
        if step.serial:
            rates.append((1 / seconds[step.name], f"{step.name} runs in one invocation per task"))
        elif step.etl and step.invocations_per_chunk < 1:
            # each invocation works through 1/ipc chunks one after the other (extract's byte ranges), so
            # the step runs at most that many invocations at once; they scale with the source
            invocations = max(1.0, step.invocations_per_chunk * chunks)
            rates.append(
                (invocations / seconds[step.name], f"{step.name} runs in {invocations:,.0f} invocations")
            )
        if step.max_concurrency is not None:
            cap = min(step.max_concurrency, concurrency)
            rates.append((cap / seconds[step.name], f"{step.name} concurrency cap {step.max_concurrency}"))
    rate, bottleneck = min(rates, key=lambda pair: pair[0])
    return chunks / rate + total + hops * per_hop_s, bottleneck


def _lambda_usage(steps: tuple[StepWork, ...], chunks: int) -> tuple[float, float]:
    invocations = sum(step.invocations_per_chunk for step in steps) * chunks
    gb_seconds = sum(aws_seconds(step) * step.memory_mb / 1024 for step in steps) * chunks
    return invocations, gb_seconds


def _scaled(mapping: Mapping[str, float], factor: float) -> dict[str, float]:
    return {key: value * factor for key, value in mapping.items()}


def project_pipeline(
    work: MeasuredWork, rows: int, concurrency: int, assumptions: Assumptions, prices: PriceList = LIST_PRICES
) -> Projection:
    chunks = chunks_for(work, rows)
    wall, bottleneck = _flow(work.steps, chunks, concurrency, assumptions.hop_latency_s, work.hops)
    invocations, gb_seconds = _lambda_usage(work.steps, chunks)
    per_chunk = work.usage_per_chunk

    def times(value: float | None) -> float | None:
        return None if value is None else value * chunks

    usage = Usage(
        calls=_scaled(per_chunk.calls, chunks),
        lambda_invocations=invocations,
        lambda_gb_seconds=gb_seconds,
        lambda_architecture=per_chunk.lambda_architecture,
        eventbridge_events=times(per_chunk.eventbridge_events),
        sqs_deliveries=per_chunk.sqs_deliveries * chunks,
        dynamodb_write_units=times(per_chunk.dynamodb_write_units),
        dynamodb_read_units=times(per_chunk.dynamodb_read_units),
        websocket_messages=per_chunk.websocket_messages * chunks,
        websocket_connection_minutes=math.ceil(wall / 60),  # one subscriber for the whole task
    )
    return Projection(PIPELINE, rows, concurrency, chunks, wall, bottleneck, estimate_cost(usage, prices))


def project_distributed_map(
    work: MeasuredWork, rows: int, concurrency: int, assumptions: Assumptions, prices: PriceList = LIST_PRICES
) -> Projection:
    """The same ETL Lambda work run by a Distributed Map (MaxConcurrency = C) instead of events and queues:
    the same S3 traffic and caps; state transitions instead of EventBridge, SQS, DynamoDB, the progress
    functions and WebSocket."""
    chunks = chunks_for(work, rows)
    steps = tuple(step for step in work.steps if step.etl)
    wall, bottleneck = _flow(steps, chunks, concurrency, assumptions.stepfunctions_latency_s, work.hops)
    invocations, gb_seconds = _lambda_usage(steps, chunks)
    s3_calls = {key: value for key, value in work.usage_per_chunk.calls.items() if key.startswith("s3:")}
    transitions = (
        chunks * assumptions.stepfunctions_transitions_per_batch + assumptions.stepfunctions_map_transitions
    )
    usage = Usage(
        calls=_scaled(s3_calls, chunks),
        lambda_invocations=invocations,
        lambda_gb_seconds=gb_seconds,
        lambda_architecture=work.usage_per_chunk.lambda_architecture,
        stepfunctions_transitions=transitions,
    )
    notes = ("no task item, progress stream or WebSocket: progress is the execution's own",)
    return Projection(
        DISTRIBUTED_MAP, rows, concurrency, chunks, wall, bottleneck, estimate_cost(usage, prices), notes
    )


def project_glue(
    rows: int, inputs: GlueInputs, assumptions: Assumptions, prices: PriceList = LIST_PRICES
) -> Projection:
    """A Spark job of `glue_dpus` G.1X DPUs, as fast per vCPU as DuckDB was per thread, writing through as
    many Postgres connections as the pipeline's load may use, each as fast as the DuckDB script's."""
    vcpus = assumptions.glue_dpus * assumptions.glue_vcpus_per_dpu
    rates = [
        (vcpus * inputs.rows_per_vcpu_second, f"Spark on {vcpus} vCPUs"),
        (
            assumptions.warehouse_connections * inputs.warehouse_rows_per_connection_second,
            f"Postgres writes on {assumptions.warehouse_connections} connections",
        ),
    ]
    rate, bottleneck = min(rates, key=lambda pair: pair[0])
    wall = assumptions.glue_startup_s + rows / rate
    billed_dpu_hours = assumptions.glue_dpus * max(wall, prices.glue_minimum_seconds) / 3600
    line = CostLine(
        "glue", "DPU-hours (per second, 1-minute minimum)", billed_dpu_hours, prices.glue_dpu_hour
    )
    return Projection(GLUE, rows, None, 0, wall, bottleneck, CostEstimate((line,), {}, {}))


def project_all(
    work: MeasuredWork,
    glue: GlueInputs | None,
    rows: int,
    concurrencies: Iterable[int],
    assumptions: Assumptions,
    prices: PriceList = LIST_PRICES,
) -> list[Projection]:
    """For each concurrency: the pipeline, then Distributed Map; Glue once at the end (no Lambda)."""
    projections: list[Projection] = []
    for concurrency in concurrencies:
        projections.append(project_pipeline(work, rows, concurrency, assumptions, prices))
        projections.append(project_distributed_map(work, rows, concurrency, assumptions, prices))
    if glue is not None:
        projections.append(project_glue(rows, glue, assumptions, prices))
    return projections
