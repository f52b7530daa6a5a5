"""Shared by the resilience tests: generated sources with expectations computed here (never by busline code),
a small REST client, AWS clients against the local cloud, a loopback HTTP file server and the CLI runner.

Every expected number is a pure function of the generator below: the tests compare what the app did under
faults with what a fault-free run must produce.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import psycopg
from busline_core.tenancy import LEDGER, owner_table, schema_for
from psycopg import sql

from busline.localcloud.testing import RunningCloud, disposable_cloud, user_tokens

REPO = Path(__file__).resolve().parents[3]
TEMPLATE = REPO / "template.yaml"
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")
START_TIMEOUT_S = 120.0

REGIONS = [f"R{number:02d}" for number in range(12)]
UNKNOWN_REGION = "R99"  # absent from the reference: a required-join reject
VOID = "void"  # the filter drops these


# --- clouds ---------------------------------------------------------------------------------------


def local_cloud(prefix: str, extra_args: list[str]) -> AbstractContextManager[RunningCloud]:
    """A cloud in a fresh data dir; Postgres data is dropped afterwards, console and function logs stay."""
    return disposable_cloud(TEMPLATE, prefix, extra_args=extra_args, timeout_s=START_TIMEOUT_S)


# Fault-free, with a short redelivery cycle: a failing message is back after 10 s and dead-lettered on its
# 3rd receive. The watchdog ticks every 5 s (rate(1 minute) / 12) and fails tasks idle for 30 s, longer than
# a poisoned chunk needs to reach its DLQ (two deliveries, ~10 s apart), so the two never race.
DRILL_ARGS = [
    "--param", "FaultSwitchCacheSeconds=1",
    "--param", "StepTimeout=8",
    "--param", "QueueVisibilityTimeout=10",
    "--param", "MaxReceiveCount=2",
    "--param", "ChunkRows=1000",
    "--param", "StallSeconds=30",
    "--schedule-scale", "12",
]  # fmt: skip
STALL_SECONDS = 30
DRILL_MAX_RECEIVE_COUNT = 2
DRILL_VISIBILITY_S = 10
DRILL_CHUNK_ROWS = 1000
FAULT_MESSAGE = "deliberate fault: the fault switch says transform:fail"
# Two deliveries (MaxReceiveCount) a visibility timeout apart, plus a cold start and the move to the DLQ on
# the next receive: well inside this on a busy 2-CPU machine.
POISON_BOUND_S = 25 + DRILL_MAX_RECEIVE_COUNT * DRILL_VISIBILITY_S


# --- generated data -------------------------------------------------------------------------------


def order_row(order_id: int, salt: int) -> dict[str, str]:
    """Order `order_id` of a dataset; a pure function of (id, salt), so a repeated id is the same row again."""
    mixed = order_id * 31 + salt * 7
    qty = f"x{order_id}" if mixed % 37 == 0 else str(mixed % 9 + 1)  # cast failure: not an int
    day = "2026-13-45" if mixed % 53 == 0 else f"2026-{mixed % 12 + 1:02d}-{mixed % 28 + 1:02d}"  # not a date
    return {
        "id": str(order_id),
        "region": UNKNOWN_REGION if mixed % 41 == 0 else REGIONS[mixed % len(REGIONS)],
        "qty": qty,
        "amount": f"{mixed % 500}.{mixed % 100:02d}",
        "day": day,
        "flag": "true" if mixed % 2 else "false",
        "status": VOID if mixed % 7 == 0 else "ok",
    }


def region_rows() -> list[dict[str, str]]:
    return [
        {"code": code, "region_name": f"Region {code}", "tier": str(index % 3)}
        for index, code in enumerate(REGIONS)
    ]


@dataclass
class Expectation:
    """What a fault-free run of the spec must produce, worked out row by row in spec order:
    casts and required values (reject), then the filter (filtered), then the required join (reject)."""

    read: int = 0
    filtered: int = 0
    rejected: int = 0
    transformed: int = 0  # rows that reach load (each chunk's ledger counts its own): a repeated key twice
    table: dict[int, tuple[Any, ...]] = field(default_factory=dict)  # id -> the row Postgres must hold

    def counts(self, commit: str = "task") -> dict[str, int]:
        """commit "task": the merge writes each key once; "chunk": each chunk writes its rows, a key
        repeated in a later chunk again (an update)."""
        return {
            "read": self.read,
            "filtered": self.filtered,
            "rejected": self.rejected,
            "loaded": len(self.table) if commit == "task" else self.transformed,
            "deleted": 0,
        }


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()


def _parse_day(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def expect(rows: list[dict[str, str]]) -> Expectation:
    known = {row["code"]: row for row in region_rows()}
    expected = Expectation(read=len(rows))
    for row in rows:
        day = _parse_day(row["day"])
        if not _is_int(row["qty"]) or day is None:
            expected.rejected += 1
        elif row["status"] == VOID:
            expected.filtered += 1
        elif row["region"] not in known:
            expected.rejected += 1
        else:
            expected.transformed += 1
            reference = known[row["region"]]
            expected.table[int(row["id"])] = (
                int(row["id"]),
                row["region"],
                int(row["qty"]),
                Decimal(row["amount"]),
                day,
                row["flag"] == "true",
                row["status"],
                reference["region_name"],
                int(reference["tier"]),
            )
    return expected


TABLE_COLUMNS = "id, region, qty, amount, day, flag, status, region_name, tier"


def generate_orders(unique: int, repeated: int, salt: int) -> list[dict[str, str]]:
    """`unique` orders, then the first `repeated` again at the end (a later chunk: an upsert, not a duplicate)."""
    ids = list(range(1, unique + 1)) + list(range(1, repeated + 1))
    return [order_row(order_id, salt) for order_id in ids]


def csv_bytes(rows: list[dict[str, str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode()


def ndjson_gz_bytes(rows: list[dict[str, str]]) -> bytes:
    return gzip.compress("".join(json.dumps(row) + "\n" for row in rows).encode())


def order_spec(
    source_uri: str, source_format: str, regions_uri: str, table: str, mode: str, chunk_rows: int,
    commit: str = "task",
) -> dict[str, Any]:
    return {
        "source": {"uri": source_uri, "format": source_format},
        "columns": [
            {"name": "id", "type": "int", "required": True},
            {"name": "region", "type": "string", "required": True},
            {"name": "qty", "type": "int"},
            {"name": "amount", "type": "decimal"},
            {"name": "day", "type": "date"},
            {"name": "flag", "type": "bool"},
            {"name": "status", "type": "string"},
        ],
        "filters": [{"column": "status", "op": "ne", "value": VOID}],
        "joins": [
            {
                "name": "regions",
                "uri": regions_uri,
                "format": "csv",
                "on": {"region": "code"},
                "columns": [
                    {"name": "region_name", "as": "region_name", "type": "string"},
                    {"name": "tier", "as": "tier", "type": "int"},
                ],
                "required": True,
            }
        ],
        "target": {"table": table, "key": ["id"], "mode": mode, "commit": commit},
        "chunkRows": chunk_rows,
    }


def upload_task(
    cloud: RunningCloud, name: str, rows: list[dict[str, str]], mode: str = "upsert", table: str | None = None
) -> dict[str, Any]:
    """Sources in S3 and the ad-hoc spec loading them into a table of their own."""
    bucket = cloud.endpoints["outputs"]["DataBucketName"]
    s3 = aws_client(cloud.endpoints, "s3")
    prefix = f"shared/resilience/{name}-{uuid.uuid4().hex[:8]}"
    s3.put_object(Bucket=bucket, Key=f"{prefix}/orders.csv", Body=csv_bytes(rows))
    s3.put_object(Bucket=bucket, Key=f"{prefix}/regions.csv", Body=csv_bytes(region_rows()))
    table = table or f"{name}_{uuid.uuid4().hex[:8]}"
    return order_spec(
        f"s3://{bucket}/{prefix}/orders.csv",
        "csv",
        f"s3://{bucket}/{prefix}/regions.csv",
        table,
        mode,
        DRILL_CHUNK_ROWS,
    )


# --- REST -----------------------------------------------------------------------------------------


class Api:
    """Tiny REST client signed in as the cloud's demo user; a non-2xx answer fails with the status and body
    so the test output says why."""

    def __init__(self, endpoints: dict[str, Any]) -> None:
        self.base_url = str(endpoints["rest"]).rstrip("/")
        self.token = user_tokens(endpoints, endpoints["auth"]["demoUser"]["username"]).access_token

    def _call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Authorization": self.token}
        request = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(errors="replace")

    def submit(self, body: dict[str, Any]) -> str:
        status, answer = self._call("POST", "/tasks", body)
        assert status == 202, f"POST /tasks answered {status}: {answer}"
        return str(answer["taskId"])

    def cancel(self, task_id: str) -> tuple[int, Any]:
        return self._call("POST", f"/tasks/{task_id}/cancel", {})

    def task(self, task_id: str) -> dict[str, Any]:
        status, answer = self._call("GET", f"/tasks/{task_id}")
        assert status == 200, f"GET /tasks/{task_id} answered {status}: {answer}"
        return dict(answer)

    def all_tasks(self) -> dict[str, dict[str, Any]]:
        """Every task of the caller, newest first, through the paginated GET /tasks."""
        found: dict[str, dict[str, Any]] = {}
        token: str | None = None
        while True:
            query = "/tasks?limit=100" + (f"&nextToken={urllib.parse.quote(token)}" if token else "")
            status, answer = self._call("GET", query)
            assert status == 200, f"GET {query} answered {status}: {answer}"
            found.update((item["taskId"], item) for item in answer["items"])
            token = answer.get("nextToken")
            if not token:
                return found

    def wait_terminal(self, task_ids: list[str], timeout_s: float) -> dict[str, dict[str, Any]]:
        """Poll until every task is SUCCEEDED or FAILED; fail naming the stragglers and their state.

        One list call per round rather than one GET per task: on a 2-CPU machine the API function's own
        CPU would otherwise slow down the very tasks being waited for."""
        deadline = time.monotonic() + timeout_s
        while True:
            listed = self.all_tasks()
            missing = [task_id for task_id in task_ids if task_id not in listed]
            assert missing == [], f"GET /tasks does not list {missing}"
            snapshots = {task_id: listed[task_id] for task_id in task_ids}
            waiting = {task_id: task for task_id, task in snapshots.items() if task["status"] not in TERMINAL}
            if not waiting:
                return snapshots
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(waiting)} task(s) not terminal after {timeout_s} s: {waiting}")
            time.sleep(2.0)

    def wait_until(
        self, task_id: str, done: Callable[[dict[str, Any]], bool], what: str, timeout_s: float
    ) -> dict[str, Any]:
        """Poll GET /tasks/{id} until `done(snapshot)`; fail saying what was awaited and the last snapshot."""
        deadline = time.monotonic() + timeout_s
        while True:
            snapshot = self.task(task_id)
            if done(snapshot):
                return snapshot
            if time.monotonic() > deadline:
                raise AssertionError(f"task {task_id}: not {what} after {timeout_s} s: {snapshot}")
            time.sleep(0.5)


# --- AWS and Postgres -----------------------------------------------------------------------------


def aws_client(endpoints: dict[str, Any], service: str) -> Any:
    # The service name is a runtime string here, so the stubs' per-service overloads cannot pick one.
    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=endpoints["aws"],
        region_name=endpoints["region"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def aws_resource(endpoints: dict[str, Any], service: str) -> Any:
    return boto3.resource(  # type: ignore[call-overload]
        service,
        endpoint_url=endpoints["aws"],
        region_name=endpoints["region"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def queue_depth(sqs: Any, queue_url: str) -> tuple[int, int]:
    """(visible, in flight) of a queue."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def set_fault_switch(endpoints: dict[str, Any], value: str) -> None:
    ssm = aws_client(endpoints, "ssm")
    ssm.put_parameter(
        Name=endpoints["outputs"]["FaultsParameterName"], Value=value, Type="String", Overwrite=True
    )
    # The functions cache the parameter for 1 s (FaultSwitchCacheSeconds=1 above): wait it out so warm workers see it.
    time.sleep(1.5)


