"""Load typed chunks into Postgres, exactly once per (task, chunk), however often SQS delivers them.

The ledger row of a chunk is written in the same transaction as the chunk's rows, so a redelivered
or replayed chunk finds its ledger row and loads nothing. Rows go in with COPY into a temporary table
(the fastest path Postgres offers) and from there into the target with one INSERT … SELECT. The chunk is
an Arrow table, written to COPY as CSV by Arrow's own writer: no Python loop per row.
Which table a task may write, in which schema, is tenancy.py's business: a target is always a table the
catalog records for the task's owner, inside the owner's schema.
Every identifier is composed with psycopg.sql; no SQL is built by string formatting.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as arrow_csv
from psycopg import sql

from . import tenancy
from .contracts import LoadOutcome, Reject
from .errors import DataRefused, LoadFailed
from .limits import MAX_REJECTS_KEPT_PER_CHUNK
from .pg_connection import LazyConnection
from .spec import POSTGRES_TYPES, OutputColumn, TargetSpec
from .tenancy import COMMITS, LEDGER, TableRef
from .transform import output_schema_of

_STAGE_TABLE = "busline_stage"
# Where a staged row came from: its chunk and its position there. Of two rows with one key, the later in
# the source (chunk, then position) wins an upsert; the earlier one is kept by an insert.
_CHUNK_COLUMN = "busline_chunk_"
_ORDINAL_COLUMN = "busline_ordinal_"
# Strings are always quoted and nulls left empty, which is how Postgres' CSV tells NULL from ''.
_CSV_OPTIONS = arrow_csv.WriteOptions(include_header=False, quoting_style="needed", batch_size=4096)

# information_schema.columns.data_type of each Postgres type we create
_INFORMATION_SCHEMA_TYPES: dict[str, str] = {
    "text": "text",
    "bigint": "bigint",
    "double precision": "double precision",
    "numeric": "numeric",
    "boolean": "boolean",
    "date": "date",
    "timestamptz": "timestamp with time zone",
}

T = TypeVar("T")


class Warehouse:
    """Writes through one connection per warm Lambda container (pg_connection.py)."""

    def __init__(self, database_url: str, *, connect_timeout: int = 10) -> None:
        self._db = LazyConnection(database_url, application_name="busline", connect_timeout=connect_timeout)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- operations -----------------------------------------------------------------------------

    def ensure_table(self, owner: str, target: TargetSpec, columns: Sequence[OutputColumn]) -> None:
        """Make `target.table` a table `owner` may load: the catalog, the owner's schema and the table
        (PRIMARY KEY = target.key) are created and recorded if missing.

        An existing table must already have every column with the same type: loading into a table
        of another shape would fail chunk after chunk with a less helpful message.
        """
        names = [column.name for column in columns]
        missing_key = [key for key in target.key if key not in names]
        if missing_key:
            raise LoadFailed(
                f"table {target.table}: key column {', '.join(missing_key)} is not among the columns"
            )

        def create(connection: psycopg.Connection[Any]) -> None:
            with connection.transaction():
                tenancy.ensure_catalog(connection)
                ref, missing = tenancy.claim_table(connection, owner, target.table)
                if missing:
                    definitions = [
                        sql.SQL("{} {}").format(sql.Identifier(column.name), sql.SQL(POSTGRES_TYPES[column.type]))
                        for column in columns
                    ]
                    connection.execute(
                        sql.SQL("CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({}))").format(
                            ref.identifier,
                            sql.SQL(", ").join(definitions),
                            sql.SQL(", ").join(map(sql.Identifier, target.key)),
                        )
                    )
                existing = dict(
                    connection.execute(
                        "SELECT column_name, data_type FROM information_schema.columns "
                        "WHERE table_schema = %s AND table_name = %s",
                        (ref.schema, ref.relation),
                    ).fetchall()
                )
                for column in columns:
                    wanted = _INFORMATION_SCHEMA_TYPES[POSTGRES_TYPES[column.type]]
                    found = existing.get(column.name)
                    if found is None:
                        raise LoadFailed(f"table {ref} exists without column {column.name}")
                    if found != wanted:
                        raise LoadFailed(
                            f"table {ref}: column {column.name} is {found}, the spec needs {wanted}"
                        )

        self._run(f"table {target.table}", create)

    def load_chunk(
        self,
        task_id: str,
        chunk: int,
        owner: str,
        target: TargetSpec,
        columns: Sequence[OutputColumn],
        rows: pa.Table | Iterable[Mapping[str, Any]],
    ) -> LoadOutcome:
        """Write one chunk's rows (a transformed Arrow table, or typed dicts) in ONE transaction with its
        ledger row (see the module doc): into the target (commit "chunk"), or into the task's staging
        table (commit "task"), which `commit_task` merges into the target at the end."""
        names = [column.name for column in columns]
        table = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(list(rows), output_schema_of(columns))
        where = f"table {target.table}, chunk {chunk}"
        staged = target.commit == "task"

        def load(connection: psycopg.Connection[Any]) -> LoadOutcome:
            nonlocal where  # errors name the table written once the catalog has said which it is
            if staged and not self._stage_ready(connection, owner, target, task_id):
                return LoadOutcome(rows=0, already_loaded=True)  # the task was cancelled meanwhile
            with connection.transaction(), connection.cursor() as cursor:
                cursor.execute(
                    sql.SQL(
                        "INSERT INTO {} (task_id, chunk, rows, loaded_at) VALUES (%s, %s, 0, now()) "
                        "ON CONFLICT DO NOTHING RETURNING rows"
                    ).format(LEDGER),
                    (task_id, chunk),
                )
                if cursor.fetchone() is None:
                    # Loaded by an earlier delivery (which committed before our insert returned).
                    cursor.execute(
                        sql.SQL("SELECT rows FROM {} WHERE task_id = %s AND chunk = %s").format(LEDGER),
                        (task_id, chunk),
                    )
                    recorded = cursor.fetchone()
                    return LoadOutcome(rows=int(recorded[0]) if recorded else 0, already_loaded=True)

                ref = tenancy.resolve_table(connection, owner, target.table)
                where = f"table {ref}, chunk {chunk}"
                if staged:
                    tenancy.task_lock(connection, task_id, shared=True)
                    if _closed(cursor, task_id) is not None:
                        return LoadOutcome(rows=0, already_loaded=True)
                    outcome = self._stage_rows(cursor, tenancy.staging_table(ref, task_id), names, table, chunk)
                else:
                    outcome = self._write_chunk(cursor, ref, target, names, table, chunk)
                cursor.execute(
                    sql.SQL(
                        "UPDATE {} SET rows = %s, loaded_at = now() WHERE task_id = %s AND chunk = %s"
                    ).format(LEDGER),
                    (outcome.rows, task_id, chunk),
                )
                return outcome

        return self._run(lambda: where, load)

    def commit_task(
        self, task_id: str, owner: str, target: TargetSpec, columns: Sequence[OutputColumn]
    ) -> LoadOutcome:
        """Merge the task's staged rows into its target in ONE transaction, by `target.mode`, record it in
        busline.commits and drop the staging table: the rows become visible all at once, exactly once
        (a second call returns what the first recorded). A failure rolls everything back."""
        names = [column.name for column in columns]
        where = f"table {target.table}, commit of task {task_id}"

        def commit(connection: psycopg.Connection[Any]) -> LoadOutcome:
            nonlocal where
            with connection.transaction(), connection.cursor() as cursor:
                tenancy.ensure_catalog(connection)
                tenancy.task_lock(connection, task_id, shared=False)
                recorded = _closed(cursor, task_id)
                if recorded is not None:
                    return recorded
                ref = tenancy.resolve_table(connection, owner, target.table)
                where = f"table {ref}, commit of task {task_id}"
                stage = tenancy.staging_table(ref, task_id)
                if not _exists(cursor, stage):
                    # nothing was staged (every row filtered or rejected): an empty table of the right shape
                    cursor.execute(
                        sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS)").format(stage, ref.identifier)
                    )
                    cursor.execute(
                        sql.SQL("ALTER TABLE {} ADD COLUMN {} integer, ADD COLUMN {} bigint").format(
                            stage, sql.Identifier(_CHUNK_COLUMN), sql.Identifier(_ORDINAL_COLUMN)
                        )
                    )
                outcome = _merge(cursor, ref, stage, target, names, order=(_CHUNK_COLUMN, _ORDINAL_COLUMN))
                cursor.execute(
                    sql.SQL(
                        "INSERT INTO {} (task_id, outcome, loaded, deleted, rejected) "
                        "VALUES (%s, 'committed', %s, %s, %s)"
                    ).format(COMMITS),
                    (task_id, outcome.rows, outcome.deleted, outcome.rejected),
                )
                cursor.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(stage))  # a first load may have made it the target
                return outcome

        return self._run(lambda: where, commit)

    def discard_task(self, task_id: str, owner: str, target: TargetSpec) -> bool:
        """Throw away what a cancelled task staged, and let nothing be staged for it again; True when this
        call did it. A task already committed is left as it is."""

        def discard(connection: psycopg.Connection[Any]) -> bool:
            with connection.transaction(), connection.cursor() as cursor:
                tenancy.ensure_catalog(connection)
                tenancy.task_lock(connection, task_id, shared=False)
                cursor.execute(
                    sql.SQL(
                        "INSERT INTO {} (task_id, outcome) VALUES (%s, 'discarded') ON CONFLICT DO NOTHING "
                        "RETURNING task_id"
                    ).format(COMMITS),
                    (task_id,),
                )
                if cursor.fetchone() is None:
                    return False
                ref = tenancy.recorded_table(connection, owner, target.table)
                if ref is not None:
                    cursor.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(tenancy.staging_table(ref, task_id)))
                return True

        return self._run(f"discarding what task {task_id} staged", discard)

    # --- internals ------------------------------------------------------------------------------

    @staticmethod
    def _stage_ready(connection: psycopg.Connection[Any], owner: str, target: TargetSpec, task_id: str) -> bool:
        """Create the task's staging table unless it exists; False when the task is closed (cancelled)."""
        with connection.transaction(), connection.cursor() as cursor:
            ref = tenancy.resolve_table(connection, owner, target.table)
            stage = tenancy.staging_table(ref, task_id)
            if _exists(cursor, stage):
                return True
            tenancy.task_lock(connection, task_id, shared=True)
            if _closed(cursor, task_id) is not None:
                return False
            tenancy.advisory_lock(connection, f"stage:{task_id}")  # one creator at a time
            if not _exists(cursor, stage):
                cursor.execute(
                    sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS)").format(stage, ref.identifier)
                )
                cursor.execute(
                    sql.SQL("ALTER TABLE {} ADD COLUMN {} integer NOT NULL, ADD COLUMN {} bigint NOT NULL").format(
                        stage, sql.Identifier(_CHUNK_COLUMN), sql.Identifier(_ORDINAL_COLUMN)
                    )
                )
            return True

    @staticmethod
    def _stage_rows(
        cursor: psycopg.Cursor[Any], stage: sql.Identifier, names: list[str], table: pa.Table, chunk: int
    ) -> LoadOutcome:
        if table.num_rows:
            # Built by Arrow, not from Python lists (7 ms a chunk); COPY reads the chunk as text, so int64 will do.
            ordinals = pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int64()), table.num_rows))
            ordered = table.select(names).append_column(
                _CHUNK_COLUMN, pa.repeat(pa.scalar(chunk, pa.int64()), table.num_rows)
            ).append_column(_ORDINAL_COLUMN, ordinals)
            _copy(cursor, stage, [*names, _CHUNK_COLUMN, _ORDINAL_COLUMN], ordered)
        return LoadOutcome(rows=table.num_rows, already_loaded=False)

    @staticmethod
    def _write_chunk(
        cursor: psycopg.Cursor[Any],
        ref: TableRef,
        target: TargetSpec,
        names: list[str],
        table: pa.Table,
        chunk: int,
    ) -> LoadOutcome:
        if not table.num_rows:
            return LoadOutcome(rows=0, already_loaded=False)
        stage = sql.Identifier(_STAGE_TABLE)
        cursor.execute(
            sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(
                stage, ref.identifier
            )
        )
        cursor.execute(
            sql.SQL("ALTER TABLE {} ADD COLUMN {} integer, ADD COLUMN {} bigint").format(
                stage, sql.Identifier(_CHUNK_COLUMN), sql.Identifier(_ORDINAL_COLUMN)
            )
        )
        ordered = table.select(names).append_column(
            _CHUNK_COLUMN, pa.array([chunk] * table.num_rows, pa.int32())
        ).append_column(_ORDINAL_COLUMN, pa.array(range(1, table.num_rows + 1), pa.int64()))
        _copy(cursor, stage, [*names, _CHUNK_COLUMN, _ORDINAL_COLUMN], ordered)
        return _merge(cursor, ref, stage, target, names, order=(_CHUNK_COLUMN, _ORDINAL_COLUMN))

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            return self._db.get()
        except psycopg.Error as exc:
            raise LoadFailed(f"cannot connect to the warehouse: {_first_line(exc)}") from exc

    def _run(self, what: str | Callable[[], str], operation: Callable[[psycopg.Connection[Any]], T]) -> T:
        """`what` names the operation in an error; a callable, when the operation learns the name as it goes."""
        with self._db.lock:
            for attempt in (1, 2):
                connection = self._connect()
                try:
                    return operation(connection)
                except psycopg.OperationalError as exc:
                    # A connection the server dropped (restart, idle timeout while the container was
                    # frozen) is replaced once; the ledger makes re-running the operation safe.
                    if attempt == 1 and connection.broken:
                        self._db.discard()
                        continue
                    raise LoadFailed(f"{_name(what)}: {_describe(exc)}") from exc
                except (psycopg.DataError, psycopg.IntegrityError) as exc:
                    raise DataRefused(f"{_name(what)}: {_describe(exc)}") from exc
                except psycopg.Error as exc:
                    raise LoadFailed(f"{_name(what)}: {_describe(exc)}") from exc
        raise AssertionError("unreachable")


