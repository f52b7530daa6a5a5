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

import contextlib
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import psycopg
import pyarrow as pa
import pyarrow.csv as arrow_csv
from psycopg import sql

from . import tenancy
from .contracts import LoadOutcome
from .errors import DataRefused, LoadFailed
from .spec import POSTGRES_TYPES, OutputColumn, TargetSpec
from .tenancy import LEDGER, TableRef
from .transform import output_schema_of

_STAGE_TABLE = "busline_stage"
_ORDINAL_COLUMN = "busline_ordinal_"  # position of a row in its chunk: the last duplicate wins
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
    """One connection per warm Lambda container, opened lazily and replaced when it breaks."""

    def __init__(self, database_url: str, *, connect_timeout: int = 10) -> None:
        self._database_url = database_url
        self._connect_timeout = connect_timeout
        self._connection: psycopg.Connection[Any] | None = None
        # Lambda runs one invocation at a time per container, but tests and the local cloud may
        # share an instance between threads; transactions must not interleave on one connection.
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._discard()

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
        ledger row (see the module doc)."""
        names = [column.name for column in columns]
        table = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(list(rows), output_schema_of(columns))
        where = f"table {target.table}, chunk {chunk}"

        def load(connection: psycopg.Connection[Any]) -> LoadOutcome:
            nonlocal where  # errors name the table written once the catalog has said which it is
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
                written = self._write_rows(cursor, ref, target, names, table) if table.num_rows else 0
                cursor.execute(
                    sql.SQL(
                        "UPDATE {} SET rows = %s, loaded_at = now() WHERE task_id = %s AND chunk = %s"
                    ).format(LEDGER),
                    (written, task_id, chunk),
                )
                return LoadOutcome(rows=written, already_loaded=False)

        return self._run(lambda: where, load)

    # --- internals ------------------------------------------------------------------------------

    @staticmethod
    def _write_rows(
        cursor: psycopg.Cursor[Any],
        ref: TableRef,
        target: TargetSpec,
        names: list[str],
        table: pa.Table,
    ) -> int:
        stage = sql.Identifier(_STAGE_TABLE)
        ordinal = sql.Identifier(_ORDINAL_COLUMN)
        column_list = sql.SQL(", ").join(map(sql.Identifier, names))
        key_list = sql.SQL(", ").join(map(sql.Identifier, target.key))
        cursor.execute(
            sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(
                stage, ref.identifier
            )
        )
        cursor.execute(sql.SQL("ALTER TABLE {} ADD COLUMN {} bigint").format(stage, ordinal))
        ordered = table.select(names).append_column(
            _ORDINAL_COLUMN, pa.array(range(1, table.num_rows + 1), pa.int64())
        )
        sink = pa.BufferOutputStream()
        arrow_csv.write_csv(ordered, sink, _CSV_OPTIONS)
        statement = sql.SQL("COPY {} ({}, {}) FROM STDIN (FORMAT csv)").format(stage, column_list, ordinal)
        with cursor.copy(statement) as copy:
            copy.write(memoryview(sink.getvalue()))

        if target.mode == "insert":
            cursor.execute(
                sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ORDER BY {}").format(
                    ref.identifier, column_list, column_list, stage, ordinal
                )
            )
        else:
            non_key = [name for name in names if name not in target.key]
            on_conflict = (
                sql.SQL("DO UPDATE SET {}").format(
                    sql.SQL(", ").join(
                        sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(name), sql.Identifier(name))
                        for name in non_key
                    )
                )
                if non_key
                else sql.SQL("DO NOTHING")
            )
            # DISTINCT ON keeps one row per key (the last in the chunk): ON CONFLICT DO UPDATE may not
            # touch the same row twice in one statement.
            cursor.execute(
                sql.SQL(
                    "INSERT INTO {} ({}) SELECT DISTINCT ON ({}) {} FROM {} ORDER BY {}, {} DESC "
                    "ON CONFLICT ({}) {}"
                ).format(
                    ref.identifier,
                    column_list,
                    key_list,
                    column_list,
                    stage,
                    key_list,
                    ordinal,
                    key_list,
                    on_conflict,
                )
            )
        return cursor.rowcount

    def _connect(self) -> psycopg.Connection[Any]:
        if self._connection is not None and not self._connection.closed and not self._connection.broken:
            return self._connection
        self._discard()
        try:
            self._connection = psycopg.connect(
                self._database_url,
                autocommit=True,  # transactions are explicit (connection.transaction())
                connect_timeout=self._connect_timeout,
                application_name="busline",
                # Server-side prepared statements break behind transaction poolers (RDS Proxy, PgBouncer).
                prepare_threshold=None,
            )
        except psycopg.Error as exc:
            raise LoadFailed(f"cannot connect to the warehouse: {_first_line(exc)}") from exc
        return self._connection

    def _discard(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(psycopg.Error):
                self._connection.close()
            self._connection = None

    def _run(self, what: str | Callable[[], str], operation: Callable[[psycopg.Connection[Any]], T]) -> T:
        """`what` names the operation in an error; a callable, when the operation learns the name as it goes."""
        with self._lock:
            for attempt in (1, 2):
                connection = self._connect()
                try:
                    return operation(connection)
                except psycopg.OperationalError as exc:
                    # A connection the server dropped (restart, idle timeout while the container was
                    # frozen) is replaced once; the ledger makes re-running the operation safe.
                    if attempt == 1 and connection.broken:
                        self._discard()
                        continue
                    raise LoadFailed(f"{_name(what)}: {_describe(exc)}") from exc
                except (psycopg.DataError, psycopg.IntegrityError) as exc:
                    raise DataRefused(f"{_name(what)}: {_describe(exc)}") from exc
                except psycopg.Error as exc:
                    raise LoadFailed(f"{_name(what)}: {_describe(exc)}") from exc
        raise AssertionError("unreachable")


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
