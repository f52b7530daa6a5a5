"""transform_rows rejects, row by row, every value the Postgres target would refuse, so a load never fails
on data (it would fail the chunk on every delivery): NUL and lone surrogates in text, numeric past
Postgres' digits, ints past bigint, infinite floats, and instants with no UTC form."""

from __future__ import annotations

import json
from typing import Any

import pytest
from busline_core import spec as spec_module
from busline_core import transform as transform_module
from busline_core.spec import TaskSpec
from busline_core.transform import ReferenceTable, Reject, transform_rows
from pydantic import ValidationError

from .test_transform import _join_spec

ALL_TYPES = [
    {"name": "s", "type": "string"},
    {"name": "i", "type": "int"},
    {"name": "f", "type": "float"},
    {"name": "d", "type": "decimal"},
    {"name": "b", "type": "bool"},
    {"name": "day", "type": "date"},
    {"name": "ts", "type": "timestamp"},
]
TYPES = {column["name"]: column["type"] for column in ALL_TYPES}
GOOD = {
    "s": "ok",
    "i": "1",
    "f": "1",
    "d": "1",
    "b": "true",
    "day": "2013-01-02",
    "ts": "2013-01-01T00:00:00Z",
}


def _spec(columns: list[dict[str, Any]], key: list[str], **extra: Any) -> TaskSpec:
    return TaskSpec.model_validate(
        {
            "source": {"uri": "s3://b/k.csv", "format": "csv"},
            "columns": columns,
            "target": {"table": "t", "key": key},
            **extra,
        }
    )


def _one_bad_value(column: str, text: str) -> tuple[list[dict[str, str | None]], Any]:
    """Four rows keyed k0..k3 with `text` in `column` of row k2, transformed from source row 101."""
    rows: list[dict[str, str | None]] = [{"k": f"k{n}", column: GOOD[column]} for n in range(4)]
    rows[2][column] = text
    spec = _spec([{"name": "k", "type": "string"}, {"name": column, "type": TYPES[column]}], ["k"])
    return rows, transform_rows(rows, spec, {}, first_row=101)


def _as_stored(rejects: list[Reject]) -> bytes:
    # How storage.py writes a rejects file: UTF-8 JSON lines, non-ASCII kept as is.
    text = "".join(
        json.dumps(reject.model_dump(mode="json"), separators=(",", ":"), ensure_ascii=False) + "\n"
        for reject in rejects
    )
    return text.encode("utf-8")


# --- text ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("a\x00b", "column s: 'a\\x00b' is not a valid string"),
        ("\x00", "column s: '\\x00' is not a valid string"),
        ("Zürich\x00", "column s: 'Zürich\\x00' is not a valid string"),  # NUL in non-ASCII text
        ("\ud800", "column s: '\\ud800' is not a valid string"),  # what a JSON "\ud800" decodes to
        ("ok \udfff ok", "column s: 'ok \\udfff ok' is not a valid string"),
        ("\ud83d\ude00", "column s: '\\ud83d\\ude00' is not a valid string"),  # a pair as 2 code points
    ],
)
def test_text_postgres_cannot_store_is_rejected_naming_the_column_and_value(text: str, reason: str) -> None:
    # Given four rows, the third with text Postgres cannot store (a NUL, or a lone surrogate that cannot
    # even be encoded to UTF-8)
    rows, result = _one_bad_value("s", text)
    # Then exactly that row is rejected, with the value spelled with escapes, and the other three load
    assert [(r.row, r.reason) for r in result.rejects] == [(103, reason)]
    assert [row["k"] for row in result.rows] == ["k0", "k1", "k3"]
    assert [row["s"] for row in result.rows] == ["ok", "ok", "ok"]
    # And the rejects file can be written as UTF-8 (a raw surrogate in it would fail the chunk too)
    _as_stored(result.rejects)


