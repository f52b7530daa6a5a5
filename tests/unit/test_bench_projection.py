"""The bench's pure parts: the AWS-scale projection (exact figures), and what turns a run into those inputs."""

from __future__ import annotations

import base64
import json

import pytest
from busline_core.pricing import Usage

from busline.bench.calls import count_calls, iter_recorded_requests
from busline.bench.functions import cloud_parameters, parse_invocations
from busline.bench.projection import (
    DISTRIBUTED_MAP,
    GLUE,
    PIPELINE,
    Assumptions,
    GlueInputs,
    MeasuredWork,
    StepWork,
    aws_seconds,
    chunks_for,
    project_all,
    project_distributed_map,
    project_glue,
    project_pipeline,
)
from busline.bench.report import evaluate_targets
from busline.bench.sources import scaled_line

GB_SECOND = 0.0000166667


def _work(*, serial_extract: bool = False) -> MeasuredWork:
    """10 chunks of 20,000 rows; 1024 MB and no CPU time, so AWS seconds are the measured ones."""
    return MeasuredWork(
        rows=200_000,
        chunks=10,
        steps=(
            StepWork("extract", 0.5, 0.0, 0.2, 1024, serial=serial_extract),
            StepWork("transform", 1.0, 0.0, 1.0, 1024),
            StepWork("load", 2.0, 0.0, 1.0, 1024, max_concurrency=5),
            StepWork("ProgressFunction", 0.5, 0.0, 2.0, 1024, etl=False),
        ),
        usage_per_chunk=Usage(
            calls={"sqs:ReceiveMessage": 2, "s3:PUT object": 2, "s3:GET object": 2, "dynamodb:UpdateItem": 3},
            eventbridge_events=2,
            sqs_deliveries=2,
            dynamodb_write_units=6,
            dynamodb_read_units=1,
            websocket_messages=1,
        ),
    )


def test_aws_seconds_stretch_cpu_to_the_memory_sizes_vcpu_share() -> None:
    # waiting 0.4 s stays; 0.6 CPU seconds at 512 MB get 512/1769 of a vCPU
    assert aws_seconds(StepWork("t", 1.0, 0.6, 1.0, 512)) == pytest.approx(0.4 + 0.6 * 1769 / 512)
    # from 1,769 MB on, a whole vCPU: nothing to stretch
    assert aws_seconds(StepWork("t", 1.0, 0.6, 1.0, 2048)) == pytest.approx(1.0)
    # more CPU than wall time (threads on two local cores): all of it is CPU, none waiting
    assert aws_seconds(StepWork("t", 1.0, 1.5, 1.0, 1769)) == pytest.approx(1.5)


def test_chunks_for_rows_at_the_measured_chunk_size() -> None:
    assert chunks_for(_work(), 10_000_000) == 500
    assert chunks_for(_work(), 10_000_001) == 501


def test_the_pipeline_at_100_functions_is_held_by_the_load_cap() -> None:
    # Given 500 chunks of 4 s of Lambda work each (load: 2 s, at most 5 at once)
    projection = project_pipeline(_work(), 10_000_000, 100, Assumptions())
    # Then load passes 2.5 chunks/s (100 functions would pass 25): 200 s, plus one chunk's 4 s trip and
    # 3 hops of 0.5 s
    assert (projection.chunks, projection.bottleneck) == (500, "load concurrency cap 5")
    assert projection.wall_seconds == pytest.approx(205.5)
    assert projection.rows_per_second == pytest.approx(10_000_000 / 205.5)
    # And it costs each service's per-chunk units times 500 chunks
    assert projection.cost.by_service() == pytest.approx(
        {
            "lambda": 2100 * 0.2e-6 + 2000 * GB_SECOND,  # 4.2 invocations and 4 GB-s per chunk
            "sqs": 2000 * 0.4e-6,  # 2 polls + 2 deliveries per chunk
            "eventbridge": 1000 * 1e-6,
            "dynamodb": 3000 * 0.625e-6 + 500 * 0.125e-6,
            "s3": 1000 * 0.005e-3 + 1000 * 0.0004e-3,
            "apigateway-websocket": 500 * 1e-6 + 4 * 0.25e-6,  # 4 connection minutes for 205.5 s
        },
        rel=1e-12,
    )
    assert projection.usd == pytest.approx(0.0433919, rel=1e-9)
    assert projection.usd_per_million_rows == pytest.approx(0.00433919, rel=1e-9)