def _exists(cursor: psycopg.Cursor[Any], relation: sql.Identifier) -> bool:
    cursor.execute("SELECT to_regclass(%s) IS NOT NULL", (relation.as_string(cursor),))
    found = cursor.fetchone()
    return bool(found and found[0])


def _closed(cursor: psycopg.Cursor[Any], task_id: str) -> LoadOutcome | None:
    """What busline.commits recorded for the task (committed or discarded); None while it is open."""
    cursor.execute(
        sql.SQL("SELECT loaded, deleted, rejected FROM {} WHERE task_id = %s").format(COMMITS), (task_id,)
    )
    found = cursor.fetchone()
    if found is None:
        return None
    return LoadOutcome(rows=int(found[0]), deleted=int(found[1]), rejected=int(found[2]), already_loaded=True)


def _copy(cursor: psycopg.Cursor[Any], into: sql.Identifier, names: list[str], table: pa.Table) -> None:
    sink = pa.BufferOutputStream()
    arrow_csv.write_csv(table, sink, _CSV_OPTIONS)
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
        into, sql.SQL(", ").join(map(sql.Identifier, names))
    )
    with cursor.copy(statement) as copy:
        copy.write(memoryview(sink.getvalue()))


def _merge(
    cursor: psycopg.Cursor[Any],
    ref: TableRef,
    stage: sql.Identifier,
    target: TargetSpec,
    names: list[str],
    *,
    order: tuple[str, str],
) -> LoadOutcome:
    """Apply the rows in `stage` to the target by `target.mode` (one statement per step, same transaction)."""
    columns = sql.SQL(", ").join(map(sql.Identifier, names))
    keys = sql.SQL(", ").join(map(sql.Identifier, target.key))
    first = sql.SQL(", ").join(sql.Identifier(name) for name in order)
    last = sql.SQL(", ").join(sql.SQL("{} DESC").format(sql.Identifier(name)) for name in order)
    matches = sql.SQL(" AND ").join(
        sql.SQL("t.{0} = s.{0}").format(sql.Identifier(key)) for key in target.key
    )
    if target.mode == "delete":
        cursor.execute(
            sql.SQL("DELETE FROM {} t USING (SELECT DISTINCT {} FROM {}) s WHERE {}").format(
                ref.identifier, keys, stage, matches
            )
        )
        return LoadOutcome(rows=0, deleted=cursor.rowcount, already_loaded=False)
    deleted = 0
    if target.mode == "replace":
        cursor.execute(
            sql.SQL("DELETE FROM {} t WHERE NOT EXISTS (SELECT 1 FROM {} s WHERE {})").format(
                ref.identifier, stage, matches
            )
        )
        deleted = cursor.rowcount
    if target.mode == "insert":
        staged_rows = _count(cursor, stage)
        rejects = _refused_inserts(cursor, ref, stage, target, names, order)
        # DISTINCT ON keeps the first row of a key in the source: the later ones are the duplicates
        cursor.execute(
            sql.SQL(
                "INSERT INTO {} ({}) SELECT DISTINCT ON ({}) {} FROM {} ORDER BY {}, {} ON CONFLICT ({}) DO NOTHING"
            ).format(ref.identifier, columns, keys, columns, stage, keys, first, keys)
        )
        loaded = cursor.rowcount
        return LoadOutcome(rows=loaded, rejected=staged_rows - loaded, rejects=rejects, already_loaded=False)
    non_key = [name for name in names if name not in target.key]
    on_conflict = (
        sql.SQL("DO UPDATE SET {}").format(
            sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(name)) for name in non_key)
        )
        if non_key
        else sql.SQL("DO NOTHING")
    )
    if _is_empty_with_unique_key(cursor, ref.identifier, target.key):
        # A first load has nothing to conflict with: a plain INSERT skips ON CONFLICT's check of every row
        # against the key's index (1.5 s instead of 2.5 s for the demo's 320,960 rows). A key staged twice
        # stops it at its savepoint, and the statements below decide. (Without a unique index on the key,
        # ON CONFLICT below refuses the table, as it always has, where a plain INSERT would not.)
        key_constraint = _own_primary_key(cursor, ref, target.key) if ref.origin == "created" else None
        try:
            with cursor.connection.transaction():
                if key_constraint is not None and _is_swappable(cursor, ref, stage, names):
                    swapped = _swap_in(cursor, ref, stage, key_constraint, keys)
                    if swapped is not None:
                        return LoadOutcome(rows=swapped, deleted=deleted, already_loaded=False)
                # A table Busline created gets its key's index built once, after the rows, which takes about
                # half the time of growing it row by row (1.0 s instead of 1.8 s for the demo's rows). The
                # table is empty, so the lock this takes until the commit keeps readers from no rows.
                if key_constraint is not None:
                    cursor.execute(
                        sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(ref.identifier, key_constraint)
                    )
                cursor.execute(
                    sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(ref.identifier, columns, columns, stage)
                )
                inserted = cursor.rowcount
                if key_constraint is not None:
                    cursor.execute(
                        sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY ({})").format(
                            ref.identifier, key_constraint, keys
                        )
                    )
            return LoadOutcome(rows=inserted, deleted=deleted, already_loaded=False)
        except psycopg.errors.UniqueViolation:
            pass
    if non_key:
        # Most tasks stage each key once: then the rows go in as they are, without sorting them all to
        # pick the last of each key (a third of the merge's time for the demo's 320,960 rows). ON CONFLICT
        # DO UPDATE refuses to touch a row twice in one statement, so a key staged twice rolls this back
        # to its savepoint, and DISTINCT ON below decides.
        try:
            with cursor.connection.transaction():
                cursor.execute(
                    sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT ({}) {}").format(
                        ref.identifier, columns, columns, stage, keys, on_conflict
                    )
                )
            return LoadOutcome(rows=cursor.rowcount, deleted=deleted, already_loaded=False)
        except psycopg.errors.CardinalityViolation:
            pass
    # DISTINCT ON keeps one row per key, the last in the source: ON CONFLICT DO UPDATE may not touch the
    # same row twice in one statement.
    cursor.execute(
        sql.SQL("INSERT INTO {} ({}) SELECT DISTINCT ON ({}) {} FROM {} ORDER BY {}, {} ON CONFLICT ({}) {}").format(
            ref.identifier, columns, keys, columns, stage, keys, last, keys, on_conflict
        )
    )
    return LoadOutcome(rows=cursor.rowcount, deleted=deleted, already_loaded=False)


