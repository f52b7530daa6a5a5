"""Concurrent ad-hoc tasks under injected faults end exactly as a fault-free run would.

Each task reads its own generated orders (CSV or NDJSON.gz; from S3 or from a loopback HTTP server), casts
them (some rows fail a cast), filters out void orders, joins a required region reference (some orders name a
region it lacks) and loads a table of its own (upsert with repeated keys, or insert). The expected counts and
rows come from resilience_support.expect, computed from the generated data alone.

One of the ten is the flights demo pipeline on a sample (its first FLIGHTS_LIMIT rows, `params.limit`): the
whole 336,776 rows take minutes under chaos on a 2-CPU machine, more than this folder's budget. Its expected
counts come from reading the demo files with csv + zipfile.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from busline_core.tenancy import owner_table
from psycopg import sql

from busline.localcloud.demo import demo_data_dir

from .resilience_support import (
    Api,
    Expectation,
    aws_client,
    csv_bytes,
    duplicate_keys,
    expect,
    generate_orders,
    ledger,
    local_cloud,
    ndjson_gz_bytes,
    order_spec,
    region_rows,
    serving_files,
    table_rows,
)

pytestmark = pytest.mark.integration

CHAOS_SEED = 20261122
CHUNK_ROWS = 1000
# MaxReceiveCount 10: a message is dead-lettered only if 10 deliveries in a row fail. A delivery fails with
# p = 0.2 (fail) + 0.05 (timeout) + 0.02 (kill) = 0.27, so a run of ~130 messages (3 phases of ~43 chunks)
# loses one with 130 x 0.27^10 = 0.03% (with 5 deliveries it was 130 x 0.27^5 = 19%: a CI run failed so), and
# every task is expected to succeed. Visibility 12 s > StepTimeout 10 s: a timed-out or killed delivery (and
# its idempotency lock) has expired before the message comes back.
CHAOS_CLOUD_ARGS = [
    "--param", "FaultSwitchCacheSeconds=1",
    "--param", "StepTimeout=10",
    "--param", "QueueVisibilityTimeout=12",
    "--param", "MaxReceiveCount=10",
    "--param", f"ChunkRows={CHUNK_ROWS}",
    # fewer load workers to cold-start at once: on 2 CPUs a burst of cold starts outlasts the visibility
    # timeout and turns into redeliveries
    "--param", "LoadMaxConcurrency=2",
    "--chaos-seed", str(CHAOS_SEED),
    "--demo",  # the flights files for the flights task
]  # fmt: skip
FLIGHTS_LIMIT = 10_000
FLIGHTS_KEY = "year, month, day, carrier, flight, origin"
TERMINAL_BOUND_S = 240.0


@dataclass
class PlannedTask:
    name: str
    table: str
    spec: dict[str, Any]
    expected: Expectation
    chunks: int
    commit: str = "task"


@dataclass
class ChaosRun:
    chaos_spec: str
    planned: dict[str, PlannedTask]  # task id -> plan
    final: dict[str, dict[str, Any]]  # task id -> GET /tasks/{id} once terminal
    tables: dict[str, dict[int, tuple[Any, ...]]] = field(default_factory=dict)  # task id -> table content
    duplicates: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    ledgers: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    injected: dict[str, int] = field(default_factory=dict)  # chaos.json
    seconds: float = 0.0
    flights: FlightsOutcome | None = None


@dataclass
class FlightsOutcome:
    task_id: str
    table: str
    final: dict[str, Any]
    rows_in_table: int = 0
    duplicate_keys: int = 0
    ledger: list[tuple[int, int]] = field(default_factory=list)


def expected_flights_counts(limit: int) -> dict[str, int]:
    """The flights pipeline's counts over the first `limit` flights, from the files alone."""
    data = demo_data_dir()
    with (data / "airports.csv").open(newline="", encoding="utf-8") as stream:
        airports = {row["faa"] for row in csv.DictReader(stream)}
    with (data / "airlines.csv").open(newline="", encoding="utf-8") as stream:
        airlines = {row["carrier"] for row in csv.DictReader(stream)}
    read = filtered = rejected = 0
    with zipfile.ZipFile(data / "flights.csv.zip") as archive, archive.open("flights.csv") as raw:
        rows = csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8", newline=""))
        for row in rows:
            if read == limit:
                break
            read += 1
            if row["dep_time"] in ("NA", ""):
                filtered += 1
            elif row["carrier"] not in airlines or row["dest"] not in airports:
                rejected += 1
    return {"read": read, "filtered": filtered, "rejected": rejected, "loaded": read - filtered - rejected, "deleted": 0}