def test_few_functions_or_a_serial_extract_bind_first() -> None:
    # 4 functions pass 1 chunk/s of 4 s work; the load cap would pass 2 (min(5, 4) / 2 s)
    few = project_pipeline(_work(), 10_000_000, 4, Assumptions())
    assert (few.bottleneck, few.wall_seconds) == ("4 concurrent functions", pytest.approx(505.5))
    # an extract done by one invocation passes 1 / 0.5 s = 2 chunks/s
    serial = project_pipeline(_work(serial_extract=True), 10_000_000, 1000, Assumptions())
    assert (serial.bottleneck, serial.wall_seconds) == (
        "extract runs in one invocation per task",
        pytest.approx(255.5),
    )


def test_an_extract_of_byte_ranges_runs_as_many_invocations_as_measured_per_chunk() -> None:
    # Given an extract invocation per 250 chunks (0.004 per chunk) of 0.5 s each, and no load cap
    work = MeasuredWork(
        rows=200_000,
        chunks=10,
        steps=(StepWork("extract", 0.5, 0.0, 0.004, 1024), StepWork("load", 0.5, 0.0, 1.0, 1024)),
        usage_per_chunk=Usage(),
    )
    # Then 500 chunks take 2 extract invocations, which pass 2 / 0.5 s = 4 chunks/s: 125 s + 1 s trip + 1.5 s
    projection = project_pipeline(work, 10_000_000, 1000, Assumptions())
    assert (projection.bottleneck, projection.wall_seconds) == (
        "extract runs in 2 invocations",
        pytest.approx(127.5),
    )


def test_distributed_map_runs_the_same_etl_work_with_state_transitions() -> None:
    projection = project_distributed_map(_work(), 10_000_000, 100, Assumptions())
    # 3.5 s of ETL work per chunk (no progress function), same load cap, 3 hops of 0.1 s
    assert projection.approach == DISTRIBUTED_MAP
    assert (projection.bottleneck, projection.wall_seconds) == (
        "load concurrency cap 5",
        pytest.approx(203.8),
    )
    assert projection.cost.by_service() == pytest.approx(
        {
            "lambda": 1100 * 0.2e-6 + 1750 * GB_SECOND,
            "s3": 1000 * 0.005e-3 + 1000 * 0.0004e-3,
            "stepfunctions": (500 + 3) * 0.025e-3,  # one per item batch + the map's own
        },
        rel=1e-12,
    )
    assert projection.usd == pytest.approx(0.047361725, rel=1e-9)


def test_glue_is_held_by_postgres_and_billed_at_least_a_minute() -> None:
    inputs = GlueInputs(rows_per_vcpu_second=50_000, warehouse_rows_per_connection_second=20_000)
    # 40 vCPUs would pass 2M rows/s; 5 connections pass 100k rows/s: 100 s, + 30 s start
    big = project_glue(10_000_000, inputs, Assumptions())
    assert (big.approach, big.concurrency, big.bottleneck) == (GLUE, None, "Postgres writes on 5 connections")
    assert big.wall_seconds == pytest.approx(130.0)
    assert big.usd == pytest.approx(10 * 130 / 3600 * 0.44)  # 0.15888…
    # 1M rows: 40 s, billed as 60
    small = project_glue(1_000_000, inputs, Assumptions())
    assert small.wall_seconds == pytest.approx(40.0)
    assert small.usd == pytest.approx(10 * 60 / 3600 * 0.44)
    # with more connections the Spark side binds
    spark = project_glue(10_000_000, inputs, Assumptions(warehouse_connections=1000))
    assert (spark.bottleneck, spark.wall_seconds) == ("Spark on 40 vCPUs", pytest.approx(35.0))