def table_rows(database_url: str, owner: str, table: str) -> dict[int, tuple[Any, ...]]:
    """The rows of `owner`'s `table` (in the owner's schema), by id."""
    columns = sql.SQL(", ").join(sql.Identifier(name) for name in TABLE_COLUMNS.split(", "))
    with psycopg.connect(database_url, autocommit=True) as connection:
        rows = connection.execute(
            sql.SQL("SELECT {} FROM {}").format(columns, owner_table(owner, table))
        ).fetchall()
    return {int(row[0]): tuple(row) for row in rows}


def checksum(database_url: str, owner: str, table: str) -> str:
    """One digest of every row of the table, in key order: equal means byte for byte the same content."""
    with psycopg.connect(database_url, autocommit=True) as connection:
        row = connection.execute(
            sql.SQL("SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t.id), '')) FROM {} t").format(
                owner_table(owner, table)
            )
        ).fetchone()
    assert row is not None
    return str(row[0])


def staging_tables(database_url: str, owner: str) -> list[str]:
    with psycopg.connect(database_url, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename LIKE 'busline_stage_%%'",
            (schema_for(owner),),
        ).fetchall()
    return [str(row[0]) for row in rows]


def duplicate_keys(database_url: str, owner: str, table: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url, autocommit=True) as connection:
        return connection.execute(
            sql.SQL("SELECT id, count(*) FROM {} GROUP BY id HAVING count(*) > 1").format(owner_table(owner, table))
        ).fetchall()