def _own_primary_key(cursor: psycopg.Cursor[Any], ref: TableRef, key: Sequence[str]) -> sql.Identifier | None:
    """The name of the table's primary key when it is exactly `key` and no foreign key refers to it."""
    cursor.execute(
        "SELECT c.conname FROM pg_constraint c WHERE c.conrelid = %s::regclass AND c.contype = 'p' "
        'AND (SELECT array_agg(a.attname::text ORDER BY a.attname::text COLLATE "C") FROM pg_attribute a '
        "WHERE a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)) = %s::text[] "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint f WHERE f.confrelid = c.conrelid AND f.contype = 'f')",
        (ref.identifier.as_string(cursor), sorted(key)),
    )
    found = cursor.fetchone()
    return sql.Identifier(found[0]) if found else None


def _is_bare_twin(cursor: psycopg.Cursor[Any], ref: TableRef, stage: sql.Identifier, names: Sequence[str]) -> bool:
    """Whether the staging table could simply become the target: the target holds `names` and nothing else
    a swap would lose or bypass (a grant, a trigger, a rule, a policy, a constraint but its key, an index but
    its key's, a comment, a publication, statistics, storage options, an inheritance), and the staging
    table has the target's columns as they are now, with the same owner and persistence."""
    cursor.execute(
        "SELECT c.relkind = 'r' AND NOT c.relispartition AND c.relacl IS NULL AND c.reloptions IS NULL "
        "AND NOT c.relhastriggers AND NOT c.relhasrules AND NOT c.relrowsecurity "
        "AND c.relowner = s.relowner AND c.relpersistence = s.relpersistence AND c.reltablespace = s.reltablespace "
        "AND (SELECT count(*) FROM pg_index i WHERE i.indrelid = c.oid) = 1 "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype NOT IN ('p', 'n')) "
        "AND NOT EXISTS (SELECT 1 FROM pg_description d WHERE d.objoid = c.oid AND d.classoid = 'pg_class'::regclass) "
        "AND NOT EXISTS (SELECT 1 FROM pg_publication_rel p WHERE p.prrelid = c.oid) "
        "AND NOT EXISTS (SELECT 1 FROM pg_statistic_ext x WHERE x.stxrelid = c.oid) "
        "AND NOT EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhrelid = c.oid OR h.inhparent = c.oid), "
        "(SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a "
        " WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), "
        "(SELECT array_agg(row(a.attname, a.atttypid, a.atttypmod, a.attnotnull, a.attcollation, a.attidentity, "
        "  a.attgenerated, pg_get_expr(d.adbin, d.adrelid))::text ORDER BY a.attnum) "
        " FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
        " WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) = "
        "(SELECT array_agg(row(a.attname, a.atttypid, a.atttypmod, a.attnotnull, a.attcollation, a.attidentity, "
        "  a.attgenerated, pg_get_expr(d.adbin, d.adrelid))::text ORDER BY a.attnum) "
        " FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
        " WHERE a.attrelid = s.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attname <> ALL (%s::text[])) "
        "FROM pg_class c, pg_class s WHERE c.oid = %s::regclass AND s.oid = %s::regclass",
        ([_CHUNK_COLUMN, _ORDINAL_COLUMN], ref.identifier.as_string(cursor), stage.as_string(cursor)),
    )
    found = cursor.fetchone()
    return bool(found and found[0] and found[2] and sorted(found[1] or []) == sorted(names))


