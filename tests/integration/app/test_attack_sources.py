"""Hostile sources, run as tasks in the local cloud: bombs, oversized records, SSRF redirects and values
Postgres would refuse, served from a loopback server in this test process (the local cloud allows plain
http to loopback only; AllowLoopbackHttpSources). Each either is refused at submit with a 4xx naming
`source.uri`, or runs to FAILED with the limit or reason named, or SUCCEEDED with exactly the bad rows
rejected; no answer is a 5xx, and no failed task leaves a row in its table."""

from __future__ import annotations

import contextlib
import gzip
import http.server
import io
import threading
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from busline_core.limits import MAX_DECOMPRESSION_RATIO
from busline_core.tenancy import owner_table, schema_for
from psycopg import sql

pytestmark = pytest.mark.integration

# A line of 1,000 identical characters deflates about 1,000 times: far past MAX_DECOMPRESSION_RATIO (200).
BOMB_LINE = b"1," + b"a" * 997 + b"\n"
BOMB_BYTES = 64 * 1024**2
HEADER = b"id,note\n"


def _deflate_stream(total: int) -> Iterator[bytes]:
    block = BOMB_LINE * 1024
    for _ in range(total // len(block)):
        yield block


def gzip_bomb() -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: a gzip container
    parts = [compressor.compress(HEADER)]
    parts += [compressor.compress(block) for block in _deflate_stream(BOMB_BYTES)]
    parts.append(compressor.flush())
    return b"".join(parts)


def zip_bomb() -> bytes:
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive,
        archive.open("bomb.csv", "w", force_zip64=True) as member,
    ):
        member.write(HEADER)
        for block in _deflate_stream(BOMB_BYTES):
            member.write(block)
    return buffer.getvalue()


def _ndjson(*records: str) -> bytes:
    return ("\n".join(records) + "\n").encode()