def test_project_all_pairs_the_pipeline_and_distributed_map_per_concurrency_then_glue() -> None:
    inputs = GlueInputs(50_000, 20_000)
    projections = project_all(_work(), inputs, 10_000_000, (100, 500, 1000), Assumptions())
    assert [(p.approach, p.concurrency) for p in projections] == [
        (PIPELINE, 100), (DISTRIBUTED_MAP, 100), (PIPELINE, 500), (DISTRIBUTED_MAP, 500),
        (PIPELINE, 1000), (DISTRIBUTED_MAP, 1000), (GLUE, None),
    ]  # fmt: skip
    # past the load cap, more functions change nothing
    assert {round(p.wall_seconds, 6) for p in projections if p.approach == PIPELINE} == {205.5}


# --- turning a run into inputs --------------------------------------------------------------------


def test_targets_are_met_at_their_limit_and_unknown_when_not_measured() -> None:
    targets = evaluate_targets(
        {
            "flightsEndToEndSeconds": 8.0,
            "pipelineToDuckdb": 1.3,
            "progressP95Ms": 149.9,
            "callsPerChunk": 12.0,
        }
    )
    assert {name: target["met"] for name, target in targets.items()} == {
        "flightsEndToEndSeconds": True,
        "pipelineToDuckdb": False,
        "scaled10xToTenTimes1x": None,
        "progressP95Ms": True,
        "callsPerChunk": True,
    }


def test_invocations_and_cold_starts_from_the_runtimes_console_lines() -> None:
    lines = [
        "invoke TransformFunction sqs:busline-transform 812 ms ok (1 record) [cold start 1430 ms]",
        "invoke TransformFunction sqs:busline-transform 300 ms ok (1 record)",
        "invoke ApiFunction api POST /tasks 95 ms ok",
        "invoke LoadFunction sqs:busline-load 60000 ms TIMEOUT Task timed out after 60.00 seconds",
        "something else the cloud printed",
    ]
    usage = parse_invocations(lines)
    transform = usage["TransformFunction"]
    assert (transform.invocations, transform.duration_ms, transform.init_ms, transform.cold_starts) == (
        2,
        1112,
        1430,
        1,
    )
    assert transform.billed_ms == 2542
    assert (usage["ApiFunction"].invocations, usage["ApiFunction"].duration_ms) == (1, 95)
    assert (usage["LoadFunction"].failed, usage["LoadFunction"].duration_ms) == (1, 60000)
    assert cloud_parameters(["--demo", "--param", "StepTimeout=300", "--param", "A=b=c"]) == {
        "StepTimeout": "300", "A": "b=c",
    }  # fmt: skip


def _entry(service: str, target: str, body: dict[str, object], *, from_lambda: bool) -> dict[str, object]:
    agent = "Boto3/1.40 md/Botocore#1.40 exec-env/AWS_Lambda_python3.11" if from_lambda else "Boto3/1.40"
    return {
        "headers": {
            "Authorization": f"AWS4-HMAC-SHA256 Credential=testing/20261120/us-east-1/{service}/aws4_request, x",
            "X-Amz-Target": target,
            "User-Agent": agent,
        },
        "method": "POST",
        "url": "http://127.0.0.1:3003/",
        "body": base64.b64encode(json.dumps(body).encode()).decode(),
        "body_encoded": True,
    }