def _is_swappable(cursor: psycopg.Cursor[Any], ref: TableRef, stage: sql.Identifier, names: Sequence[str]) -> bool:
    try:
        with cursor.connection.transaction():
            return _is_bare_twin(cursor, ref, stage, names)
    except (psycopg.errors.UndefinedColumn, psycopg.errors.UndefinedTable):
        return False  # a server older than the catalog columns asked about (PostgreSQL 12): the INSERT below


def _swap_in(
    cursor: psycopg.Cursor[Any], ref: TableRef, stage: sql.Identifier, key_constraint: sql.Identifier,
    keys: sql.Composable,
) -> int | None:
    """Make the staging table the (empty, bare) target in its place, under the target's name and primary key:
    the staged rows are not written a second time, which is most of a first load's commit (0.5 to 0.8 s of
    the demo's 1.3 s). Its rows, or None when something depends on the target (a view, say) and it stays."""
    try:
        with cursor.connection.transaction():
            cursor.execute(sql.SQL("DROP TABLE {}").format(ref.identifier))  # RESTRICT: a dependent keeps it
    except psycopg.errors.DependentObjectsStillExist:
        return None
    cursor.execute(
        sql.SQL("ALTER TABLE {} DROP COLUMN {}, DROP COLUMN {}").format(
            stage, sql.Identifier(_CHUNK_COLUMN), sql.Identifier(_ORDINAL_COLUMN)
        )
    )
    cursor.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(stage, sql.Identifier(ref.relation)))
    # a key staged twice fails here, and the caller's savepoint brings the target back
    cursor.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY ({})").format(ref.identifier, key_constraint, keys))
    return _count(cursor, ref.identifier)