def test_any_unicode_text_postgres_can_store_is_kept_as_is() -> None:
    # Given text of every width, noncharacters and a real emoji (one code point), but no NUL or surrogate
    texts = ["plain", "Zürich — 東京", "😀", "\uffff\ufffe", "\U0010ffff", "tab\tnew\nline\\", ""]
    rows: list[dict[str, str | None]] = [{"k": str(n), "s": text} for n, text in enumerate(texts)]
    rows.append({"k": "null", "s": None})
    spec = _spec([{"name": "k", "type": "string"}, {"name": "s", "type": "string"}], ["k"])
    # When transformed
    result = transform_rows(rows, spec, {}, first_row=1)
    # Then every value is kept, unchanged
    assert result.rejects == []
    assert [row["s"] for row in result.rows] == [*texts, None]


def test_a_large_column_rejects_exactly_its_bad_cells() -> None:
    # Given 20,000 rows of non-ASCII text with a NUL in row 7 and a lone surrogate in row 19,999,
    # and a null in row 500
    rows: list[dict[str, str | None]] = [{"k": str(n), "s": f"café {n}"} for n in range(1, 20_001)]
    rows[6]["s"] = "café\x007"
    rows[19_998]["s"] = "café \udc80"
    rows[499]["s"] = None
    spec = _spec([{"name": "k", "type": "string"}, {"name": "s", "type": "string"}], ["k"])
    # When transformed from source row 1
    result = transform_rows(rows, spec, {}, first_row=1)
    # Then exactly those two rows are rejected and 19,998 rows load, the null one included
    assert [(r.row, r.reason) for r in result.rejects] == [
        (7, "column s: 'café\\x007' is not a valid string"),
        (19_999, "column s: 'café \\udc80' is not a valid string"),
    ]
    assert len(result.rows) == 19_998
    assert result.rows[498] == {"k": "500", "s": None}


def test_a_rejected_rows_data_spells_lone_surrogates_as_escapes_in_every_field() -> None:
    # Given a row rejected for its int, that also holds a NUL and lone surrogates in fields outside the spec
    spec = _spec([{"name": "k", "type": "string"}, {"name": "i", "type": "int"}], ["k"])
    row: dict[str, str | None] = {
        "k": "a",
        "i": "x",
        "note": "bad \ud800",
        "\udc00key": "nul\x00",
        "none": None,
    }
    # When transformed
    result = transform_rows([row], spec, {}, first_row=1)
    # Then its data keeps every field, lone surrogates spelled as escapes, the NUL as it is
    assert result.rejects == [
        Reject(
            row=1,
            reason="column i: 'x' is not a valid int",
            data={"k": "a", "i": "x", "note": "bad \\ud800", "\\udc00key": "nul\x00", "none": None},
        )
    ]
    # And it is written as UTF-8 JSON, the NUL escaped by JSON
    assert _as_stored(result.rejects) == (
        b'{"row":1,"reason":"column i: \'x\' is not a valid int","data":'
        b'{"k":"a","i":"x","note":"bad \\\\ud800","\\\\udc00key":"nul\\u0000","none":null},"at":null}\n'
    )


def test_a_value_shown_in_a_reason_is_cut_at_200_characters_before_escaping() -> None:
    # Given a 300-character value whose NUL is at character 100
    text = "x" * 99 + "\x00" + "y" * 200
    # When transformed
    _, result = _one_bad_value("s", text)
    # Then the reason shows the first 200 characters, the NUL escaped
    assert [r.reason for r in result.rejects] == [
        "column s: '" + "x" * 99 + "\\x00" + "y" * 100 + "…' is not a valid string"
    ]


# --- text from reference tables --------------------------------------------------------------------

AIRPORTS: list[dict[str, str | None]] = [
    {"faa": "JFK", "name": "Kennedy", "alt": "13"},
    {"faa": "NUL", "name": "Ken\x00nedy", "alt": "1"},
    {"faa": "SUR", "name": "Lone \ud800", "alt": "2"},
    {"faa": "UNI", "name": "São Paulo 東京", "alt": "3"},
    {"faa": "DEC", "name": "Decimal", "alt": "1e-20000"},
]


