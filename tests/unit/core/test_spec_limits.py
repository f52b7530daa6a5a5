"""The spec-side limits of limits.py: a spec at each limit is accepted, one past it is refused naming the
field and the limit."""

from __future__ import annotations

from typing import Any

import pytest
from busline_core.limits import (
    MAX_COLUMNS,
    MAX_FILTERS,
    MAX_IDENTIFIER_LENGTH,
    MAX_IN_VALUES,
    MAX_JOINS,
    MAX_KEY_COLUMNS,
    MAX_NULL_MARKER_LENGTH,
    MAX_NULL_MARKERS,
    MAX_ROW_COUNT,
    MAX_SOURCE_COLUMN_NAME_LENGTH,
    MAX_URI_LENGTH,
)
from busline_core.spec import TaskSpec
from pydantic import ValidationError


def _columns(count: int) -> list[dict[str, Any]]:
    return [{"name": f"c{i}", "type": "int"} for i in range(count)]


def _join(index: int = 0, columns: int = 1) -> dict[str, Any]:
    return {
        "name": f"j{index}",
        "uri": "s3://data/ref.csv",
        "on": {"c0": "id"},
        "columns": [{"name": f"r{c}", "as": f"j{index}_r{c}"} for c in range(columns)],
    }


def _spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "source": {"uri": "s3://data/source.csv", "format": "csv"},
        "columns": _columns(1),
        "target": {"table": "t", "key": ["c0"]},
    }
    spec.update(overrides)
    return spec


def _uri(length: int) -> str:
    prefix = "s3://data/"
    return prefix + "k" * (length - len(prefix))


# (what, spec at the limit, spec one past it, location of the refusal, message naming the limit)
CASES: list[tuple[str, dict[str, Any], dict[str, Any], tuple[Any, ...], str]] = [
    (
        "columns",
        _spec(columns=_columns(MAX_COLUMNS)),
        _spec(columns=_columns(MAX_COLUMNS + 1)),
        ("columns",),
        "List should have at most 500 items after validation, not 501",
    ),
    (
        "output-columns",
        _spec(columns=_columns(MAX_COLUMNS - 10), joins=[_join(columns=10)]),
        _spec(columns=_columns(MAX_COLUMNS - 10), joins=[_join(columns=11)]),
        (),
        "Value error, joins: 490 columns and 11 join columns make 501 output columns, over the limit of 500",
    ),
    (
        "key-columns",
        _spec(columns=_columns(40), target={"table": "t", "key": [f"c{i}" for i in range(MAX_KEY_COLUMNS)]}),
        _spec(columns=_columns(40), target={"table": "t", "key": [f"c{i}" for i in range(MAX_KEY_COLUMNS + 1)]}),
        ("target", "key"),
        "List should have at most 32 items after validation, not 33",
    ),
    (
        "joins",
        _spec(joins=[_join(i) for i in range(MAX_JOINS)]),
        _spec(joins=[_join(i) for i in range(MAX_JOINS + 1)]),
        ("joins",),
        "List should have at most 10 items after validation, not 11",
    ),
    (
        "filters",
        _spec(filters=[{"column": "c0", "op": "gt", "value": i} for i in range(MAX_FILTERS)]),
        _spec(filters=[{"column": "c0", "op": "gt", "value": i} for i in range(MAX_FILTERS + 1)]),
        ("filters",),
        "List should have at most 50 items after validation, not 51",
    ),
    (
        "in-values",
        _spec(filters=[{"column": "c0", "op": "in", "values": list(range(MAX_IN_VALUES))}]),
        _spec(filters=[{"column": "c0", "op": "in", "values": list(range(MAX_IN_VALUES + 1))}]),
        ("filters", 0, "values"),
        "List should have at most 1000 items after validation, not 1001",
    ),
    (
        "null-markers",
        _spec(source={"uri": "s3://data/s.csv", "format": "csv", "nullValues": [f"n{i}" for i in range(MAX_NULL_MARKERS)]}),
        _spec(source={"uri": "s3://data/s.csv", "format": "csv", "nullValues": [f"n{i}" for i in range(MAX_NULL_MARKERS + 1)]}),
        ("source", "nullValues"),
        "List should have at most 20 items after validation, not 21",
    ),
    (
        "null-marker-length",
        _spec(source={"uri": "s3://data/s.csv", "format": "csv", "nullValues": ["-" * MAX_NULL_MARKER_LENGTH]}),
        _spec(source={"uri": "s3://data/s.csv", "format": "csv", "nullValues": ["-" * (MAX_NULL_MARKER_LENGTH + 1)]}),
        ("source", "nullValues", 0),
        "String should have at most 64 characters",
    ),
    (
        "join-null-markers",
        _spec(joins=[{**_join(), "nullValues": [f"n{i}" for i in range(MAX_NULL_MARKERS)]}]),
        _spec(joins=[{**_join(), "nullValues": [f"n{i}" for i in range(MAX_NULL_MARKERS + 1)]}]),
        ("joins", 0, "nullValues"),
        "List should have at most 20 items after validation, not 21",
    ),
    (
        "source-uri-length",
        _spec(source={"uri": _uri(MAX_URI_LENGTH), "format": "csv"}),
        _spec(source={"uri": _uri(MAX_URI_LENGTH + 1), "format": "csv"}),
        ("source", "uri"),
        "String should have at most 2048 characters",
    ),
    (
        "join-uri-length",
        _spec(joins=[{**_join(), "uri": _uri(MAX_URI_LENGTH)}]),
        _spec(joins=[{**_join(), "uri": _uri(MAX_URI_LENGTH + 1)}]),
        ("joins", 0, "uri"),
        "String should have at most 2048 characters",
    ),
    (
        "reference-column-name-length",
        _spec(joins=[{**_join(), "on": {"c0": "k" * MAX_SOURCE_COLUMN_NAME_LENGTH}}]),
        _spec(joins=[{**_join(), "on": {"c0": "k" * (MAX_SOURCE_COLUMN_NAME_LENGTH + 1)}}]),
        ("joins", 0, "on", "c0"),
        "String should have at most 255 characters",
    ),
    (
        "identifier-length",
        _spec(columns=[{"name": "c" * MAX_IDENTIFIER_LENGTH, "type": "int"}], target={"table": "t", "key": ["c" * MAX_IDENTIFIER_LENGTH]}),
        _spec(columns=[{"name": "c" * (MAX_IDENTIFIER_LENGTH + 1), "type": "int"}], target={"table": "t", "key": ["c"]}),
        ("columns", 0, "name"),
        f"Value error, '{'c' * 64}' is not a valid identifier (lower case letters, digits and _, not starting "
        "with a digit, at most 63 characters)",
    ),
    (
        "source-limit",
        _spec(source={"uri": "s3://data/s.csv", "format": "csv", "limit": MAX_ROW_COUNT}),
        _spec(source={"uri": "s3://data/s.csv", "format": "csv", "limit": MAX_ROW_COUNT + 1}),
        ("source", "limit"),
        "Input should be less than or equal to 9223372036854775807",
    ),
]


