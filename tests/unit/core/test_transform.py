"""transform_rows: casts, rejects with their reasons, filters, joins, exact counts."""

from __future__ import annotations

import json
from typing import Any

import pytest
from busline_core.spec import TaskSpec
from busline_core.transform import ReferenceTable, Reject, transform_rows

ALL_TYPES = [
    {"name": "s", "type": "string"},
    {"name": "i", "type": "int"},
    {"name": "f", "type": "float"},
    {"name": "d", "type": "decimal"},
    {"name": "b", "type": "bool"},
    {"name": "day", "type": "date"},
    {"name": "ts", "type": "timestamp"},
]


def _spec(columns: list[dict[str, Any]], key: list[str], **extra: Any) -> TaskSpec:
    return TaskSpec.model_validate(
        {
            "source": {"uri": "s3://b/k.csv", "format": "csv"},
            "columns": columns,
            "target": {"table": "t", "key": key},
            **extra,
        }
    )


def test_each_type_casts_to_json_able_values() -> None:
    # Given one row with a value of every type
    spec = _spec(ALL_TYPES, ["s"])
    row = {
        "s": "x",
        "i": "-42",
        "f": "2.5",
        "d": "0.10",
        "b": "Yes",
        "day": "2013-01-02",
        "ts": "2013-01-01T10:00:00Z",
    }
    # When transformed
    result = transform_rows([row], spec, {}, first_row=1)
    # Then each value has its documented JSON form, in column order
    assert result.rows == [
        {
            "s": "x",
            "i": -42,
            "f": 2.5,
            "d": "0.10",
            "b": True,
            "day": "2013-01-02",
            "ts": "2013-01-01T10:00:00+00:00",
        }
    ]
    assert list(result.rows[0]) == ["s", "i", "f", "d", "b", "day", "ts"]
    json.dumps(result.rows)  # JSON-able as is


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("T", True),
        ("1", True),
        ("yes", True),
        ("false", False),
        ("f", False),
        ("0", False),
        ("NO", False),
    ],
)
def test_bool_spellings(text: str, expected: bool) -> None:
    spec = _spec([{"name": "k", "type": "string"}, {"name": "b", "type": "bool"}], ["k"])
    assert transform_rows([{"k": "a", "b": text}], spec, {}, 1).rows == [{"k": "a", "b": expected}]


def test_timestamps_become_their_utc_instant_naive_ones_read_as_utc() -> None:
    spec = _spec([{"name": "k", "type": "string"}, {"name": "ts", "type": "timestamp"}], ["k"])
    rows = [{"k": "a", "ts": "2013-01-01 05:06:07"}, {"k": "b", "ts": "2013-01-01T05:06:07-05:00"}]
    assert [r["ts"] for r in transform_rows(rows, spec, {}, 1).rows] == [
        "2013-01-01T05:06:07+00:00",
        "2013-01-01T10:06:07+00:00",
    ]


def test_optional_nulls_and_missing_columns_stay_null() -> None:
    spec = _spec(ALL_TYPES, ["s"])
    result = transform_rows([{"s": "only", "i": None}], spec, {}, 1)
    assert result.rows == [{"s": "only", "i": None, "f": None, "d": None, "b": None, "day": None, "ts": None}]


@pytest.mark.parametrize(
    ("column", "text"),
    [
        ("i", "4.5"),
        ("i", "99999999999999999999"),
        ("f", "abc"),
        ("f", "nan"),
        ("d", "1,5"),
        ("d", "Infinity"),
        ("b", "maybe"),
        ("day", "2013-02-30"),
        ("ts", "yesterday"),
    ],
)
def test_cast_failure_rejects_with_column_value_and_type(column: str, text: str) -> None:
    # Given three good rows and one bad value in the middle
    spec = _spec(ALL_TYPES, ["s"])
    rows: list[dict[str, str | None]] = [{"s": str(n), "i": "1"} for n in range(4)]
    rows[2][column] = text
    # When transformed from source row 101
    result = transform_rows(rows, spec, {}, first_row=101)
    # Then exactly that row is rejected, with its source row number, reason and raw data
    column_type = next(c["type"] for c in ALL_TYPES if c["name"] == column)
    assert result.rejects == [
        Reject(row=103, reason=f"column {column}: '{text}' is not a valid {column_type}", data=rows[2])
    ]
    assert [r["s"] for r in result.rows] == ["0", "1", "3"]
    assert result.filtered == 0


