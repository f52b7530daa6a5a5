"""Runs a pipeline's dashboard queries in Postgres, each read-only, bounded and in the owner's schema
(the rules are dashboards.py's)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from . import tenancy
from .dashboards import ChartPoint, Dashboard, DashboardChart, DashboardQuery, chart_value, measure
from .errors import WarehouseUnavailable
from .limits import DASHBOARD_STATEMENT_TIMEOUT_MS, MAX_DASHBOARD_ROWS
from .pg_connection import LazyConnection


class DashboardReader:
    """Reads through one connection per warm API container (pg_connection.py), opened on the first dashboard."""

    def __init__(
        self,
        database_url: str,
        *,
        row_cap: int = MAX_DASHBOARD_ROWS,
        timeout_ms: int = DASHBOARD_STATEMENT_TIMEOUT_MS,
        connect_timeout: int = 5,
    ) -> None:
        self._db = LazyConnection(database_url, application_name="busline-dashboard", connect_timeout=connect_timeout)
        self._row_cap = row_cap
        self._timeout_ms = timeout_ms

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> DashboardReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def dashboard(
        self, pipeline: str, owner: str, table: str, queries: Sequence[DashboardQuery]
    ) -> Dashboard:
        with self._db.lock:
            for attempt in (1, 2):
                connection = self._connect()
                try:
                    return self._read(connection, pipeline, owner, table, queries)
                except psycopg.OperationalError as exc:
                    # a connection dropped while the container was frozen is replaced once
                    self._db.discard()
                    if attempt == 2 or not connection.broken:
                        raise WarehouseUnavailable(
                            f"the warehouse cannot be read right now: {_first_line(exc)}"
                        ) from exc
        raise AssertionError("unreachable")

    def _read(
        self,
        connection: psycopg.Connection[Any],
        pipeline: str,
        owner: str,
        table: str,
        queries: Sequence[DashboardQuery],
    ) -> Dashboard:
        ref = self._owner_table(connection, owner, table)
        if ref is None:
            return Dashboard(pipeline=pipeline, table=table, loaded=False, charts=[])
        charts = [self._chart(connection, ref, query) for query in queries]
        return Dashboard(
            pipeline=pipeline,
            table=table,
            loaded=True,
            rowCap=self._row_cap,
            statementTimeoutMs=self._timeout_ms,
            charts=charts,
        )

    @staticmethod
    def _owner_table(connection: psycopg.Connection[Any], owner: str, table: str) -> tenancy.TableRef | None:
        try:
            ref = tenancy.recorded_table(connection, owner, table)
        except pg_errors.UndefinedTable:  # no catalog yet: nothing was ever loaded
            return None
        if ref is None or ref.schema != tenancy.schema_for(owner):
            return None  # a mapping outside the owner's schema is never read (tenancy.resolve_table)
        return ref

    def _chart(
        self, connection: psycopg.Connection[Any], ref: tenancy.TableRef, query: DashboardQuery
    ) -> DashboardChart:
        chart = {
            "name": query.name,
            "title": query.title,
            "chart": query.chart,
            "xLabel": query.x_label,
            "yLabel": query.y_label,
        }
        statement = sql.SQL(query.sql.replace("{", "{{").replace("}", "}}").replace("{{table}}", "{table}"))
        try:
            with connection.transaction(), connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION READ ONLY")
                cursor.execute("SELECT set_config('statement_timeout', %s, true)", (str(self._timeout_ms),))
                cursor.execute("SELECT set_config('search_path', %s, true)", (ref.schema,))
                cursor.execute(statement.format(table=ref.identifier))
                if cursor.description is None or len(cursor.description) < 2:
                    return DashboardChart(
                        **chart, points=[], error="the query must return two columns: x and y"
                    )
                rows = cursor.fetchmany(self._row_cap + 1)
        except pg_errors.ReadOnlySqlTransaction:
            return DashboardChart(
                **chart, points=[], error="refused: the query writes, and a dashboard only reads"
            )
        except pg_errors.QueryCanceled:
            return DashboardChart(
                **chart, points=[], error=f"the query ran past its {self._timeout_ms} ms statement timeout"
            )
        except psycopg.OperationalError:
            raise
        except psycopg.Error as exc:
            return DashboardChart(**chart, points=[], error=f"the query failed: {_first_line(exc)}")
        points = [ChartPoint(x=chart_value(row[0]), y=measure(row[1])) for row in rows[: self._row_cap]]
        return DashboardChart(**chart, points=points, truncated=len(rows) > self._row_cap)

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            return self._db.get()
        except psycopg.Error as exc:
            raise WarehouseUnavailable(f"the warehouse cannot be reached right now: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
