"""Pipeline dashboards: read-only SQL a pipeline declares over its own target table, run in the caller's
schema, answered as chart points.

A query is the pipeline author's (pipelines.py), never the caller's: the caller only picks the pipeline
and, at most, which of their own tables to read. Each query still runs as if it were untrusted:
- statically, it must be one SELECT (or WITH … SELECT) statement that names its table as `{table}`;
- it runs in a READ ONLY transaction, so Postgres itself refuses any write (`WITH d AS (DELETE …)`),
  with `statement_timeout` and `search_path` set to the owner's schema for that transaction only;
- `{table}` is replaced by the owner's table as the catalog records it (tenancy.py), never by text the
  caller sent, and at most MAX_DASHBOARD_ROWS rows are read back.
A query that fails shows its error on its own chart; the others are still drawn.
This module holds the declarations and the answer's shape; dashboard_reader.py runs the queries.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .limits import DASHBOARD_STATEMENT_TIMEOUT_MS, MAX_DASHBOARD_ROWS

ChartKind = Literal["bar", "line"]
TABLE_PLACEHOLDER = "{table}"
_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)
_READING_START = re.compile(r"(?is)^\s*(select|with)\b")


class DashboardQuery(BaseModel):
    """One chart: its SQL's first column is x, its second y (a number)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")
    title: str = Field(min_length=1, max_length=200)
    chart: ChartKind
    sql: str = Field(min_length=1, max_length=10_000)
    x_label: str = ""
    y_label: str = ""

    @field_validator("sql")
    @classmethod
    def _reads_one_table(cls, text: str) -> str:
        problem = write_problem(text)
        if problem is not None:
            raise ValueError(problem)
        if TABLE_PLACEHOLDER not in text:
            raise ValueError(f"names no {TABLE_PLACEHOLDER}: a dashboard reads its pipeline's own table")
        return text


def write_problem(text: str) -> str | None:
    """Why `text` is not one reading statement, or None. The READ ONLY transaction is the guarantee; this
    refuses the obvious cases before a connection is touched, with a clearer message."""
    code = _COMMENTS.sub(" ", text).strip().rstrip(";").strip()
    if ";" in code:
        return "is more than one statement: a dashboard query is one SELECT"
    if not _READING_START.match(code):
        return "does not start with SELECT or WITH: a dashboard query only reads"
    return None


class ChartPoint(BaseModel):
    x: str | float | int | None
    y: float | None


class DashboardChart(BaseModel):
    name: str
    title: str
    chart: ChartKind
    xLabel: str
    yLabel: str
    points: list[ChartPoint]
    truncated: bool = False  # more rows than MAX_DASHBOARD_ROWS: the first ones are drawn
    error: str | None = None  # the query failed: nothing to draw


class Dashboard(BaseModel):
    pipeline: str
    table: str
    loaded: bool  # whether the owner has this table at all (no task has loaded it yet: no charts)
    rowCap: int = MAX_DASHBOARD_ROWS
    statementTimeoutMs: int = DASHBOARD_STATEMENT_TIMEOUT_MS
    charts: list[DashboardChart]


def chart_value(value: Any) -> str | float | int | None:
    if value is None or isinstance(value, str | int | float):
        return value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)


def measure(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return float(value)
    return float(value) if isinstance(value, int | float | Decimal) else None