def ledger(database_url: str, task_id: str) -> list[tuple[int, int]]:
    """(chunk, rows) the load step committed for a task, in chunk order."""
    with psycopg.connect(database_url, autocommit=True) as connection:
        return [
            (int(chunk), int(rows))
            for chunk, rows in connection.execute(
                sql.SQL("SELECT chunk, rows FROM {} WHERE task_id = %s ORDER BY chunk").format(LEDGER), (task_id,)
            ).fetchall()
        ]


# --- loopback HTTP sources ------------------------------------------------------------------------


@contextmanager
def serving_files(files: dict[str, bytes], gate: threading.Event | None = None) -> Iterator[str]:
    """Serve `files` (path -> bytes) on 127.0.0.1; yields the base URL. The server stops with the block.
    With a `gate`, a GET waits until it is set (at most 60 s): what holds a step in its phase."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            if gate is not None:
                gate.wait(timeout=60)
            body = files.get(self.path)
            if body is None:
                self.send_error(404, f"{self.path} is not served here")
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
            pass  # the functions fetch often under chaos: keep the test output readable

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="resilience-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --- CLI ------------------------------------------------------------------------------------------


def run_cli(*args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    """`busline …` as a user runs it (a fresh process), with a wide terminal so tables are not wrapped."""
    return subprocess.run(
        [sys.executable, "-m", "busline.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=REPO,
        env={**os.environ, "COLUMNS": "250", "NO_COLOR": "1"},
    )