def plan_tasks(
    count: int, run: str, bucket: str, http_base: str, s3: Any, served: dict[str, bytes]
) -> list[PlannedTask]:
    """`count` different tasks: formats, source locations, load modes and sizes vary with the index."""
    regions = csv_bytes(region_rows())
    s3.put_object(Bucket=bucket, Key=f"shared/resilience/{run}/regions.csv", Body=regions)
    served[f"/{run}/regions.csv"] = regions
    planned = []
    for index in range(count):
        mode = "insert" if index % 3 == 2 else "upsert"
        commit = "chunk" if index % 4 == 3 else "task"  # both commit modes, under the same faults
        rows = generate_orders(unique=2400 + 150 * index, repeated=120 if mode == "upsert" else 0, salt=index)
        as_csv = index % 2 == 0
        name = f"orders{index}.csv" if as_csv else f"orders{index}.ndjson.gz"
        body = csv_bytes(rows) if as_csv else ndjson_gz_bytes(rows)
        if index % 3 == 1:
            served[f"/{run}/{name}"] = body
            source_uri = f"{http_base}/{run}/{name}"
        else:
            s3.put_object(Bucket=bucket, Key=f"shared/resilience/{run}/{name}", Body=body)
            source_uri = f"s3://{bucket}/shared/resilience/{run}/{name}"
        regions_uri = (
            f"{http_base}/{run}/regions.csv" if index % 2 else f"s3://{bucket}/shared/resilience/{run}/regions.csv"
        )
        table = f"chaos_{run}_t{index}"
        spec = order_spec(source_uri, "csv" if as_csv else "ndjson", regions_uri, table, mode, CHUNK_ROWS, commit)
        planned.append(
            PlannedTask(
                name=f"task{index} ({mode}, commit {commit}, {name}, {source_uri.split(':')[0]})",
                commit=commit,
                table=table,
                spec=spec,
                expected=expect(rows),
                chunks=math.ceil(len(rows) / CHUNK_ROWS),
            )
        )
    return planned


def run_under_chaos(chaos_spec: str, task_count: int) -> ChaosRun:
    run = uuid.uuid4().hex[:8]
    served: dict[str, bytes] = {}
    with (
        serving_files(served) as http_base,
        local_cloud("chaos", [*CHAOS_CLOUD_ARGS, "--chaos", chaos_spec]) as cloud,
    ):
        endpoints = cloud.endpoints
        api = Api(endpoints)
        planned = plan_tasks(
            task_count - 1,
            run,
            endpoints["outputs"]["DataBucketName"],
            http_base,
            aws_client(endpoints, "s3"),
            served,
        )
        flights_table = f"chaos_{run}_flights"
        started = time.monotonic()
        flights_id = api.submit(
            {"pipeline": "flights", "params": {"limit": FLIGHTS_LIMIT, "chunkRows": CHUNK_ROWS, "table": flights_table}}
        )
        by_id = {api.submit(task.spec): task for task in planned}
        final = api.wait_terminal([flights_id, *by_id], timeout_s=TERMINAL_BOUND_S)
        flights = FlightsOutcome(task_id=flights_id, table=flights_table, final=final.pop(flights_id))
        result = ChaosRun(
            chaos_spec=chaos_spec, planned=by_id, final=final, seconds=time.monotonic() - started, flights=flights
        )
        database = endpoints["postgres"]
        if flights.final["status"] == "SUCCEEDED":
            table = owner_table(flights.final["owner"], flights_table)
            key = sql.SQL(", ").join(sql.Identifier(name) for name in FLIGHTS_KEY.split(", "))
            with psycopg.connect(database, autocommit=True) as connection:
                counted = connection.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()
                flights.rows_in_table = counted[0] if counted else 0
                flights.duplicate_keys = len(connection.execute(
                    sql.SQL("SELECT {} FROM {} GROUP BY {} HAVING count(*) > 1").format(key, table, key)
                ).fetchall())
            flights.ledger = ledger(database, flights_id)
        for task_id, task in by_id.items():
            if final[task_id]["status"] == "SUCCEEDED":
                owner = final[task_id]["owner"]
                result.tables[task_id] = table_rows(database, owner, task.table)
                result.duplicates[task_id] = duplicate_keys(database, owner, task.table)
                result.ledgers[task_id] = ledger(database, task_id)
        result.injected = json.loads((cloud.data_dir / "chaos.json").read_text())
    print(
        f"\n[{chaos_spec}] {task_count} tasks terminal in {result.seconds:.1f} s; injected {result.injected}"
    )
    print(f"  flights (first {FLIGHTS_LIMIT} rows): {flights.final['status']} counts={flights.final['counts']}")
    for task_id, task in by_id.items():
        print(f"  {task.name}: {final[task_id]['status']} counts={final[task_id]['counts']}")
    return result


