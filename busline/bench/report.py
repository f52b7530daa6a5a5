"""bench-results.json, the printed table and docs/performance.md, from the measurements."""

from __future__ import annotations

import datetime as dt
import os
import platform
from dataclasses import asdict
from typing import Any

from busline_core.pricing import PRICES_CHECKED, PRICES_REGION, CostEstimate

from busline.bench.baselines import CopyResult, DuckdbResult
from busline.bench.calls import EMULATION
from busline.bench.measure import RunMeasurement, lambda_totals, run_cost
from busline.bench.projection import Assumptions, MeasuredWork, Projection, aws_seconds

# The targets: (what it says, the limit the value must not pass).
TARGETS: dict[str, tuple[str, float]] = {
    "flightsEndToEndSeconds": ("flights (336,776 rows) end to end <= 8 s", 8.0),
    "pipelineToDuckdb": ("end to end <= 1.25x the single-process DuckDB script", 1.25),
    "scaled10xToTenTimes1x": ("the 10x run <= 10x the 1x run's time (ratio <= 1)", 1.0),
    "progressP95Ms": ("progress latency p95 <= 150 ms", 150.0),
    "callsPerChunk": ("<= 12 AWS calls per chunk (function + event source calls)", 12.0),
}


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile; None when there is nothing to rank."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return round(numerator / denominator, 2) if numerator is not None and denominator else None


def evaluate_targets(values: dict[str, float | None]) -> dict[str, dict[str, Any]]:
    """Each target with its measured value and whether it is met (None: not measured in this run)."""
    return {
        name: {
            "target": text,
            "limit": limit,
            "value": values.get(name),
            "met": None if values.get(name) is None else bool(values[name] <= limit),  # type: ignore[operator]
        }
        for name, (text, limit) in TARGETS.items()
    }


def cost_section(estimate: CostEstimate, rows: int) -> dict[str, Any]:
    return {
        "totalUsd": round(estimate.total_usd, 8),
        "byServiceUsd": {service: round(usd, 8) for service, usd in estimate.by_service().items()},
        "perMillionRowsUsd": {
            service: round(usd, 6) for service, usd in estimate.per_million_rows(rows).items()
        },
        "lines": [
            {
                "service": line.service,
                "item": line.item,
                "quantity": round(line.quantity, 3),
                "unitUsd": float(f"{line.unit_usd:.6g}"),
                "usd": round(line.usd, 8),
            }
            for line in estimate.lines
        ],
        "unpriced": {key: round(count, 3) for key, count in estimate.unpriced.items()},
        "free": {key: round(count, 3) for key, count in estimate.free.items()},
    }


def run_section(run: RunMeasurement) -> dict[str, Any]:
    followed, chunks = run.followed, run.chunks
    timings = followed.final.get("timings") or {}
    latencies = followed.latencies_ms
    functions: dict[str, Any] = {}
    for name in sorted(set(run.invocations) | set(run.processes.peak_rss_mib)):
        usage = run.invocations.get(name)
        memory = run.memory_mb.get(name, 128)
        functions[name] = {
            "invocations": usage.invocations if usage else 0,
            "coldStarts": usage.cold_starts if usage else 0,
            "failed": usage.failed if usage else 0,
            "durationSeconds": round(usage.duration_ms / 1000, 3) if usage else 0.0,
            "initSeconds": round(usage.init_ms / 1000, 3) if usage else 0.0,
            "cpuSeconds": run.processes.cpu_seconds.get(name),
            "memoryMb": memory,
            "gbSeconds": round((usage.billed_ms if usage else 0) / 1000 * memory / 1024, 3),
            "workers": run.processes.workers.get(name, 0),
            "peakRssMiB": run.processes.peak_rss_mib.get(name),
        }
    invocations, gb_seconds = lambda_totals(run)
    section: dict[str, Any] = {
        "taskId": followed.task_id,
        "rows": run.rows,
        "chunks": chunks,
        "endToEndSeconds": round(followed.seconds, 2),
        "rowsPerSecond": round(run.rows / followed.seconds) if followed.seconds else None,
        "phaseSeconds": {
            phase: _round((timings.get(phase) or {}).get("seconds"), 2)
            for phase in ("extract", "transform", "load")
        },
        "counts": followed.final["counts"],
        "progress": {
            "messages": followed.messages,
            "latencyMs": {
                "p50": _round(percentile(latencies, 0.50)),
                "p95": _round(percentile(latencies, 0.95)),
                "max": _round(max(latencies) if latencies else None),
                "samples": len(latencies),
            },
        },
        "peakRssMiB": dict(run.processes.peak_rss_mib),
        "lambda": {
            "invocations": invocations,
            "gbSeconds": round(gb_seconds, 3),
            "byFunction": functions,
            "method": "invocations and milliseconds from the runtime's `invoke …` console lines (cold starts "
            "= INIT, billed); MemorySize from template.yaml",
        },
        "processes": {
            "peakReset": run.processes.peak_reset,
            "method": run.processes.method,
        },
        "cost": cost_section(run_cost(run), run.rows),
    }
    if run.task_item is not None:
        section["cost"]["taskItem"] = asdict(run.task_item)
    calls = run.calls
    if calls is None:
        section["apiCalls"] = {"error": "moto's recording could not be read"}
        return section
    section["apiCalls"] = {
        "total": calls.aws_total,
        "perChunk": round(calls.aws_total / chunks, 1) if chunks else None,
        "byService": dict(calls.aws_by_service.most_common()),
        "perChunkByService": {
            service: round(count / chunks, 2) for service, count in calls.aws_by_service.most_common()
        }
        if chunks
        else {},
        "byOperation": dict(calls.aws_by_operation.most_common()),
        "byOrigin": dict(calls.by_origin),
        "allRecorded": {
            "total": calls.total,
            "perChunk": round(calls.total / chunks, 1) if chunks else None,
            "byService": dict(calls.by_service.most_common()),
            "byOperation": dict(calls.by_operation.most_common()),
        },
        "eventBridgeEvents": calls.eventbridge_entries,
        "sqsMessagesDelivered": calls.sqs_messages_deleted,
        "s3ObjectsPut": calls.s3_objects_put,
        "s3BytesPut": calls.s3_bytes_put,
        "s3BytesPerChunk": round(calls.s3_bytes_put / chunks) if chunks else None,
        "webSocketPushes": max(0, followed.messages - 1),
        "method": "moto's request recorder during the run (the terminal snapshot + 2 s). total/perChunk/byService "
        "count what a deployment makes: the functions' calls and the event source mappings' (SQS polls and "
        f"deletes, stream reads); `{EMULATION}` calls exist only locally (the SNS bridge queue, the TTL "
        "sweeper) and are only in allRecorded. WebSocket pushes are counted at the client.",
    }
    return section