def test_calls_are_attributed_to_functions_event_sources_or_the_emulation() -> None:
    queue = "http://localhost:3003/123456789012/busline-transform"
    entries = [
        _entry("events", "AWSEvents.PutEvents", {"Entries": [{}, {}, {}]}, from_lambda=True),
        _entry("dynamodb", "DynamoDB_20120810.UpdateItem", {"TableName": "tasks"}, from_lambda=True),
        _entry("sqs", "AmazonSQS.ReceiveMessage", {"QueueUrl": queue}, from_lambda=False),
        _entry(
            "sqs", "AmazonSQS.DeleteMessageBatch", {"QueueUrl": queue, "Entries": [{}, {}]}, from_lambda=False
        ),
        _entry("dynamodb", "DynamoDBStreams_20120810.GetRecords", {}, from_lambda=False),
        _entry("sqs", "AmazonSQS.ReceiveMessage", {"QueueUrl": "http://x/1/sns-bridge"}, from_lambda=False),
    ]
    stats = count_calls(entries, ["http://127.0.0.1:3003/123456789012/busline-transform"])
    assert dict(stats.by_origin) == {"function": 2, "eventSource": 3, "emulation": 1}
    assert (stats.total, stats.aws_total) == (6, 5)
    assert dict(stats.aws_by_operation) == {
        "events:PutEvents": 1, "dynamodb:UpdateItem": 1, "sqs:ReceiveMessage": 1, "sqs:DeleteMessageBatch": 1,
        "dynamodbstreams:GetRecords": 1,
    }  # fmt: skip
    assert (stats.eventbridge_entries, stats.sqs_messages_deleted) == (3, 2)
    assert dict(stats.dynamodb_by_table) == {("tasks", "UpdateItem"): 1}


def test_recorded_entries_are_read_across_pieces_and_lines_holding_two() -> None:
    text = '{"a": 1}{"b": "x y"}\n\n{"c": [1, 2]}\n'
    pieces = [text[i : i + 3] for i in range(0, len(text), 3)]
    assert list(iter_recorded_requests(pieces)) == [{"a": 1}, {"b": "x y"}, {"c": [1, 2]}]
    with pytest.raises(ValueError):
        list(iter_recorded_requests(['{"a": 1}{"b"']))


def test_a_scaled_flights_line_moves_year_and_time_hour() -> None:
    line = b"2013,12,31,13,2359,14,439,437,2,B6,839,N566JB,JFK,BQN,189,1576,23,59,2014-01-01T04:00:00Z\n"
    assert scaled_line(line, 0) is line
    assert scaled_line(line, 9) == (
        b"2022,12,31,13,2359,14,439,437,2,B6,839,N566JB,JFK,BQN,189,1576,23,59,2023-01-01T04:00:00Z\n"
    )


def test_the_1x_times_are_the_measured_runs_then_the_repeats_and_the_script_is_its_median_run() -> None:
    from types import SimpleNamespace

    from busline.bench.baselines import DuckdbResult
    from busline.bench.main import Measurements

    # Given a measured 1x run of 6.1 s, two more of 7.9 and 5.4 s, and script runs of 3.9, 3.5 and 4.4 s
    def script(seconds: float) -> DuckdbResult:
        return DuckdbResult(seconds, seconds - 2.0, 2.0, 0.3, 2, 336_776, 8_255, 7_602, 320_919)

    measured = Measurements(
        single=SimpleNamespace(followed=SimpleNamespace(seconds=6.1)),  # type: ignore[arg-type]
        warmup_seconds=3.0,
        repeats=[SimpleNamespace(seconds=7.9), SimpleNamespace(seconds=5.4)],  # type: ignore[list-item]
        duckdb_runs=[script(3.9), script(3.5), script(4.4)],
        copy=None,  # type: ignore[arg-type]
        scaled=None,
        scaled_note={},
        load_max_concurrency=5,
        call_latency={},
        task_writes_ms={},
        frames_per_second=4,
    )
    # Then the 1x times keep their order, and the script's figures are those of its 3.9 s run
    assert measured.seconds_1x == [6.1, 7.9, 5.4]
    assert (measured.duckdb.seconds, measured.duckdb.duckdb_seconds) == (3.9, 1.9)