def test_required_and_key_columns_reject_nulls_naming_the_first_failing_column() -> None:
    # Given a required column and a key column that is not marked required
    spec = _spec(
        [
            {"name": "id", "type": "int"},
            {"name": "name", "type": "string", "required": True},
            {"name": "n", "type": "int"},
        ],
        ["id"],
    )
    rows: list[dict[str, str | None]] = [
        {"id": "1", "name": "a", "n": "1"},
        {"id": "2", "name": None, "n": "x"},  # required missing comes first in column order
        {"id": None, "name": "c", "n": "3"},  # key column null
        {"id": "4", "name": "d", "n": "bad"},
    ]
    result = transform_rows(rows, spec, {}, first_row=1)
    assert [(r.row, r.reason) for r in result.rejects] == [
        (2, "column name: required value missing"),
        (3, "column id: required value missing"),
        (4, "column n: 'bad' is not a valid int"),
    ]
    assert len(result.rows) == 1


def _numbers_spec(filters: list[Any]) -> TaskSpec:
    return _spec(
        [
            {"name": "id", "type": "int"},
            {"name": "amount", "type": "decimal"},
            {"name": "tag", "type": "string"},
            {"name": "at", "type": "timestamp"},
        ],
        ["id"],
        filters=filters,
    )


NUMBER_ROWS: list[dict[str, str | None]] = [
    {"id": "1", "amount": "9", "tag": "a", "at": "2013-01-01T00:00:00Z"},
    {"id": "2", "amount": "10", "tag": "b", "at": "2013-01-01T04:00:00+05:00"},
    {"id": "3", "amount": None, "tag": None, "at": None},
    {"id": "4", "amount": "100.5", "tag": "c", "at": "2013-01-02T00:00:00Z"},
]


@pytest.mark.parametrize(
    ("spec_filter", "kept"),
    [
        ({"column": "id", "op": "eq", "value": 2}, [2]),
        ({"column": "id", "op": "ne", "value": 2}, [1, 3, 4]),
        ({"column": "amount", "op": "lt", "value": "10"}, [1]),  # numeric, not text, order
        ({"column": "amount", "op": "le", "value": 10}, [1, 2]),
        ({"column": "amount", "op": "gt", "value": "9.5"}, [2, 4]),
        ({"column": "amount", "op": "ge", "value": 100.5}, [4]),
        ({"column": "tag", "op": "in", "values": ["a", "c"]}, [1, 4]),
        ({"column": "tag", "op": "not_in", "values": ["a"]}, [2, 4]),
        ({"column": "tag", "op": "is_null"}, [3]),
        ({"column": "tag", "op": "not_null"}, [1, 2, 4]),
        ({"column": "at", "op": "lt", "value": "2013-01-01T00:00:00Z"}, [2]),  # instants compare, not text
    ],
)
def test_filters_count_the_rows_they_drop(spec_filter: dict[str, Any], kept: list[int]) -> None:
    result = transform_rows(NUMBER_ROWS, _numbers_spec([spec_filter]), {}, 1)
    assert [row["id"] for row in result.rows] == kept
    assert result.filtered == 4 - len(kept)
    assert result.rejects == []


def test_several_filters_all_apply_and_rejects_win_over_filters() -> None:
    # Given two filters and a row that would be filtered but also fails a cast
    filters = [{"column": "tag", "op": "not_null"}, {"column": "id", "op": "lt", "value": 4}]
    rows: list[dict[str, str | None]] = [*NUMBER_ROWS, {"id": "x", "tag": None}]
    result = transform_rows(rows, _numbers_spec(filters), {}, 1)
    # Then rows 1 and 2 stay, 3 and 4 are filtered, 5 is rejected (cast first)
    assert [row["id"] for row in result.rows] == [1, 2]
    assert result.filtered == 2
    assert [(r.row, r.reason) for r in result.rejects] == [(5, "column id: 'x' is not a valid int")]


# --- joins ------------------------------------------------------------------------------------------

AIRPORTS: list[dict[str, str | None]] = [
    {"faa": "JFK", "name": "Kennedy", "alt": "13"},
    {"faa": "LAX", "name": "Los Angeles", "alt": "125"},
    {"faa": "BAD", "name": "Broken", "alt": "high"},
    {"faa": None, "name": "no code", "alt": "1"},
]