def files() -> dict[str, tuple[int, dict[str, str], bytes]]:
    """path -> (status, headers, body) of the loopback server."""
    truncated = gzip.compress(HEADER + b"1,a\n" * 10_000)
    deep = '{"id": 1, "note": ' + "[" * 40 + "]" * 40 + "}"
    ok = {"Content-Type": "text/plain"}
    return {
        "/gzip-bomb.csv.gz": (200, ok, gzip_bomb()),
        "/zip-bomb.zip": (200, ok, zip_bomb()),
        "/long-line.ndjson": (200, ok, _ndjson('{"id": 1, "note": "' + "x" * (2 * 1024**2) + '"}')),
        "/deep.ndjson": (200, ok, _ndjson(deep)),
        "/wide.csv": (200, ok, (",".join(f"c{i}" for i in range(5000)) + "\n").encode()),
        "/truncated.csv.gz": (200, ok, truncated[: len(truncated) // 2]),
        "/latin1.csv": (200, ok, HEADER + "1,café\n".encode("latin-1")),
        "/to-metadata.csv": (302, {"Location": "http://169.254.169.254/latest/meta-data/iam/"}, b""),
        "/to-private.csv": (302, {"Location": "http://10.1.2.3/orders.csv"}, b""),
        "/loop.csv": (302, {"Location": "/loop.csv"}, b""),
        "/carriers.csv": (200, ok, b"code,name\n1,one\n"),
        "/values.ndjson": (
            200,
            ok,
            _ndjson(
                '{"id": 1, "note": "fine", "amount": "1.5", "at": "2026-11-30T12:00:00Z"}',
                '{"id": 2, "note": "nul\\u0000inside"}',
                '{"id": 3, "note": "half \\ud800 a pair"}',
                '{"id": 9223372036854775808, "note": "past bigint"}',
                '{"id": 5, "amount": "1e200000"}',
                '{"id": 6, "at": "9999-12-31T23:00:00-05:00"}',
                '{"id": 7, "note": "offset with seconds", "at": "2026-11-30T12:00:00+05:30:15"}',
                '{"id": 8, "amount": "1e-20000"}',
            ),
        ),
    }


@dataclass(frozen=True)
class Served:
    base: str
    files: dict[str, tuple[int, dict[str, str], bytes]]


@pytest.fixture(scope="module")
def loopback() -> Iterator[Served]:
    served = files()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            status, headers, body = served.get(self.path, (404, {}, b"no such file"))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            # the reader may stop at its limit and hang up: what a bomb should get
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Served(f"http://127.0.0.1:{server.server_address[1]}", served)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


COLUMNS = [{"name": "id", "type": "int", "required": True}, {"name": "note", "type": "string"}]


def _spec(uri: str, fmt: str, table: str, **changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "source": {"uri": uri, "format": fmt},
        "columns": COLUMNS,
        "target": {"table": table, "key": ["id"]},
    }
    spec.update(changes)
    return spec


def _table_of(attack: str) -> str:
    return "attack_" + attack.replace("-", "_")


@dataclass(frozen=True)
class FailsWith:
    name: str
    path: str
    fmt: str
    phase: str
    says: str  # in the task's error: the limit's name or the reason


FAILING = [
    FailsWith("gzip-bomb", "/gzip-bomb.csv.gz", "csv", "extract", "MAX_DECOMPRESSION_RATIO"),
    FailsWith("zip-bomb", "/zip-bomb.zip", "csv", "extract", "MAX_DECOMPRESSION_RATIO"),
    FailsWith("2-mib-line", "/long-line.ndjson", "ndjson", "extract", "MAX_RECORD_LENGTH"),
    FailsWith("41-deep-json", "/deep.ndjson", "ndjson", "extract", "MAX_SOURCE_JSON_DEPTH"),
    FailsWith("5000-columns", "/wide.csv", "csv", "extract", "MAX_SOURCE_FIELDS"),
    FailsWith("truncated-gzip", "/truncated.csv.gz", "csv", "extract", "is unreadable"),
    FailsWith("not-utf8", "/latin1.csv", "csv", "extract", "not UTF-8"),
    # a refused address reads like a closed port: the error tells no one what is listening where
    FailsWith("redirect-to-metadata", "/to-metadata.csv", "csv", "extract", "the host is not reachable from Busline"),
    FailsWith("redirect-to-private", "/to-private.csv", "csv", "extract", "the host is not reachable from Busline"),
    FailsWith("redirect-loop", "/loop.csv", "csv", "extract", "more than 5 redirects"),
]

# Refused at submit (judged without fetching anything): every spelling of a non-public address.
REFUSED_AT_SUBMIT = {
    "metadata": "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "metadata-ipv4-mapped": "http://[::ffff:169.254.169.254]/latest/meta-data/",
    "metadata-decimal": "http://2852039166/latest/meta-data/",
    "metadata-octal": "http://0251.0376.0251.0376/latest/meta-data/",
    "metadata-ipv6": "http://[fd00:ec2::254]/latest/meta-data/",
    "private-https": "https://10.0.0.1/orders.csv",
    "cgnat": "https://100.64.0.1/orders.csv",
    "multicast": "https://224.0.0.1/orders.csv",
    "unique-local": "https://[fd12:3456::1]/orders.csv",
    "credentials": "http://user:secret@127.0.0.1:9/orders.csv",
    "file": "file:///etc/passwd",
    "gopher": "gopher://127.0.0.1:6379/_INFO",
    "plain-http-public": "http://example.com/orders.csv",
}


def _names_source_uri(body: Any) -> bool:
    """A 400 names it as errors[].field, a 422 (the request model) as detail[].loc."""
    fields = [error.get("field") for error in body.get("errors", [])]
    locations = [".".join(map(str, error.get("loc", [])[-2:])) for error in body.get("detail", [])]
    return "source.uri" in fields + locations


def test_urls_to_non_public_addresses_are_refused_at_submit_naming_the_field(api: Any) -> None:
    # Given alice's tasks so far
    before = len(api.all_tasks())
    # When a spec naming each URL is submitted
    answers = {
        name: api.call("POST", "/tasks", _spec(uri, "csv", "attack_refused")) for name, uri in REFUSED_AT_SUBMIT.items()
    }
    # Then each is a 4xx naming source.uri, none a 5xx, and nothing was recorded
    assert {name: answer.status for name, answer in answers.items() if answer.status >= 500} == {}
    assert {name for name, answer in answers.items() if answer.status in (400, 422)} == set(REFUSED_AT_SUBMIT)
    for name, answer in answers.items():
        assert _names_source_uri(answer.body), (name, answer.text)
    assert len(api.all_tasks()) == before


@pytest.fixture(scope="module")
def attack_runs(api: Any, loopback: Served) -> dict[str, dict[str, Any]]:
    """Every hostile source submitted at once (they run side by side), then each one's final snapshot."""
    task_ids: dict[str, str] = {}
    for attack in FAILING:
        spec = _spec(loopback.base + attack.path, attack.fmt, _table_of(attack.name))
        task_ids[attack.name] = api.submit(spec)
    join_spec = _spec(
        loopback.base + "/values.ndjson",
        "ndjson",
        "attack_join_redirect",
        joins=[
            {
                "name": "refs",
                "uri": loopback.base + "/to-metadata.csv",
                "on": {"id": "code"},
                "columns": [{"name": "name", "as": "ref_name"}],
            }
        ],
    )
    task_ids["join-redirect-to-metadata"] = api.submit(join_spec)
    values_spec = _spec(
        loopback.base + "/values.ndjson",
        "ndjson",
        "attack_values",
        columns=[
            *COLUMNS,
            {"name": "amount", "type": "decimal"},
            {"name": "at", "type": "timestamp"},
        ],
    )
    task_ids["values"] = api.submit(values_spec)
    return {name: api.wait_terminal(task_id) for name, task_id in task_ids.items()}


def test_each_hostile_source_fails_its_task_naming_the_limit_or_reason(
    attack_runs: dict[str, dict[str, Any]], pg: psycopg.Connection[Any]
) -> None:
    # Then every hostile source FAILED, for good, in extract, naming its limit or reason
    outcomes = {name: (run["status"], (run["error"] or {}).get("phase")) for name, run in attack_runs.items()}
    expected = {attack.name: ("FAILED", attack.phase) for attack in FAILING}
    expected["join-redirect-to-metadata"] = ("FAILED", "transform")
    expected["values"] = ("SUCCEEDED", None)
    assert outcomes == expected
    for attack in FAILING:
        message = attack_runs[attack.name]["error"]["message"]
        assert attack.says in message, (attack.name, message)
    join_error = attack_runs["join-redirect-to-metadata"]["error"]["message"]
    assert "the host is not reachable from Busline" in join_error, join_error
    # And none of the failed tasks wrote a row (extract failures never create their table)
    owner = attack_runs["values"]["owner"]
    failed_tables = [_table_of(attack.name) for attack in FAILING] + ["attack_join_redirect"]
    rows = {}
    for table in failed_tables:
        (exists,) = pg.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s AND table_name = %s",
            (schema_for(owner), table),
        ).fetchone() or (0,)
        if exists:
            rows[table] = pg.execute(sql.SQL("SELECT count(*) FROM {}").format(owner_table(owner, table))).fetchone()
    assert all(count == (0,) for count in rows.values()), rows


def test_values_postgres_would_refuse_are_rejected_with_their_column_and_the_rest_load(
    api: Any, attack_runs: dict[str, dict[str, Any]], pg: psycopg.Connection[Any]
) -> None:
    run = attack_runs["values"]
    # Then 8 rows were read, 6 rejected and 2 loaded
    assert run["counts"] == {"read": 8, "filtered": 0, "rejected": 6, "loaded": 2, "deleted": 0}
    # And each reject names its row and the column that Postgres would refuse
    reasons = {reject["row"]: reject["reason"] for reject in api.all_rejects(run["taskId"])}
    assert sorted(reasons) == [2, 3, 4, 5, 6, 8]
    assert {row: reason.split(":")[0] for row, reason in reasons.items()} == {
        2: "column note",
        3: "column note",
        4: "column id",
        5: "column amount",
        6: "column at",
        8: "column amount",
    }
    # And the loaded rows are the two good ones, the timestamp with a seconds offset as its UTC instant
    rows = pg.execute(
        sql.SQL("SELECT id, note, at::text FROM {} ORDER BY id").format(owner_table(run["owner"], "attack_values"))
    ).fetchall()
    assert [(row[0], row[1]) for row in rows] == [(1, "fine"), (7, "offset with seconds")]


def test_no_attack_answer_was_a_server_error(api: Any, attack_runs: dict[str, dict[str, Any]]) -> None:
    # Given every attack task, read back through the API as its owner
    statuses = {name: api.call("GET", f"/tasks/{run['taskId']}").status for name, run in attack_runs.items()}
    rejects = {
        name: api.call("GET", f"/tasks/{run['taskId']}/rejects?limit=100").status for name, run in attack_runs.items()
    }
    # Then every read is a 200
    assert set(statuses.values()) == {200} and set(rejects.values()) == {200}


def test_the_served_bombs_are_bombs(loopback: Served) -> None:
    # (of the fixture, not the app) both inflate past the ratio limit, so their tasks test the limit
    for path in ("/gzip-bomb.csv.gz", "/zip-bomb.zip"):
        assert BOMB_BYTES / len(loopback.files[path][2]) > MAX_DECOMPRESSION_RATIO, path