def test_reference_text_postgres_cannot_store_rejects_the_rows_that_join_to_it() -> None:
    # Given a reference whose names hold a NUL and a lone surrogate, and flights to each airport
    refs = {"airports": ReferenceTable.from_records(AIRPORTS, ["faa"])}
    rows: list[dict[str, str | None]] = [
        {"id": "1", "dest": "JFK"},
        {"id": "2", "dest": "NUL"},
        {"id": "3", "dest": "SUR"},
        {"id": "4", "dest": "UNI"},
        {"id": "5", "dest": "NUL"},
    ]
    # When transformed
    result = transform_rows(rows, _join_spec(), refs, first_row=1)
    # Then every flight to those airports is rejected, naming the join, the reference column and the value
    assert [(r.row, r.reason) for r in result.rejects] == [
        (2, "join airports: column name: 'Ken\\x00nedy' is not a valid string"),
        (3, "join airports: column name: 'Lone \\ud800' is not a valid string"),
        (5, "join airports: column name: 'Ken\\x00nedy' is not a valid string"),
    ]
    assert result.rows == [
        {"id": 1, "dest": "JFK", "dest_name": "Kennedy", "dest_alt": 13},
        {"id": 4, "dest": "UNI", "dest_name": "São Paulo 東京", "dest_alt": 3},
    ]
    _as_stored(result.rejects)


def test_reference_decimal_past_numeric_rejects_the_rows_that_join_to_it() -> None:
    # Given a reference decimal with 20,000 digits after the point (Postgres numeric holds 16,383)
    refs = {"airports": ReferenceTable.from_records(AIRPORTS, ["faa"])}
    # When a flight joins to it
    result = transform_rows([{"id": "1", "dest": "DEC"}], _join_spec(alt_type="decimal"), refs, first_row=1)
    # Then it is rejected
    assert [r.reason for r in result.rejects] == [
        "join airports: column alt: '1e-20000' is not a valid decimal"
    ]


# --- every type's text with a NUL or a lone surrogate -----------------------------------------------


@pytest.mark.parametrize(
    ("column", "text", "reason"),
    [
        ("i", "1\x00", "column i: '1\\x00' is not a valid int"),
        ("f", "1.5\x00", "column f: '1.5\\x00' is not a valid float"),
        ("d", "1.5\x00", "column d: '1.5\\x00' is not a valid decimal"),
        ("d", "\ud800", "column d: '\\ud800' is not a valid decimal"),
        ("b", "true\x00", "column b: 'true\\x00' is not a valid bool"),
        ("day", "2013-01-02\x00", "column day: '2013-01-02\\x00' is not a valid date"),
        ("ts", "2013-01-01T10:00:00Z\x00", "column ts: '2013-01-01T10:00:00Z\\x00' is not a valid timestamp"),
        # Python's fromisoformat stops reading at a NUL, so this one would pass as 10:00 if not caught
        (
            "ts",
            "2013-01-01T10:00:00\x00junk",
            "column ts: '2013-01-01T10:00:00\\x00junk' is not a valid timestamp",
        ),
        (
            "ts",
            "2013-01-01T10:00:00\ud800",
            "column ts: '2013-01-01T10:00:00\\ud800' is not a valid timestamp",
        ),
    ],
)
def test_typed_text_with_a_nul_or_a_surrogate_is_rejected(column: str, text: str, reason: str) -> None:
    # Given a typed value with a NUL or a lone surrogate / When transformed
    _, result = _one_bad_value(column, text)
    # Then its row is rejected, naming the column and the escaped value
    assert [(r.row, r.reason) for r in result.rejects] == [(103, reason)]
    assert len(result.rows) == 3


# --- numbers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "loaded"),
    [
        ("1e131071", "1E+131071"),  # 131,072 digits before the point: numeric's most
        ("9" * 131_072, "9" * 131_072),
        ("1e-16383", "1E-16383"),  # 16,383 digits after the point: numeric's most
        ("0e-16383", "0E-16383"),
        ("1E+5", "1E+5"),  # exponent notation, which Postgres numeric reads
        ("0.0000001", "1E-7"),
        ("-0", "-0"),
        ("0e+2000000000", "0"),  # any zero fits; Postgres refuses such an exponent, so it is sent as 0
        ("-0e+5", "0"),
        ("1_000", "1000"),
    ],
)
def test_decimals_within_postgres_numeric_are_kept_as_text(text: str, loaded: str) -> None:
    # Given a decimal at or within numeric's limits / When transformed
    _, result = _one_bad_value("d", text)
    # Then it is kept as the text Postgres numeric reads
    assert result.rejects == []
    assert result.rows[2]["d"] == loaded


