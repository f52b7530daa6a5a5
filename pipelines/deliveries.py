"""A day's deliveries with their depot's city; a delivery to an unknown depot is retried the next run."""
from busline_core.pipelines import Context, Pipeline, TableParam
from pydantic import Field


class Params(TableParam):
    table: str = "deliveries"
    feed: str = Field(default="deliveries", pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$", description="folder in shared/")


def build(params: Params, context: Context) -> dict:
    base = f"s3://{context.data_bucket}/shared/{params.feed}"
    columns = [("id", "int", True), ("depot", "string", True), ("parcels", "int", False)]
    return {"source": {"uri": f"{base}/deliveries.csv", "format": "csv"},
            "columns": [{"name": name, "type": kind, "required": required} for name, kind, required in columns],
            "joins": [{"name": "depots", "uri": f"{base}/depots.csv", "on": {"depot": "depot"}, "required": True,
                       "columns": [{"name": "city", "as": "depot_city", "type": "string"}]}],
            "target": {"table": params.table, "key": ["id"], "mode": "upsert", "commit": "chunk"}}  # fmt: skip


PIPELINE = Pipeline(build=build, params=Params, retry_rejects=True, description="deliveries by depot, rejects retried")