def _is_empty_with_unique_key(cursor: psycopg.Cursor[Any], relation: sql.Identifier, key: Sequence[str]) -> bool:
    cursor.execute(
        sql.SQL(
            "SELECT NOT EXISTS (SELECT 1 FROM {0}) AND EXISTS ("
            "SELECT 1 FROM pg_index i WHERE i.indrelid = %s::regclass AND i.indisunique "
            "AND i.indpred IS NULL AND i.indexprs IS NULL AND ("
            'SELECT array_agg(a.attname::text ORDER BY a.attname::text COLLATE "C") FROM pg_attribute a '
            "WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)) = %s::text[])"
        ).format(relation),
        (relation.as_string(cursor), sorted(key)),
    )
    found = cursor.fetchone()
    return bool(found and found[0])


def _count(cursor: psycopg.Cursor[Any], relation: sql.Identifier) -> int:
    cursor.execute(sql.SQL("SELECT count(*) FROM {}").format(relation))
    found = cursor.fetchone()
    return int(found[0]) if found else 0


def _refused_inserts(
    cursor: psycopg.Cursor[Any],
    ref: TableRef,
    stage: sql.Identifier,
    target: TargetSpec,
    names: list[str],
    order: tuple[str, str],
) -> list[Reject]:
    """The first rows an insert will refuse, with why: a key already in the table, or seen earlier in
    the task's own rows. (The count is exact either way: staged rows minus rows inserted.)"""
    keys = sql.SQL(", ").join(map(sql.Identifier, target.key))
    first = sql.SQL(", ").join(sql.Identifier(name) for name in order)
    matches = sql.SQL(" AND ").join(sql.SQL("t.{0} = r.{0}").format(sql.Identifier(key)) for key in target.key)
    cursor.execute(
        sql.SQL(
            "SELECT * FROM (SELECT s.*, row_number() OVER (PARTITION BY {} ORDER BY {}) AS busline_seen_ "
            "FROM {} s) r WHERE busline_seen_ > 1 OR EXISTS (SELECT 1 FROM {} t WHERE {}) ORDER BY {} LIMIT %s"
        ).format(keys, first, stage, ref.identifier, matches, first),
        (MAX_REJECTS_KEPT_PER_CHUNK,),
    )
    described = [column.name for column in cursor.description or ()]
    rejects = []
    for values in cursor.fetchall():
        row = dict(zip(described, values, strict=True))
        key_text = ", ".join(f"{key}={row[key]!r}" for key in target.key)
        where = "earlier in this task's rows" if row["busline_seen_"] > 1 else f"already in table {ref}"
        rejects.append(
            Reject(
                row=None,
                at=f"chunk {row[order[0]]}, row {row[order[1]]:,}",
                reason=f"insert: duplicate key ({key_text}), {where}",
                data={name: _json_value(row[name]) for name in names},
            )
        )
    return rejects


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)  # dates, timestamps, numerics: as Postgres spells them


def _name(what: str | Callable[[], str]) -> str:
    return what if isinstance(what, str) else what()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _describe(exc: psycopg.Error) -> str:
    """Postgres' message plus what names the offending key/column/row, in the table's own terms."""
    diag = exc.diag
    parts = [diag.message_primary or _first_line(exc)]
    if diag.message_detail:
        parts.append(diag.message_detail)
    if diag.column_name:
        parts.append(f"column {diag.column_name}")
    if diag.context:
        # e.g. 'COPY busline_stage, line 3, column year: "x"': line n is row n of the chunk.
        context = diag.context.strip().replace(f"COPY {_STAGE_TABLE}, line", "chunk row")
        parts.append(context)
    return "; ".join(parts)