@pytest.mark.parametrize(
    "text",
    [
        "1e131072",  # 131,073 digits before the point
        "1" + "0" * 131_072,
        "1e200000",
        "1e999999999999999999",
        "1e-16384",  # 16,384 digits after the point
        "0e-16384",
        "1e-20000",
        "0." + "0" * 16_383 + "1",
    ],
)
def test_decimals_past_postgres_numeric_are_rejected(text: str) -> None:
    # Given a decimal past numeric's digits before or after the point / When transformed
    _, result = _one_bad_value("d", text)
    # Then its row is rejected, with the value cut at 200 characters
    shown = text if len(text) <= 200 else text[:200] + "…"
    assert [(r.row, r.reason) for r in result.rejects] == [
        (103, f"column d: '{shown}' is not a valid decimal")
    ]
    assert len(result.rows) == 3


@pytest.mark.parametrize(
    ("text", "rejected"),
    [
        ("9223372036854775807", False),
        ("-9223372036854775808", False),
        ("9223372036854775808", True),
        ("-9223372036854775809", True),
    ],
)
def test_ints_must_fit_bigint(text: str, rejected: bool) -> None:
    # Given an int at or just past bigint's bounds / When transformed
    _, result = _one_bad_value("i", text)
    # Then only those past the bounds are rejected
    if rejected:
        assert [r.reason for r in result.rejects] == [f"column i: '{text}' is not a valid int"]
    else:
        assert result.rejects == []
        assert result.rows[2]["i"] == int(text)


@pytest.mark.parametrize(
    ("text", "loaded"),
    [
        ("5e-324", 5e-324),  # the smallest subnormal: Postgres double precision takes it
        ("2.2250738585072014e-308", 2.2250738585072014e-308),
        ("1.7976931348623157e308", 1.7976931348623157e308),
        ("1e-400", 0.0),  # below the smallest subnormal: the nearest double is 0
        ("-0", -0.0),
    ],
)
def test_floats_any_finite_double_is_kept(text: str, loaded: float) -> None:
    # Given a float at a double's edges / When transformed
    _, result = _one_bad_value("f", text)
    # Then it is the nearest double, sign included
    assert result.rejects == []
    assert repr(result.rows[2]["f"]) == repr(loaded)


@pytest.mark.parametrize("text", ["1e309", "-1e309", "1" + "0" * 400, "inf", "-Infinity", "NaN"])
def test_floats_past_a_double_are_rejected(text: str) -> None:
    # Given a float past the largest double, or not a number / When transformed
    _, result = _one_bad_value("f", text)
    # Then its row is rejected
    shown = text if len(text) <= 200 else text[:200] + "…"
    assert [r.reason for r in result.rejects] == [f"column f: '{shown}' is not a valid float"]


def test_a_float_overflow_in_a_sum_only_costs_the_slow_path() -> None:
    # Given two finite floats whose sum is infinite
    spec = _spec([{"name": "k", "type": "string"}, {"name": "f", "type": "float"}], ["k"])
    rows: list[dict[str, str | None]] = [{"k": "a", "f": "1.7e308"}, {"k": "b", "f": "1.7e308"}]
    # When transformed / Then both load
    result = transform_rows(rows, spec, {}, first_row=1)
    assert result.rejects == []
    assert [row["f"] for row in result.rows] == [1.7e308, 1.7e308]


# --- timestamps and dates --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "loaded"),
    [
        ("2013-01-01T00:00:00+05:30:15.5", "2012-12-31T18:29:44.500000+00:00"),  # offset Postgres refuses
        ("2013-01-01T00:00:00+05:30:15", "2012-12-31T18:29:45+00:00"),
        ("2013-01-01T05:06:07-05:00", "2013-01-01T10:06:07+00:00"),
        ("2013-01-01T05:06:07Z", "2013-01-01T05:06:07+00:00"),
        ("2013-01-01T05:06:07.123456789", "2013-01-01T05:06:07.123456+00:00"),  # Postgres keeps microseconds
        ("9999-12-31T23:59:59.999999+00:00", "9999-12-31T23:59:59.999999+00:00"),
        ("9999-12-31T23:59:59", "9999-12-31T23:59:59+00:00"),
        ("0001-01-01T00:00:00", "0001-01-01T00:00:00+00:00"),
        ("0001-01-01T05:00:00+05:00", "0001-01-01T00:00:00+00:00"),
    ],
)
def test_timestamps_are_sent_in_utc(text: str, loaded: str) -> None:
    # Given a timestamp with or without an offset / When transformed
    _, result = _one_bad_value("ts", text)
    # Then it is the same instant, in UTC
    assert result.rejects == []
    assert result.rows[2]["ts"] == loaded