@pytest.mark.parametrize(("at_limit", "past_limit", "location", "message"), [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_a_spec_at_a_limit_is_accepted_and_one_past_it_is_refused_naming_field_and_limit(
    at_limit: dict[str, Any], past_limit: dict[str, Any], location: tuple[Any, ...], message: str
) -> None:
    # Given a spec exactly at a limit / When it is validated / Then it is a spec
    TaskSpec.model_validate(at_limit)
    # Given the same spec one past the limit / When it is validated
    with pytest.raises(ValidationError) as refused:
        TaskSpec.model_validate(past_limit)
    # Then exactly one error, at the field, naming the limit
    assert [(error["loc"], error["msg"]) for error in refused.value.errors()] == [(location, message)]


def test_the_limits_appear_in_the_specs_json_schema() -> None:
    # Given the JSON schema the OpenAPI document publishes / Then a client can see the limits before sending
    schema = TaskSpec.model_json_schema()
    definitions = schema["$defs"]
    assert schema["properties"]["columns"]["maxItems"] == MAX_COLUMNS
    assert schema["properties"]["joins"]["maxItems"] == MAX_JOINS
    assert schema["properties"]["filters"]["maxItems"] == MAX_FILTERS
    assert definitions["TargetSpec"]["properties"]["key"]["maxItems"] == MAX_KEY_COLUMNS
    assert definitions["SourceSpec"]["properties"]["uri"]["maxLength"] == MAX_URI_LENGTH
    assert definitions["SourceSpec"]["properties"]["nullValues"]["maxItems"] == MAX_NULL_MARKERS
    assert definitions["FilterSpec"]["properties"]["values"]["anyOf"][0]["maxItems"] == MAX_IN_VALUES
