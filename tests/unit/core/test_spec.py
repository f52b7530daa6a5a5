"""TaskSpec validation: good specs parse, bad ones fail with a message naming the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from busline_core.spec import TARGET_REFUSED, TaskSpec, output_columns
from pydantic import ValidationError


def _spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "source": {"uri": "s3://data/flights.csv", "format": "csv"},
        "columns": [
            {"name": "id", "type": "int", "required": True},
            {"name": "dest", "type": "string"},
            {"name": "at", "type": "timestamp"},
        ],
        "filters": [{"column": "id", "op": "gt", "value": 0}],
        "joins": [
            {
                "name": "airports",
                "uri": "s3://data/airports.csv",
                "on": {"dest": "faa"},
                "columns": [{"name": "name", "as": "dest_name"}],
            }
        ],
        "target": {"table": "trips", "key": ["id"]},
    }
    spec.update(overrides)
    return spec


def _error(spec: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        TaskSpec.model_validate(spec)
    return str(caught.value)


def test_valid_spec_parses_with_defaults_and_round_trips() -> None:
    # Given a spec using the documented JSON names
    # When it is validated
    spec = TaskSpec.model_validate(_spec())
    # Then the defaults are filled in and aliases dump back to their JSON names
    assert spec.chunkRows == 20000
    assert spec.source.nullValues == ["NA", ""]
    assert spec.target.mode == "upsert"
    dumped = spec.model_dump(by_alias=True)
    assert dumped["joins"][0]["columns"][0]["as"] == "dest_name"
    assert dumped["target"] == {
        "kind": "postgres", "table": "trips", "key": ["id"], "mode": "upsert", "commit": "task"
    }  # no schema: Busline picks it
    assert TaskSpec.model_validate(dumped) == spec
    # and a dump without aliases parses too (stored specs may be either)
    assert TaskSpec.model_validate(spec.model_dump()) == spec


def test_output_columns_are_spec_columns_then_join_columns() -> None:
    # Given a spec with one join column
    spec = TaskSpec.model_validate(_spec())
    # When its output columns are listed
    columns = output_columns(spec)
    # Then they come in order, with types
    assert [(c.name, c.type) for c in columns] == [
        ("id", "int"),
        ("dest", "string"),
        ("at", "timestamp"),
        ("dest_name", "string"),
    ]


def test_bad_column_type_names_the_field() -> None:
    # Given a column with an unknown type
    spec = _spec()
    spec["columns"][1]["type"] = "varchar"
    # When validated / Then the error points at columns.1.type
    message = _error(spec)
    assert "columns.1.type" in message
    assert "varchar" in message


def test_unknown_key_column_names_the_field() -> None:
    message = _error(_spec(target={"table": "trips", "key": ["id", "nope"]}))
    assert "target.key[1]: column 'nope' is not among the columns" in message


def test_duplicate_output_name_names_the_field() -> None:
    # Given a join column whose output name equals a spec column
    spec = _spec()
    spec["joins"][0]["columns"][0]["as"] = "dest"
    # Then the error names the join column's `as`
    assert "joins[0].columns[0].as: duplicate output column 'dest'" in _error(spec)


def test_duplicate_column_name_names_the_field() -> None:
    spec = _spec()
    spec["columns"].append({"name": "dest", "type": "string"})
    assert "columns[3].name: duplicate column 'dest'" in _error(spec)


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("ftp://127.0.0.1/x.csv", "'ftp://127.0.0.1/x.csv' must be an s3://, https:// or http:// URI"),
        ("file:///etc/passwd", "'file:///etc/passwd' must be an s3://, https:// or http:// URI"),
        ("https:///x.csv", "'https:///x.csv' must be an s3://, https:// or http:// URI"),
        ("https://example.com:99999/x.csv", "'https://example.com:99999/x.csv' has an invalid port"),
        ("s3://bucket-only", "'s3://bucket-only' must look like s3://bucket/key"),
    ],
)
def test_other_schemes_and_malformed_uris_are_rejected(uri: str, reason: str) -> None:
    message = _error(_spec(source={"uri": uri, "format": "csv"}))
    assert f"source.uri\n  Value error, {reason} [type=value_error" in message


@pytest.mark.parametrize(
    "uri",
    [
        "http://127.0.0.1:3003/x.csv",
        "http://127.1.2.3/x.csv",
        "http://localhost/x.csv",
        "http://[::1]:8000/x.csv",
        # which hosts a stack may fetch is safe_http.py's rule, applied at submit and at read
        "http://example.com/data.csv",
        "https://10.0.0.1/data.csv",
        "https://example.com/data.csv.gz",
        "s3://bucket/a/b.csv.zip",
    ],
)
def test_s3_and_http_uris_are_well_formed_specs(uri: str) -> None:
    spec = TaskSpec.model_validate(_spec(source={"uri": uri, "format": "csv"}))
    assert spec.source.uri == uri


def test_join_uri_is_checked_too() -> None:
    spec = _spec()
    spec["joins"][0]["uri"] = "ftp://example.com/airports.csv"
    assert "joins.0.uri" in _error(spec)


def test_eq_without_value_names_the_filter() -> None:
    message = _error(_spec(filters=[{"column": "id", "op": "eq"}]))
    assert "filters.0" in message
    assert "op 'eq' needs a 'value'" in message


def test_in_without_values_names_the_filter() -> None:
    message = _error(_spec(filters=[{"column": "id", "op": "in", "values": []}]))
    assert "filters.0" in message
    assert "needs a non-empty 'values' list" in message


def test_filter_on_unknown_column_names_the_field() -> None:
    message = _error(_spec(filters=[{"column": "ghost", "op": "not_null"}]))
    assert "filters[0].column: column 'ghost' is not among the columns" in message


def test_filter_value_must_cast_to_the_column_type() -> None:
    message = _error(_spec(filters=[{"column": "id", "op": "in", "values": [1, "two"]}]))
    assert "filters[0].values[1]: 'two' is not a valid int" in message


def test_join_on_unknown_left_column_names_the_field() -> None:
    spec = _spec()
    spec["joins"][0]["on"] = {"origin": "faa"}
    assert "joins[0].on: column 'origin' is not among the columns" in _error(spec)


def test_identifiers_must_be_lower_case_sql_names() -> None:
    assert "target.table" in _error(_spec(target={"table": "Trips", "key": ["id"]}))
    spec = _spec()
    spec["columns"][0]["name"] = "1id"
    assert "columns.0.name" in _error(spec)


def test_unknown_fields_are_forbidden() -> None:
    spec = _spec()
    spec["source"]["compression"] = "gzip"
    assert "source.compression" in _error(spec)


@pytest.mark.parametrize("chunk_rows", [99, 1_000_001])
def test_chunk_rows_bounds(chunk_rows: int) -> None:
    assert "chunkRows" in _error(_spec(chunkRows=chunk_rows))


def test_at_least_one_column() -> None:
    spec = copy.deepcopy(_spec(columns=[], filters=[], joins=[]))
    assert "columns" in _error(spec)


def _refusals(spec: dict[str, Any]) -> list[tuple[str, str, str]]:
    with pytest.raises(ValidationError) as caught:
        TaskSpec.model_validate(spec)
    return [(".".join(map(str, e["loc"])), e["type"], e["msg"]) for e in caught.value.errors()]


def test_a_target_schema_is_refused_by_name() -> None:
    # Given a spec that still says where the table goes (the removed field)
    spec = _spec(target={"table": "trips", "key": ["id"], "schema": "public"})
    # When validated / Then exactly that field is refused, as a target refusal, with the reason
    assert _refusals(spec) == [
        (
            "target.schema",
            TARGET_REFUSED,
            "a spec names a table, never a schema: Busline writes each owner's tables into the owner's own "
            "schema; remove target.schema",
        )
    ]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            "other.trips",
            "'other.trips' is not a plain table name: a spec names a table, never a schema "
            "(Busline writes your tables into your own schema)",
        ),
        (
            '"t_abc"."trips"',
            '\'"t_abc"."trips"\' is not a plain table name: a spec names a table, never a schema '
            "(Busline writes your tables into your own schema)",
        ),
        (
            "Trips",
            "'Trips' is not a valid table name (lower case letters, digits and _, not starting with a digit, "
            "at most 63 characters)",
        ),
        (
            "trips; drop table x",
            "'trips; drop table x' is not a valid table name (lower case letters, digits and _, not starting "
            "with a digit, at most 63 characters)",
        ),
        ("busline_ledger", "'busline_ledger': table names starting with 'busline_' are reserved for Busline's own tables"),
    ],
)
def test_a_target_table_that_is_not_a_plain_unreserved_name_is_refused(table: str, message: str) -> None:
    # Given a target table that is qualified, quoted, not an identifier, or one of Busline's own names
    spec = _spec(target={"table": table, "key": ["id"]})
    # When validated / Then target.table is refused, as a target refusal, saying why
    assert _refusals(spec) == [("target.table", TARGET_REFUSED, message)]