def duckdb_section(result: DuckdbResult) -> dict[str, Any]:
    return {
        "seconds": round(result.seconds, 2),
        "rowsPerSecond": round(result.read / result.seconds) if result.seconds else None,
        "duckdbSeconds": round(result.duckdb_seconds, 2),
        "postgresSeconds": round(result.postgres_seconds, 2),
        "unzipSeconds": round(result.unzip_seconds, 2),
        "threads": result.threads,
        "counts": result.counts(),
        "method": "one process: DuckDB reads flights.csv (nulls 'NA' and ''), counts, filters dep_time IS NOT NULL, "
        "inner-joins airlines and airports and COPYs the result to a csv; psycopg COPYs it (1 MiB blocks) "
        "straight into a new table keyed like the pipeline's, as the load step's first load ends up: the primary "
        "key dropped before the COPY and built after it. Unzipping flights.csv.zip is not timed.",
    }


def copy_section(result: CopyResult) -> dict[str, Any]:
    return {
        "seconds": round(result.seconds, 2),
        "rowsPerSecond": round(result.rows / result.seconds) if result.seconds else None,
        "rows": result.rows,
        "bytes": result.bytes,
        "method": "the pipeline's table dumped with COPY … TO STDOUT, then only COPY … FROM STDIN (1 MiB blocks) "
        "into a new table without key or index, and its commit, timed: the floor of any load",
    }


def projection_section(
    work: MeasuredWork,
    measured_on: str,
    assumptions: Assumptions,
    projections: list[Projection],
    glue_inputs: dict[str, float] | None,
) -> dict[str, Any]:
    usage = work.usage_per_chunk
    return {
        "rows": projections[0].rows if projections else None,
        "measuredOn": measured_on,
        "inputs": {
            "rowsPerChunk": round(work.rows_per_chunk, 1),
            "steps": [
                {
                    "name": step.name,
                    "secondsPerChunk": round(step.seconds_per_chunk, 4),
                    "cpuSecondsPerChunk": round(step.cpu_seconds_per_chunk, 4),
                    "awsSecondsPerChunk": round(aws_seconds(step), 4),
                    "invocationsPerChunk": round(step.invocations_per_chunk, 3),
                    "memoryMb": step.memory_mb,
                    "serial": step.serial,
                    "maxConcurrency": step.max_concurrency,
                    "etl": step.etl,
                }
                for step in work.steps
            ],
            "perChunk": {
                "calls": {key: round(count, 3) for key, count in sorted(usage.calls.items())},
                "eventBridgeEvents": _round(usage.eventbridge_events, 3),
                "sqsDeliveries": round(usage.sqs_deliveries, 3),
                "dynamodbWriteUnits": _round(usage.dynamodb_write_units, 3),
                "dynamodbReadUnits": _round(usage.dynamodb_read_units, 3),
                "webSocketMessages": round(usage.websocket_messages, 3),
            },
            "glue": glue_inputs,
        },
        "assumptions": asdict(assumptions),
        "results": [
            {
                "approach": projection.approach,
                "concurrency": projection.concurrency,
                "chunks": projection.chunks,
                "wallSeconds": round(projection.wall_seconds, 1),
                "rowsPerSecond": round(projection.rows_per_second),
                "bottleneck": projection.bottleneck,
                "usd": round(projection.usd, 6),
                "usdPerMillionRows": round(projection.usd_per_million_rows, 6),
                "byServiceUsd": {
                    service: round(usd, 6) for service, usd in projection.cost.by_service().items()
                },
                "notes": list(projection.notes),
            }
            for projection in projections
        ],
    }


def environment() -> dict[str, Any]:
    return {"python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine()}


def header(now: dt.datetime) -> dict[str, Any]:
    return {
        "generatedAt": now.isoformat(timespec="seconds"),
        "prices": {"region": PRICES_REGION, "checked": PRICES_CHECKED},
        "environment": environment(),
    }
