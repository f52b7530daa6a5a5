"""Tenant isolation in the warehouse: each owner's tables live in the owner's own Postgres schema.

This module is the one place that names an owner's schema (`schema_for`) and the one that reads and
writes Busline's catalog, in the `busline` schema:

- `busline.tenants(owner, schema_name)`: the schema of each owner that has loaded something; the name is
  derived from the owner, and recorded so an operator can tell whose schema `t_…` is.
- `busline.tables(owner, table_name, schema_name, relation, origin, created_at)`: the tables Busline may
  write for an owner. `table_name` is what the owner's specs say; `schema_name.relation` is the table
  written. `origin` is `created` (Busline created it on the owner's first load) or `mapped` (an operator
  recorded an existing table for the owner; see "Tenancy" in docs/runbook.md).
- `busline.ledger(task_id, chunk, rows, loaded_at)`: the chunks loaded (warehouse.py's exactly-once).
- `busline.commits(task_id, outcome, loaded, deleted, rejected, closed_at)`: the tasks whose staged rows
  were merged into their target (`committed`) or thrown away (`discarded`, a cancelled task): once a task
  is here its staging table is gone and no chunk is staged for it again.

A task that commits "task" stages its chunks in `busline_stage_<md5 of the task id>`, a table in the
owner's schema beside the target, until the merge (`staging_table`).

A spec names a table, never a schema (spec.py refuses the rest), and the load step writes only into a
table the catalog records for the task's owner inside the owner's schema; anything else is a
TargetRefused, which fails the task at once. The load function's database role owns these schemas and
has no rights elsewhere (the GRANTs are in the README), so a mistake here cannot reach other data.
Every identifier is composed with psycopg.sql.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from psycopg import sql

from .errors import TargetRefused

CATALOG_SCHEMA = "busline"
TENANTS = sql.Identifier(CATALOG_SCHEMA, "tenants")
TABLES = sql.Identifier(CATALOG_SCHEMA, "tables")
LEDGER = sql.Identifier(CATALOG_SCHEMA, "ledger")
COMMITS = sql.Identifier(CATALOG_SCHEMA, "commits")
STAGING_PREFIX = "busline_stage_"

TENANT_SCHEMA_PREFIX = "t_"
# 24 hex digits = 96 bits: two owners sharing a schema by accident is out of reach, and the name stays
# short (26 characters, under Postgres' 63). A collision would still be caught: schema_name is unique.
_HASH_DIGITS = 24

Origin = Literal["created", "mapped"]

_CATALOG_DDL = [
    sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} (owner text PRIMARY KEY, schema_name text NOT NULL UNIQUE, "
        "created_at timestamptz NOT NULL DEFAULT now())"
    ).format(TENANTS),
    sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} (owner text NOT NULL REFERENCES {} (owner), table_name text NOT NULL, "
        "schema_name text NOT NULL, relation text NOT NULL, "
        "origin text NOT NULL CHECK (origin IN ('created', 'mapped')), "
        "created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (owner, table_name), "
        "UNIQUE (schema_name, relation))"
    ).format(TABLES, TENANTS),
    sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} (task_id text NOT NULL, chunk integer NOT NULL, rows integer NOT NULL, "
        "loaded_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (task_id, chunk))"
    ).format(LEDGER),
    sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} (task_id text PRIMARY KEY, "
        "outcome text NOT NULL CHECK (outcome IN ('committed', 'discarded')), loaded bigint NOT NULL DEFAULT 0, "
        "deleted bigint NOT NULL DEFAULT 0, rejected bigint NOT NULL DEFAULT 0, "
        "closed_at timestamptz NOT NULL DEFAULT now())"
    ).format(COMMITS),
]


def schema_for(owner: str) -> str:
    """The Postgres schema of `owner`'s tables: stable, a lower-case identifier that never needs quoting.

    Hashed rather than spelled out: an owner is a Cognito `sub` or an app client id, which may be longer
    than an identifier, and a schema name should not reveal who it belongs to.
    """
    if not owner:
        raise ValueError("a task without an owner has no schema")
    digest = hashlib.sha256(owner.encode("utf-8")).hexdigest()[:_HASH_DIGITS]
    return f"{TENANT_SCHEMA_PREFIX}{digest}"


def owner_table(owner: str, table: str) -> sql.Identifier:
    """The qualified name of the table Busline created as `table` for `owner` (for reading it back)."""
    return sql.Identifier(schema_for(owner), table)


@dataclass(frozen=True)
class TableRef:
    """A table the catalog lets Busline write for an owner."""

    owner: str
    table: str  # the name the owner's specs use
    schema: str
    relation: str
    origin: Origin

    @property
    def identifier(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.relation)

    def __str__(self) -> str:
        return f"{self.schema}.{self.relation}"


def staging_table(ref: TableRef, task_id: str) -> sql.Identifier:
    """Where a task that commits "task" stages its rows: beside its target, in the owner's schema (so the
    owner's rights and quota cover it), named so no target can be (spec.RESERVED_TABLE_PREFIX)."""
    return sql.Identifier(ref.schema, STAGING_PREFIX + hashlib.md5(task_id.encode("utf-8")).hexdigest())


def task_lock(connection: psycopg.Connection[Any], task_id: str, *, shared: bool) -> None:
    """Until the transaction ends: chunks staging rows hold it shared, the merge or discard exclusive, so a
    chunk never stages into a table that a merge or discard is closing (tenancy's module doc)."""
    function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    connection.execute(
        sql.SQL("SELECT {}(hashtextextended(%s, 0))").format(sql.Identifier(function)), (f"busline:task:{task_id}",)
    )