@pytest.fixture(scope="module")
def chaos_run() -> Iterator[ChaosRun]:
    yield run_under_chaos("duplicate=0.3,fail=0.2,kill=0.02", task_count=10)


@pytest.fixture(scope="module")
def timeout_chaos_run() -> Iterator[ChaosRun]:
    yield run_under_chaos("duplicate=0.3,fail=0.2,timeout=0.05,kill=0.02", task_count=10)


def assert_as_if_fault_free(run: ChaosRun) -> None:
    failed = {
        run.planned[task_id].name: snapshot["error"]
        for task_id, snapshot in run.final.items()
        if snapshot["status"] != "SUCCEEDED"
    }
    assert failed == {}, f"tasks failed under {run.chaos_spec}: {failed}"
    for task_id, task in run.planned.items():
        snapshot = run.final[task_id]
        assert snapshot["counts"] == task.expected.counts(task.commit), task.name
        for phase in ("extract", "transform", "load"):
            assert snapshot["phases"][phase] == {
                "done": task.chunks,
                "total": task.chunks,
                "status": "completed",
            }, (task.name, phase)
        assert run.tables[task_id] == task.expected.table, task.name
        assert run.duplicates[task_id] == [], task.name
        # one ledger row per chunk, written once: the rows it counts add up to `loaded`
        assert [chunk for chunk, _ in run.ledgers[task_id]] == list(range(task.chunks)), task.name
        assert sum(rows for _, rows in run.ledgers[task_id]) == task.expected.transformed, task.name
    flights = run.flights
    assert flights is not None
    assert (flights.final["status"], flights.final["error"]) == ("SUCCEEDED", None)
    expected = expected_flights_counts(FLIGHTS_LIMIT)
    assert flights.final["counts"] == expected
    assert flights.rows_in_table == expected["loaded"]
    assert flights.duplicate_keys == 0
    chunks = math.ceil(FLIGHTS_LIMIT / CHUNK_ROWS)
    assert [chunk for chunk, _ in flights.ledger] == list(range(chunks))
    assert sum(rows for _, rows in flights.ledger) == expected["loaded"]


def test_ten_concurrent_tasks_survive_duplicates_failures_and_kills(chaos_run: ChaosRun) -> None:
    # Given 10 concurrent tasks (the flights pipeline on a sample, nine ad-hoc) on a cloud injecting duplicate=0.3, fail=0.2, kill=0.02 (fixed seed)
    # When every task has reached a terminal state (within TERMINAL_BOUND_S, else the fixture fails)
    # Then each succeeded with the fault-free counts and rows, no key twice, every chunk in the ledger once
    assert len(chaos_run.final) + 1 == 10  # nine ad-hoc tasks and the flights sample
    assert_as_if_fault_free(chaos_run)


def test_chaos_run_injected_every_kind(chaos_run: ChaosRun) -> None:
    # Given the chaos run above
    # When its injection counters are read from chaos.json
    injected = chaos_run.injected
    # Then each enabled kind happened at least once, and the disabled one never
    assert min(injected[kind] for kind in ("duplicate", "fail", "kill")) >= 1, injected
    assert injected["timeout"] == 0, injected


def test_tasks_survive_timeouts_too(timeout_chaos_run: ChaosRun) -> None:
    # Given the same 10 concurrent tasks on a cloud that also makes 5% of invocations exceed their Timeout
    # When every task has reached a terminal state
    # Then the outcome is still exactly the fault-free one, and timeouts (this run's addition) did happen.
    # Each kind rolls its own seeded generator, so with this seed the first kill is the 23rd invocation and
    # the first timeout the 10th, whatever the thread timing; ~180 invocations leave a wide margin.
    assert len(timeout_chaos_run.final) + 1 == 10  # nine ad-hoc tasks and the flights sample
    assert_as_if_fault_free(timeout_chaos_run)
    injected = timeout_chaos_run.injected
    assert min(injected[kind] for kind in ("duplicate", "fail", "timeout", "kill")) >= 1, injected