def _join_spec(required: bool = False, alt_type: str = "int") -> TaskSpec:
    return _spec(
        [{"name": "id", "type": "int"}, {"name": "dest", "type": "string"}],
        ["id"],
        joins=[
            {
                "name": "airports",
                "uri": "s3://b/airports.csv",
                "on": {"dest": "faa"},
                "columns": [
                    {"name": "name", "as": "dest_name"},
                    {"name": "alt", "as": "dest_alt", "type": alt_type},
                ],
                "required": required,
            }
        ],
    )


JOIN_ROWS: list[dict[str, str | None]] = [
    {"id": "1", "dest": "JFK"},
    {"id": "2", "dest": "SJU"},
    {"id": "3", "dest": "LAX"},
    {"id": "4", "dest": None},
]


def test_reference_table_indexes_by_key_and_skips_null_keys() -> None:
    table = ReferenceTable.from_records(AIRPORTS, ["faa"])
    assert len(table) == 3
    names = table.projection((("name", "string"),))
    assert names[("JFK",)] == ("Kennedy",)
    assert ("SJU",) not in names


def test_reference_without_the_key_column_is_an_error() -> None:
    with pytest.raises(ValueError, match="reference has no key column code"):
        ReferenceTable.from_records(AIRPORTS, ["code"])


def test_required_join_rejects_unmatched_rows() -> None:
    refs = {"airports": ReferenceTable.from_records(AIRPORTS, ["faa"])}
    result = transform_rows(JOIN_ROWS, _join_spec(required=True), refs, first_row=11)
    assert result.rows == [
        {"id": 1, "dest": "JFK", "dest_name": "Kennedy", "dest_alt": 13},
        {"id": 3, "dest": "LAX", "dest_name": "Los Angeles", "dest_alt": 125},
    ]
    assert [(r.row, r.reason) for r in result.rejects] == [
        (12, "join airports: no match for dest=SJU"),
        (14, "join airports: no match for dest=null"),
    ]
    assert result.filtered == 0


def test_optional_join_fills_nulls() -> None:
    refs = {"airports": ReferenceTable.from_records(AIRPORTS, ["faa"])}
    result = transform_rows(JOIN_ROWS, _join_spec(required=False), refs, first_row=1)
    assert len(result.rows) == 4
    assert result.rows[1] == {"id": 2, "dest": "SJU", "dest_name": None, "dest_alt": None}
    assert list(result.rows[1]) == ["id", "dest", "dest_name", "dest_alt"]
    assert result.rejects == []


def test_reference_value_that_does_not_cast_rejects_the_joined_row() -> None:
    refs = {"airports": ReferenceTable.from_records(AIRPORTS, ["faa"])}
    result = transform_rows([{"id": "1", "dest": "BAD"}], _join_spec(required=False), refs, 1)
    assert [r.reason for r in result.rejects] == ["join airports: column alt: 'high' is not a valid int"]


def test_missing_reference_table_is_an_error_naming_the_join() -> None:
    with pytest.raises(ValueError, match="join airports: no reference table was given"):
        transform_rows(JOIN_ROWS, _join_spec(required=True), {}, 1)


def test_counts_add_up_on_a_mixed_chunk() -> None:
    # Given 1,000 rows: every 10th cancelled (filtered), every 25th to an unknown airport, every 100th broken
    spec = _spec(
        [{"name": "id", "type": "int"}, {"name": "dest", "type": "string"}, {"name": "dep", "type": "int"}],
        ["id"],
        filters=[{"column": "dep", "op": "not_null"}],
        joins=[
            {
                "name": "airports",
                "uri": "s3://b/a.csv",
                "on": {"dest": "faa"},
                "columns": [{"name": "name", "as": "dest_name"}],
                "required": True,
            }
        ],
    )
    rows: list[dict[str, str | None]] = []
    for n in range(1, 1001):
        rows.append(
            {
                "id": "oops" if n % 100 == 0 else str(n),
                "dest": "XXX" if n % 25 == 0 else "JFK",
                "dep": None if n % 10 == 0 else "5",
            }
        )
    refs = {"airports": ReferenceTable.from_records(AIRPORTS, ["faa"])}
    # When transformed
    result = transform_rows(rows, spec, refs, 1)
    # Then each row is counted once: casts first, then filters, then the join
    cast_rejects = 10  # n % 100 == 0
    filtered = 100 - cast_rejects  # n % 10 == 0 but not % 100
    unmatched = len([n for n in range(1, 1001) if n % 25 == 0 and n % 10 != 0])  # 20
    assert len(result.rejects) == cast_rejects + unmatched == 30
    assert result.filtered == filtered == 90
    assert len(result.rows) == 1000 - 30 - 90 == 880
