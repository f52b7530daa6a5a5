"""`python -m busline.bench`: the flights demo end to end on the local cloud, against a one-process baseline.

What is measured, and how:
- end-to-end seconds: POST /tasks until the WebSocket delivers the terminal snapshot. A small warm-up task
  runs first, so one worker of each function is warm; extra workers the run scales out to still start
  cold (spawn + imports), as extra Lambda instances do on AWS. StepTimeout is raised to 300 s (see
  CLOUD_ARGS) so a slow extract on a busy machine is measured, not retried;
- seconds per phase: the task's own `timings` (first chunk started -> phase completed; phases overlap);
- progress latency: for every WebSocket frame, client receive time minus the snapshot's `updatedAtMs`
  (the wall clock of the step that wrote the task item), so it spans DynamoDB write -> stream poll ->
  progress function -> @connections -> gateway -> client;
- AWS API calls per task: moto's request recorder is switched on for the measured run only and every
  recorded request is attributed to a service (SigV4 credential scope) and an operation. It includes the
  event-source pollers' SQS/stream calls and the watchdog's, i.e. everything the stack made during the run;
  WebSocket pushes are counted at the client (they go to the local @connections API, not to moto);
- baseline: one process, no cloud: stream flights.csv.zip, cast/filter/join with busline_core.transform (the
  same code the transform function runs) and COPY the rows into a separate table. It is the floor the
  pipeline's overhead is measured against.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gzip
import io
import itertools
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = REPO / "template.yaml"
FLIGHTS_TABLE = "flights"
BASELINE_TABLE = "flights_baseline"
WARMUP_ROWS = 500
# Extract streams the whole source in one invocation; on a busy 2-CPU box that passed the template's 60 s
# default, and a retry then waits out the 360 s visibility timeout: the bench would measure that wait.
CLOUD_ARGS = ["--demo", "--param", "StepTimeout=300", "--param", "QueueVisibilityTimeout=360"]
TASK_TIMEOUT_S = 900.0
TERMINAL = ("SUCCEEDED", "FAILED")


# --- talking to the local cloud -------------------------------------------------------------------


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


def run_task(endpoints: dict[str, Any], body: dict[str, Any], token: str) -> FollowedTask:
    """Submit `body` as the user of `token`, follow it on the WebSocket until its terminal snapshot, return
    what was seen."""
    from websockets.sync.client import connect

    from busline.localcloud.testing import websocket_url

    latencies: list[float] = []
    messages = 0
    with connect(websocket_url(endpoints, token), open_timeout=30, max_size=None) as socket:
        started = time.monotonic()
        accepted = _http_json("POST", endpoints["rest"] + "/tasks", token, body)
        task_id = accepted["taskId"]
        socket.send(json.dumps({"action": "subscribe", "taskId": task_id}))
        deadline = started + TASK_TIMEOUT_S
        while True:
            if time.monotonic() > deadline:
                raise RuntimeError(f"task {task_id} did not finish within {TASK_TIMEOUT_S} s")
            try:
                raw = socket.recv(timeout=max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                continue
            received_ms = time.time() * 1000
            message = json.loads(raw)
            if "taskId" not in message:  # a refusal, e.g. {"error": "task … not found"}
                raise RuntimeError(f"WebSocket error for {task_id}: {message['error']}")
            messages += 1
            latencies.append(received_ms - float(message["updatedAtMs"]))
            if message["status"] in TERMINAL:
                seconds = time.monotonic() - started
                break
    final = _http_json("GET", f"{endpoints['rest']}/tasks/{task_id}", token)
    if final["status"] != "SUCCEEDED":
        raise RuntimeError(f"task {task_id} ended {final['status']}: {final.get('error')}")
    # the first frame answers `subscribe` (the snapshot as stored), so it measures the subscribe, not a push
    return FollowedTask(task_id, seconds, final, latencies[1:], messages)


# --- moto's request recorder ----------------------------------------------------------------------


def _recorder(aws_endpoint: str, action: str) -> str:
    url = f"{aws_endpoint}/moto-api/recorder/{action}"
    request = urllib.request.Request(
        url, method="GET" if action == "download-recording" else "POST", data=None
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return response.read().decode()


def _service_of(headers: dict[str, str]) -> str:
    # SigV4: "AWS4-HMAC-SHA256 Credential=<key>/<date>/<region>/<service>/aws4_request, ..."
    authorization = next((value for name, value in headers.items() if name.lower() == "authorization"), "")
    marker = "Credential="
    if marker in authorization:
        scope = authorization.split(marker, 1)[1].split(",", 1)[0].split("/")
        if len(scope) >= 4:
            return scope[3]
    return "unsigned"


def _operation_of(entry: dict[str, Any], service: str) -> str:
    headers = {name.lower(): value for name, value in entry.get("headers", {}).items()}
    target = headers.get("x-amz-target")
    if target:
        return target.rsplit(".", 1)[-1]
    body = entry.get("body") or ""
    if entry.get("body_encoded"):
        with contextlib.suppress(ValueError):
            body = base64.b64decode(body)[:4096].decode(errors="replace")
    if isinstance(body, str) and "Action=" in body:
        action = parse_qs(body).get("Action")
        if action:
            return action[0]
    if service == "s3":
        path = urlsplit(entry.get("url", "")).path.strip("/")
        return f"{entry.get('method')} {'object' if '/' in path else 'bucket'}"
    return str(entry.get("method"))


def iter_recorded_requests(recording: str) -> Iterator[dict[str, Any]]:
    """The recorder's entries. Not line by line: moto's threads append an entry and its newline in two
    writes, so under load a line can hold two entries (and another none); the objects stay whole."""
    decoder = json.JSONDecoder()
    position, end = 0, len(recording)
    while True:
        while position < end and recording[position].isspace():
            position += 1
        if position >= end:
            return
        entry, position = decoder.raw_decode(recording, position)
        yield entry


def count_api_calls(recording: str) -> tuple[Counter[str], Counter[str]]:
    by_service: Counter[str] = Counter()
    by_operation: Counter[str] = Counter()
    for entry in iter_recorded_requests(recording):
        service = _service_of(entry.get("headers", {}))
        target = next((v for k, v in entry.get("headers", {}).items() if k.lower() == "x-amz-target"), "")
        if target.startswith("DynamoDBStreams"):
            service = "dynamodbstreams"  # signed as "dynamodb", but a separate API (and free for Lambda)
        by_service[service] += 1
        by_operation[f"{service}:{_operation_of(entry, service)}"] += 1
    return by_service, by_operation


# --- sources --------------------------------------------------------------------------------------


def _flights_zip() -> Path:
    from busline.localcloud.demo import demo_data_dir

    return demo_data_dir() / "flights.csv.zip"


def _flights_lines(limit: int | None) -> Iterator[bytes]:
    """The header and the first `limit` data lines of flights.csv, streamed out of the zip."""
    import zipfile

    with zipfile.ZipFile(_flights_zip()) as archive:
        member = next(name for name in archive.namelist() if name.endswith(".csv") and "__MACOSX" not in name)
        with archive.open(member) as raw:
            yield from itertools.islice(raw, None if limit is None else limit + 1)


def upload_subset(s3: Any, bucket: str, rows: int, work_dir: Path) -> str:
    """Put the first `rows` flights in S3 as csv.gz (spooled to disk, never held in memory); return its URI."""
    path = work_dir / f"flights-{rows}.csv.gz"
    with gzip.open(path, "wb") as target:
        for line in _flights_lines(rows):
            target.write(line)
    key = f"shared/bench/{path.name}"  # shared/: a prefix every owner's tasks may read
    s3.upload_file(str(path), bucket, key)
    return f"s3://{bucket}/{key}"


def flights_body(bucket: str, table: str, source_uri: str | None) -> dict[str, Any]:
    """The flights pipeline request, or the same spec over another source (a subset) as an ad hoc task."""
    if source_uri is None and table == FLIGHTS_TABLE:
        return {"pipeline": "flights", "params": {}}
    from busline_core.pipelines import expand_pipeline

    spec = expand_pipeline("flights", {"table": table}, bucket).model_dump(by_alias=True, mode="json")
    if source_uri is not None:
        spec["source"]["uri"] = source_uri
    return dict(spec)


# --- the one-process baseline ---------------------------------------------------------------------


@dataclass
class BaselineResult:
    seconds: float
    read: int
    filtered: int
    rejected: int
    loaded: int


def run_baseline(database_url: str, rows: int | None) -> BaselineResult:
    """Stream, transform with busline_core.transform, COPY into BASELINE_TABLE: the floor for the pipeline."""
    import psycopg
    from busline_core.pipelines import expand_pipeline
    from busline_core.readers import iter_chunks, iter_records
    from busline_core.spec import POSTGRES_TYPES
    from busline_core.transform import ReferenceTable, output_columns, transform_rows
    from psycopg import sql

    from busline.localcloud.demo import demo_data_dir

    started = time.monotonic()
    data = demo_data_dir()
    spec = expand_pipeline("flights", {"table": BASELINE_TABLE}, "baseline")
    refs = {}
    for join in spec.joins:
        with (data / Path(urlsplit(join.uri).path).name).open("rb") as stream:
            records = iter_records(stream, join.format, name_hint=join.uri, null_values=join.nullValues)
            refs[join.name] = ReferenceTable.from_records(records, list(join.on.values()))
    columns = output_columns(spec)
    names = [column.name for column in columns]

    read = filtered = rejected = loaded = 0
    with psycopg.connect(database_url, autocommit=False) as connection:
        table = sql.Identifier(BASELINE_TABLE)
        connection.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        connection.execute(
            sql.SQL("CREATE TABLE {} ({}, PRIMARY KEY ({}))").format(
                table,
                sql.SQL(", ").join(
                    sql.SQL("{} {}").format(sql.Identifier(column.name), sql.SQL(POSTGRES_TYPES[column.type]))
                    for column in columns
                ),
                sql.SQL(", ").join(map(sql.Identifier, spec.target.key)),
            )
        )
        copy_statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
            table, sql.SQL(", ").join(map(sql.Identifier, names))
        )
        with connection.cursor() as cursor, cursor.copy(copy_statement) as copy:
            lines = _flights_lines(rows)
            stream = io.BufferedReader(_LineStream(lines), buffer_size=1 << 16)
            records = iter_records(
                stream, "csv", name_hint="flights.csv.zip", null_values=spec.source.nullValues
            )
            for chunk in iter_chunks(records, spec.chunkRows):
                result = transform_rows(chunk, spec, refs, first_row=read + 1)
                read += len(chunk)
                filtered += result.filtered
                rejected += len(result.rejects)
                for row in result.rows:
                    copy.write_row([row[name] for name in names])
                loaded += len(result.rows)
        connection.commit()
    return BaselineResult(time.monotonic() - started, read, filtered, rejected, loaded)


class _LineStream(io.RawIOBase):
    """A binary file object over an iterator of lines, so a zip member cut to N rows still streams."""

    def __init__(self, lines: Iterator[bytes]) -> None:
        self._lines = lines
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            try:
                self._pending = next(self._lines)
            except StopIteration:
                return 0
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


# --- report ---------------------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile; None when there is nothing to rank."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def build_report(
    run: FollowedTask,
    baseline: BaselineResult,
    calls: tuple[Counter[str], Counter[str]],
    warmup_seconds: float,
) -> dict[str, Any]:
    counts = run.final["counts"]
    by_service, by_operation = calls
    phases = {
        phase: _round((run.final.get("timings") or {}).get(phase, {}).get("seconds"), 2)
        for phase in ("extract", "transform", "load")
    }
    chunks = run.final["phases"]["extract"]["total"]
    return {
        "taskId": run.task_id,
        "rows": counts["read"],
        "chunks": chunks,
        "pipeline": {
            "endToEndSeconds": round(run.seconds, 2),
            "rowsPerSecond": round(counts["read"] / run.seconds) if run.seconds else None,
            "phaseSeconds": phases,
            "counts": counts,
            "warmupTaskSeconds": round(warmup_seconds, 2),
        },
        "progress": {
            "messages": run.messages,
            "latencyMs": {
                "p50": _round(percentile(run.latencies_ms, 0.50)),
                "p95": _round(percentile(run.latencies_ms, 0.95)),
                "max": _round(max(run.latencies_ms) if run.latencies_ms else None),
                "samples": len(run.latencies_ms),
            },
        },
        "apiCalls": {
            "total": sum(by_service.values()),
            "perChunk": round(sum(by_service.values()) / chunks, 1) if chunks else None,
            "byService": dict(by_service.most_common()),
            "byOperation": dict(by_operation.most_common()),
            "webSocketPushes": run.messages - 1,
            "method": "moto request recorder during the measured run (includes event-source pollers and the "
            "watchdog); WebSocket pushes counted at the client",
        },
        "baseline": {
            "seconds": round(baseline.seconds, 2),
            "rowsPerSecond": round(baseline.read / baseline.seconds) if baseline.seconds else None,
            "counts": {
                "read": baseline.read,
                "filtered": baseline.filtered,
                "rejected": baseline.rejected,
                "loaded": baseline.loaded,
            },
            "method": "one process: stream the zip, busline_core.transform, COPY into a separate table",
        },
        "pipelineToBaselineRatio": round(run.seconds / baseline.seconds, 2) if baseline.seconds else None,
        "countsMatchBaseline": counts
        == {
            "read": baseline.read,
            "filtered": baseline.filtered,
            "rejected": baseline.rejected,
            "loaded": baseline.loaded,
        },
        "environment": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
        },
    }


def print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    pipeline, progress, calls, baseline = (
        report["pipeline"], report["progress"], report["apiCalls"], report["baseline"],
    )  # fmt: skip
    table = Table(title=f"Busline bench: {report['rows']:,} rows in {report['chunks']} chunks")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("end to end (s)", f"{pipeline['endToEndSeconds']}")
    table.add_row("rows/s", f"{pipeline['rowsPerSecond']:,}")
    for phase, seconds in pipeline["phaseSeconds"].items():
        table.add_row(f"  {phase} (s)", f"{seconds}")
    table.add_row("progress messages", f"{progress['messages']}")
    table.add_row(
        "progress latency p50 / p95 (ms)", f"{progress['latencyMs']['p50']} / {progress['latencyMs']['p95']}"
    )
    table.add_row("AWS API calls (total / per chunk)", f"{calls['total']} / {calls['perChunk']}")
    for service, count in calls["byService"].items():
        table.add_row(f"  {service}", f"{count}")
    table.add_row("baseline (s)", f"{baseline['seconds']}")
    table.add_row("baseline rows/s", f"{baseline['rowsPerSecond']:,}")
    table.add_row("pipeline / baseline", f"{report['pipelineToBaselineRatio']}x")
    table.add_row("counts match baseline", "yes" if report["countsMatchBaseline"] else "[red]NO[/red]")
    Console(stderr=True).print(table)


# --- main -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m busline.bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", type=int, default=None, help="only the first N flights (default: all 336,776)"
    )
    parser.add_argument(
        "--json", type=Path, default=Path("bench-results.json"), help="where to write the results"
    )
    parser.add_argument(
        "--template", type=Path, default=TEMPLATE, help="SAM template to run (default: the repo's)"
    )
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="local cloud data dir (default: a temp dir)"
    )
    args = parser.parse_args(argv)
    if args.rows is not None and args.rows < 1:
        parser.error("--rows must be at least 1")

    import boto3

    from busline.localcloud.testing import running_cloud, user_tokens

    own_dir = args.data_dir is None
    data_dir = Path(tempfile.mkdtemp(prefix="busline-bench-")) if own_dir else args.data_dir
    if own_dir:
        data_dir.chmod(0o755)  # Postgres runs as the `pgserver` user when we are root: it must enter the dir
    recording_path = data_dir / "moto-recording.jsonl"
    environment = {"MOTO_RECORDER_FILEPATH": str(recording_path)}
    print(f"starting the local cloud in {data_dir} …", file=sys.stderr)
    try:
        with running_cloud(args.template, data_dir, extra_args=CLOUD_ARGS, env=environment) as cloud:
            endpoints = cloud.endpoints
            bucket = endpoints["outputs"]["DataBucketName"]
            s3 = boto3.client(
                "s3", endpoint_url=endpoints["aws"], region_name=endpoints["region"],
                aws_access_key_id="testing", aws_secret_access_key="testing",
            )  # fmt: skip
            # signed in before anything is measured: Cognito's calls are not a chunk's
            token = user_tokens(endpoints, "bench").access_token
            print("warm-up task (starts every function's worker) …", file=sys.stderr)
            warmup_uri = upload_subset(s3, bucket, WARMUP_ROWS, data_dir)
            warmup = run_task(endpoints, flights_body(bucket, "flights_warmup", warmup_uri), token)

            source_uri = upload_subset(s3, bucket, args.rows, data_dir) if args.rows is not None else None
            print("measured run …", file=sys.stderr)
            _recorder(endpoints["aws"], "reset-recording")
            _recorder(endpoints["aws"], "start-recording")
            try:
                run = run_task(endpoints, flights_body(bucket, FLIGHTS_TABLE, source_uri), token)
            finally:
                _recorder(endpoints["aws"], "stop-recording")
            try:
                calls = count_api_calls(recording_path.read_text() if recording_path.exists() else "")
            except ValueError as error:  # a damaged recording must not throw away the measured run
                print(f"could not read moto's recording: {error}", file=sys.stderr)
                calls = (Counter(), Counter())

            print("baseline …", file=sys.stderr)
            baseline = run_baseline(endpoints["postgres"], args.rows)
    finally:
        if own_dir:
            shutil.rmtree(data_dir, ignore_errors=True)

    report = build_report(run, baseline, calls, warmup.seconds)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print_report(report)
    print(f"results written to {args.json}", file=sys.stderr)
    return 0 if report["countsMatchBaseline"] else 1


if __name__ == "__main__":
    sys.exit(main())