def advisory_lock(connection: psycopg.Connection[Any], name: str) -> None:
    """Serialise creators until the transaction ends: CREATE … IF NOT EXISTS is not safe against
    concurrent creators (duplicate pg_type rows), and the catalog check-then-insert is not either."""
    connection.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"busline:{name}",))


def ensure_catalog(connection: psycopg.Connection[Any]) -> None:
    """Create the `busline` schema and its tables if missing (inside the caller's transaction)."""
    present = connection.execute(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname IN ('tenants', 'tables', 'ledger', 'commits')",
        (CATALOG_SCHEMA,),
    ).fetchone()
    if present is not None and present[0] == len(_CATALOG_DDL):
        return  # the usual case: no lock, and no CREATE privilege needed
    advisory_lock(connection, "catalog")
    if not _schema_exists(connection, CATALOG_SCHEMA):
        connection.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(CATALOG_SCHEMA)))
    for statement in _CATALOG_DDL:
        connection.execute(statement)


def tenant_schema(connection: psycopg.Connection[Any], owner: str) -> str:
    """The owner's schema, recorded in the catalog and created on first use (caller's transaction)."""
    if not owner:
        raise TargetRefused("the task has no owner, so it has no schema to load into")
    wanted = schema_for(owner)
    advisory_lock(connection, f"tenant:{owner}")
    connection.execute(
        sql.SQL("INSERT INTO {} (owner, schema_name) VALUES (%s, %s) ON CONFLICT DO NOTHING").format(TENANTS),
        (owner, wanted),
    )
    recorded = connection.execute(
        sql.SQL("SELECT schema_name FROM {} WHERE owner = %s").format(TENANTS), (owner,)
    ).fetchone()
    if recorded is None:
        raise TargetRefused(f"schema {wanted} is recorded in {CATALOG_SCHEMA}.tenants for another owner")
    if recorded[0] != wanted:
        raise TargetRefused(
            f"{CATALOG_SCHEMA}.tenants records schema {recorded[0]} for this owner; "
            f"Busline only writes an owner's tables into the owner's schema {wanted}"
        )
    if not _schema_exists(connection, wanted):
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(wanted)))
    return wanted


def claim_table(connection: psycopg.Connection[Any], owner: str, table: str) -> tuple[TableRef, bool]:
    """The table Busline writes as `table` for `owner`, and whether it has yet to be created.

    A table the catalog does not record is created in the owner's schema and recorded, unless something
    of that name is already there: Busline never adopts a table on its own (an operator maps it).
    Runs in the caller's transaction, which must go on to create the table when asked to.
    """
    schema = tenant_schema(connection, owner)
    advisory_lock(connection, f"table:{owner}:{table}")
    ref = recorded_table(connection, owner, table)
    if ref is None:
        ref = TableRef(owner=owner, table=table, schema=schema, relation=table, origin="created")
        if _relation_exists(connection, ref):
            raise TargetRefused(
                f"table {ref} already exists, but Busline did not create it and no operator mapped it to "
                f"this owner in {CATALOG_SCHEMA}.tables; choose another table, or ask an operator to map it "
                "(docs/runbook.md, Tenancy)"
            )
        connection.execute(
            sql.SQL(
                "INSERT INTO {} (owner, table_name, schema_name, relation, origin) VALUES (%s, %s, %s, %s, %s)"
            ).format(TABLES),
            (owner, table, ref.schema, ref.relation, ref.origin),
        )
        return ref, True
    _check_inside(ref, schema)
    if _relation_exists(connection, ref):
        return ref, False
    if ref.origin == "mapped":
        raise TargetRefused(f"table {table} is mapped to {ref}, which does not exist")
    return ref, True  # created by Busline, then dropped: created again


def resolve_table(connection: psycopg.Connection[Any], owner: str, table: str) -> TableRef:
    """The table to write `table` into for `owner`, as the catalog says right now (each chunk asks again,
    so a mapping an operator removed stops the writes of warm containers too)."""
    ref = recorded_table(connection, owner, table)
    if ref is None:
        raise TargetRefused(f"table {table} is not recorded for this owner in {CATALOG_SCHEMA}.tables")
    _check_inside(ref, schema_for(owner))
    return ref


def recorded_table(connection: psycopg.Connection[Any], owner: str, table: str) -> TableRef | None:
    row = connection.execute(
        sql.SQL("SELECT schema_name, relation, origin FROM {} WHERE owner = %s AND table_name = %s").format(TABLES),
        (owner, table),
    ).fetchone()
    if row is None:
        return None
    schema, relation, origin = row
    return TableRef(owner=owner, table=table, schema=schema, relation=relation, origin=origin)


def _check_inside(ref: TableRef, schema: str) -> None:
    if ref.schema != schema:
        raise TargetRefused(
            f"{CATALOG_SCHEMA}.tables maps table {ref.table} of this owner to {ref}, outside the owner's "
            f"schema {schema}; Busline only writes inside it"
        )


def _schema_exists(connection: psycopg.Connection[Any], schema: str) -> bool:
    # Asked first because CREATE SCHEMA IF NOT EXISTS needs the CREATE privilege even when it exists.
    return connection.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is not None


def _relation_exists(connection: psycopg.Connection[Any], ref: TableRef) -> bool:
    # Any relation counts (a view too): the name is taken either way.
    return (
        connection.execute(
            "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s",
            (ref.schema, ref.relation),
        ).fetchone()
        is not None
    )
