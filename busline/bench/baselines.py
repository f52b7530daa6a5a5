"""What the pipeline is measured against, in the same run and on the same Postgres.

- the DuckDB script: what a data engineer would write instead of the pipeline. One process reads
  flights.csv, filters and joins with DuckDB, and loads Postgres the way the load step's first load does
  (the table is new and empty, as the pipeline's is): the rows COPYed straight into the table, its primary
  key dropped before and built after (the pipeline's staging table becomes the table: warehouse._swap_in);
- Postgres COPY: the pipeline's own result copied into an unkeyed table, the fastest any load can be.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from busline.bench.sources import unzip_flights

DUCKDB_TABLE = "flights_duckdb"
COPY_TABLE = "flights_copy_floor"
COPY_BLOCK = 1 << 20
# The spec's column types, as DuckDB reads them from the csv.
DUCKDB_TYPES = {
    "string": "VARCHAR",
    "int": "BIGINT",
    "float": "DOUBLE",
    "decimal": "DECIMAL(38, 10)",
    "bool": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMPTZ",
}


@dataclass
class DuckdbResult:
    seconds: float  # the whole script: DuckDB's part + Postgres' part
    duckdb_seconds: float  # read, count, filter, join, write the csv to load
    postgres_seconds: float  # COPY into the table, key built, commit
    unzip_seconds: float  # not in `seconds`: the engineer starts from flights.csv
    threads: int
    read: int
    filtered: int
    rejected: int
    loaded: int

    def counts(self) -> dict[str, int]:
        return {
            "read": self.read,
            "filtered": self.filtered,
            "rejected": self.rejected,
            "loaded": self.loaded,
            "deleted": 0,  # the script loads a new table; it never deletes (the pipeline's mode "upsert" neither)
        }


@dataclass
class CopyResult:
    seconds: float  # COPY … FROM STDIN and its commit only
    rows: int
    bytes: int


def _literal(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def run_duckdb_script(database_url: str, rows: int | None, work_dir: Path) -> DuckdbResult:
    """The single-process script, timed from DuckDB's first statement to Postgres' commit."""
    import duckdb
    import psycopg
    from busline_core.pipelines import expand_pipeline
    from busline_core.spec import POSTGRES_TYPES, output_columns
    from psycopg import sql

    from busline.localcloud.demo import demo_data_dir

    spec = expand_pipeline("flights", {"table": DUCKDB_TABLE}, "baseline")
    airlines, airports = (spec.joins[0], spec.joins[1])
    data = demo_data_dir()
    columns = output_columns(spec)
    names = [column.name for column in columns]

    with tempfile.TemporaryDirectory(dir=work_dir, prefix="duckdb-") as scratch:
        started = time.monotonic()
        flights_csv = unzip_flights(Path(scratch) / "flights.csv", rows)
        unzip_seconds = time.monotonic() - started
        joined_csv = Path(scratch) / "joined.csv"
        with flights_csv.open("rb") as stream:
            header = stream.readline().decode().strip().split(",")
        if header != [column.name for column in spec.columns]:
            raise RuntimeError(f"flights.csv has columns {header}, the flights spec reads others")

        types = ", ".join(f"'{column.name}': '{DUCKDB_TYPES[column.type]}'" for column in spec.columns)
        nulls = ", ".join("'" + value.replace("'", "''") + "'" for value in spec.source.nullValues)
        (carrier_on,) = airlines.on.items()
        (dest_on,) = airports.on.items()
        flight_columns = ", ".join(f'f."{column.name}"' for column in spec.columns)
        join_columns = ", ".join(
            f'{alias}."{column.name}" AS "{column.as_}"'
            for alias, join in (("a", airlines), ("p", airports))
            for column in join.columns
        )

        started = time.monotonic()
        duck = duckdb.connect()
        duck.execute("SET TimeZone = 'UTC'")  # naive instants are UTC, as the pipeline's cast reads them
        threads = int(duck.execute("SELECT current_setting('threads')").fetchone()[0])  # type: ignore[index]
        duck.execute(
            f"CREATE TABLE flights AS SELECT * FROM read_csv({_literal(flights_csv)}, header = true, "
            f"nullstr = [{nulls}], columns = {{{types}}})"
        )
        duck.execute(
            f"CREATE TABLE airlines AS SELECT * FROM read_csv({_literal(data / 'airlines.csv')}, "
            "header = true, all_varchar = true)"
        )
        duck.execute(
            f"CREATE TABLE airports AS SELECT * FROM read_csv({_literal(data / 'airports.csv')}, "
            "header = true, all_varchar = true)"
        )
        read, filtered = duck.execute(
            "SELECT count(*), count(*) FILTER (WHERE dep_time IS NULL) FROM flights"
        ).fetchone()  # type: ignore[misc]
        missed = duck.execute(
            f"SELECT count(*) FROM flights f WHERE f.dep_time IS NOT NULL AND ("
            f'NOT EXISTS (SELECT 1 FROM airlines a WHERE a."{carrier_on[1]}" = f."{carrier_on[0]}") OR '
            f'NOT EXISTS (SELECT 1 FROM airports p WHERE p."{dest_on[1]}" = f."{dest_on[0]}"))'
        ).fetchone()[0]  # type: ignore[index]
        written = duck.execute(
            f"COPY (SELECT {flight_columns}, {join_columns} FROM flights f "
            f'JOIN airlines a ON a."{carrier_on[1]}" = f."{carrier_on[0]}" '
            f'JOIN airports p ON p."{dest_on[1]}" = f."{dest_on[0]}" '
            f"WHERE f.dep_time IS NOT NULL) TO {_literal(joined_csv)} (HEADER false)"
        ).fetchone()[0]  # type: ignore[index]
        duck.close()
        duckdb_seconds = time.monotonic() - started

        started = time.monotonic()
        table = sql.Identifier(DUCKDB_TABLE)
        column_list = sql.SQL(", ").join(map(sql.Identifier, names))
        key_list = sql.SQL(", ").join(map(sql.Identifier, spec.target.key))
        with psycopg.connect(database_url, autocommit=False) as connection, connection.cursor() as cursor:
            cursor.execute("SET TimeZone = 'UTC'")
            cursor.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
            cursor.execute(
                sql.SQL("CREATE TABLE {} ({}, PRIMARY KEY ({}))").format(
                    table,
                    sql.SQL(", ").join(
                        sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(POSTGRES_TYPES[c.type]))
                        for c in columns
                    ),
                    key_list,
                )
            )
            key_name = sql.Identifier(f"{DUCKDB_TABLE}_pkey")
            cursor.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(table, key_name))
            with (
                cursor.copy(sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(table, column_list)) as copy,
                joined_csv.open("rb") as source,
            ):
                while block := source.read(COPY_BLOCK):
                    copy.write(block)
            loaded = cursor.rowcount
            cursor.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY ({})").format(table, key_name, key_list))
            connection.commit()
        postgres_seconds = time.monotonic() - started

    if written != loaded:
        raise RuntimeError(f"DuckDB wrote {written} joined rows but Postgres inserted {loaded}")
    return DuckdbResult(
        seconds=duckdb_seconds + postgres_seconds,
        duckdb_seconds=duckdb_seconds,
        postgres_seconds=postgres_seconds,
        unzip_seconds=unzip_seconds,
        threads=threads,
        read=int(read),
        filtered=int(filtered),
        rejected=int(missed),
        loaded=int(loaded),
    )


def run_copy_floor(database_url: str, source: Any, work_dir: Path) -> CopyResult:
    """COPY the table `source` (a psycopg.sql.Composable: the pipeline's result) out to a file, then time
    only COPY … FROM STDIN of that file into a new table without key or index, and its commit."""
    import psycopg
    from psycopg import sql

    target = sql.Identifier(COPY_TABLE)
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="copy-") as scratch:
        dump = Path(scratch) / "rows.copy"
        with psycopg.connect(database_url, autocommit=True) as connection, connection.cursor() as cursor:
            cursor.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(target))
            # LIKE copies columns and NOT NULL only: no primary key, no index
            cursor.execute(sql.SQL("CREATE TABLE {} (LIKE {})").format(target, source))
            with dump.open("wb") as sink, cursor.copy(sql.SQL("COPY {} TO STDOUT").format(source)) as copy:
                for block in copy:
                    sink.write(block)
        size = dump.stat().st_size
        with psycopg.connect(database_url, autocommit=False) as connection, connection.cursor() as cursor:
            started = time.monotonic()
            with cursor.copy(sql.SQL("COPY {} FROM STDIN").format(target)) as copy, dump.open("rb") as stream:
                while block := stream.read(COPY_BLOCK):
                    copy.write(block)
            rows = cursor.rowcount
            connection.commit()
            seconds = time.monotonic() - started
    return CopyResult(seconds=seconds, rows=int(rows), bytes=size)