@pytest.mark.parametrize(
    "text",
    [
        "9999-12-31T23:00:00-05:00",  # 10000-01-01T04:00Z
        "0001-01-01T00:59:59.999999+01:00",  # a microsecond before year 1 in UTC
        "0001-01-01T00:00:00+01:00",  # 0000-12-31T23:00Z
    ],
)
def test_timestamps_with_no_utc_form_are_rejected_not_raised(text: str) -> None:
    # Given an instant outside years 1 to 9999 in UTC (Python raises OverflowError converting it)
    # When transformed
    _, result = _one_bad_value("ts", text)
    # Then its row is rejected and the others load
    assert [(r.row, r.reason) for r in result.rejects] == [
        (103, f"column ts: '{text}' is not a valid timestamp")
    ]
    assert len(result.rows) == 3


def test_a_filter_on_timestamps_compares_instants_after_the_utc_conversion() -> None:
    # Given timestamps in three offsets and a filter at 10:00 UTC
    spec = _spec(
        [{"name": "k", "type": "string"}, {"name": "ts", "type": "timestamp"}],
        ["k"],
        filters=[{"column": "ts", "op": "ge", "value": "2013-01-01T05:00:00-05:00"}],
    )
    rows: list[dict[str, str | None]] = [
        {"k": "a", "ts": "2013-01-01T09:59:59Z"},
        {"k": "b", "ts": "2013-01-01T15:30:00+05:30"},
        {"k": "c", "ts": "2013-01-01T06:00:00-04:00"},
    ]
    # When transformed / Then the two at or after 10:00 UTC stay
    result = transform_rows(rows, spec, {}, first_row=1)
    assert [(row["k"], row["ts"]) for row in result.rows] == [
        ("b", "2013-01-01T10:00:00+00:00"),
        ("c", "2013-01-01T10:00:00+00:00"),
    ]
    assert result.filtered == 1


def test_a_filter_operand_with_no_utc_form_is_a_field_error() -> None:
    # Given a filter on a timestamp that has no UTC form / When the spec is validated
    # Then it is refused naming the field, not raised as an OverflowError
    with pytest.raises(
        ValidationError, match=r"filters\[0\]\.value: '9999-12-31T23:00:00-05:00' is not a valid timestamp"
    ):
        _spec(
            [{"name": "k", "type": "string"}, {"name": "ts", "type": "timestamp"}],
            ["k"],
            filters=[{"column": "ts", "op": "lt", "value": "9999-12-31T23:00:00-05:00"}],
        )


@pytest.mark.parametrize(
    ("text", "loaded"),
    [("0001-01-01", "0001-01-01"), ("9999-12-31", "9999-12-31"), ("20130102", "2013-01-02")],
)
def test_dates_in_years_1_to_9999_are_kept(text: str, loaded: str) -> None:
    # Given a date at the edges of years 1 to 9999 / When transformed
    _, result = _one_bad_value("day", text)
    # Then it is kept in ISO form
    assert result.rejects == []
    assert result.rows[2]["day"] == loaded


@pytest.mark.parametrize("text", ["10000-01-01", "0000-12-31", "-0001-01-01"])
def test_dates_outside_years_1_to_9999_are_rejected(text: str) -> None:
    # Given a date outside years 1 to 9999 / When transformed
    _, result = _one_bad_value("day", text)
    # Then its row is rejected
    assert [r.reason for r in result.rejects] == [f"column day: '{text}' is not a valid date"]


# --- a cast that raises an ArithmeticError rejects its row, on every path ----------------------------


def _overflowing(text: str) -> Any:
    raise OverflowError("too big")


@pytest.mark.parametrize("column_type", ["int", "float", "decimal", "bool", "date", "timestamp"])
def test_an_arithmetic_error_in_a_cast_rejects_the_row_instead_of_failing_the_chunk(
    monkeypatch: pytest.MonkeyPatch, column_type: str
) -> None:
    # Given a cast that raises OverflowError on one value (int and float reach it once their builtin
    # fast path has failed on that value)
    original = spec_module.CASTERS[column_type]

    def cast(text: str) -> Any:
        return _overflowing(text) if text == "boom" else original(text)

    monkeypatch.setitem(spec_module.CASTERS, column_type, cast)
    spec = _spec([{"name": "k", "type": "int"}, {"name": "v", "type": column_type}], ["k"])
    rows: list[dict[str, str | None]] = [
        {"k": "1", "v": None},
        {"k": "2", "v": "boom"},
        {"k": "3", "v": None},
    ]
    # When transformed
    result = transform_rows(rows, spec, {}, first_row=1)
    # Then that row is rejected and the others load
    assert [(r.row, r.reason) for r in result.rejects] == [
        (2, f"column v: 'boom' is not a valid {column_type}")
    ]
    assert [row["k"] for row in result.rows] == [1, 3]


@pytest.mark.parametrize("column_type", ["int", "float"])
def test_an_arithmetic_error_in_a_fast_cast_falls_back_to_the_per_value_cast(
    monkeypatch: pytest.MonkeyPatch, column_type: str
) -> None:
    # Given a whole-column cast that raises OverflowError
    monkeypatch.setitem(transform_module._FAST_CASTS, column_type, (_overflowing, lambda values: True))
    spec = _spec([{"name": "k", "type": "int"}, {"name": "v", "type": column_type}], ["k"])
    rows: list[dict[str, str | None]] = [{"k": "1", "v": "7"}, {"k": "2", "v": "x"}]
    # When transformed
    result = transform_rows(rows, spec, {}, first_row=1)
    # Then the column is cast value by value: the good row loads, the bad one is rejected
    assert result.rows == [{"k": 1, "v": 7}]
    assert [(r.row, r.reason) for r in result.rejects] == [(2, f"column v: 'x' is not a valid {column_type}")]


def test_an_arithmetic_error_in_a_reference_cast_rejects_the_joined_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a reference column whose cast raises OverflowError on one value
    monkeypatch.setitem(spec_module.CASTERS, "date", _overflowing)
    refs = {"airports": ReferenceTable.from_records([{"faa": "JFK", "name": "Kennedy", "alt": "x"}], ["faa"])}
    # When a flight joins to it
    result = transform_rows([{"id": "1", "dest": "JFK"}], _join_spec(alt_type="date"), refs, first_row=1)
    # Then the flight is rejected
    assert [r.reason for r in result.rejects] == ["join airports: column alt: 'x' is not a valid date"]


def test_a_row_whose_key_is_too_long_to_index_is_rejected_naming_the_key() -> None:
    # Given a spec keyed on (k, n) and rows whose keys are 2,000 bytes, 2,001 bytes and 1,999 bytes in 3-byte
    # characters (Postgres indexes at most 2,704 bytes a row)
    spec = TaskSpec.model_validate(
        {
            "source": {"uri": "s3://b/k.csv", "format": "csv"},
            "columns": [{"name": "k", "type": "string"}, {"name": "n", "type": "string"}],
            "target": {"table": "t", "key": ["k", "n"]},
        }
    )
    rows = [{"k": "a" * 1999, "n": "b"}, {"k": "a" * 2000, "n": "b"}, {"k": "€" * 666, "n": "b"}]
    # When the chunk is transformed
    result = transform_rows(rows, spec, {}, first_row=1)
    # Then only the 2,001-byte key is rejected, with its size and the limit
    assert [row["n"] for row in result.rows] == ["b", "b"]
    assert [(reject.row, reject.reason) for reject in result.rejects] == [
        (2, "key (k, n): 2,001 bytes, over the limit of 2,000 (a Postgres index row holds 2,704)")
    ]
