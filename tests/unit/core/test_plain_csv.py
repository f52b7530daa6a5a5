"""Arrow parses a plain CSV (readers.plain_csv_table) only where it reads exactly what the csv module reads:
same table, or None and the csv path decides (and names what is wrong)."""

from __future__ import annotations

import io
import random
from typing import Any

import pyarrow as pa
import pytest
from busline_core.errors import SourceUnreadable
from busline_core.ranges import header_of, plan_ranges, range_records, range_table
from busline_core.readers import has_line_longer_than, iter_records, plain_csv_table
from busline_core.storage import raw_table_from_records

BOM = b"\xef\xbb\xbf"


def _by_csv_module(text: bytes, **options: Any) -> pa.Table | SourceUnreadable:
    try:
        return raw_table_from_records(list(iter_records(io.BytesIO(text), "csv", name_hint="t", **options)))
    except SourceUnreadable as error:  # SourceOverLimit too
        return error


def test_a_plain_csv_is_the_csv_modules_table() -> None:
    # Given a plain CSV: nulls (NA and empty), a blank line, text that is not ASCII, no final line ending
    text = "a,b,c\n1,NA,x\n\n2,,漢字\n3,4,\n".encode() + b"5,6,end"
    # When Arrow parses it
    table = plain_csv_table(text)
    # Then it is the csv module's table, nulls where the null values are
    assert table is not None
    assert table.equals(_by_csv_module(text))
    assert table.to_pydict() == {
        "a": ["1", "2", "3", "5"],
        "b": [None, None, "4", "6"],
        "c": ["x", "漢字", None, "end"],
    }
    assert table.schema == pa.schema([("a", pa.string()), ("b", pa.string()), ("c", pa.string())])


def test_custom_delimiter_and_null_values() -> None:
    text = b"a;b\n-;x\nNA;\n"
    table = plain_csv_table(text, delimiter=";", null_values=["-"])
    assert table is not None
    assert table.to_pydict() == {"a": [None, "NA"], "b": ["x", ""]}
    assert table.equals(_by_csv_module(text, delimiter=";", null_values=["-"]))


@pytest.mark.parametrize(
    "text",
    [
        b'a,b\n"1",2\n',  # a quote: csv's quoting rules decide
        b"a,b\r\n1,2\r\n",  # a carriage return
        b"a,b\n1,2\x00\n",  # NUL: not CSV text
        BOM + b"a,b\n1,2\n",  # a byte-order mark
        b"a,b\n1,\xe9\n",  # not UTF-8
        b"a,b\n1,\xed\xa0\x80\n",  # an encoded surrogate (Arrow would take it)
        b"a,a\n1,2\n",  # a column named twice
        b"\na,b\n1,2\n",  # a blank first line (csv's header would be empty)
        b"a,b\n1,2,3\n",  # a row wider than the header
        b"a,b\n1\n",  # a row narrower than the header
        b"a,b\n",  # no row: the csv path's empty table has no columns
        b"",
    ],
)
def test_anything_the_two_could_read_apart_goes_to_the_csv_module(text: bytes) -> None:
    assert plain_csv_table(text) is None


def test_a_line_over_the_record_limit_goes_to_the_csv_module(monkeypatch: pytest.MonkeyPatch) -> None:
    from busline_core import readers

    monkeypatch.setattr(readers, "MAX_RECORD_LENGTH", 16)
    assert plain_csv_table(b"a,b\n1,2\n" + b"3," + b"x" * 20 + b"\n") is None
    assert plain_csv_table(b"a,b\n1,2\n" + b"3," + b"x" * 10 + b"\n") is not None


def test_random_texts_read_alike_or_go_to_the_csv_module() -> None:
    # Given 3,000 random texts thick with what tells the two apart (quotes, CRs, NUL, marks, bad bytes,
    # blank lines, nulls, ragged rows, repeated names)
    rng = random.Random(20261130)
    pieces = [b"a", b"7", b" ", b",", b",", b"\n", b"\n", b"NA", b"", b'"', b"\r", b"\x00", BOM, b"\xc3\xa9",
              b"\xe9", "漢".encode(), b";"]  # fmt: skip
    fast = 0
    for _ in range(3000):
        width = rng.randint(1, 4)
        names = [rng.choice(["a", "b", "c", "d", "a "]) for _ in range(width)]
        lines = [",".join(names)]
        for _row in range(rng.randint(0, 8)):
            fields = width + (rng.choice([-1, 1]) if rng.random() < 0.05 else 0)
            values = (
                "".join(rng.choice(["x", "NA", "", "é", " ", "1"]) for _ in range(rng.randint(0, 2)))
                for _ in range(max(1, fields))
            )
            lines.append(",".join(values))
        text = "\n".join(lines).encode() + (b"\n" if rng.random() < 0.7 else b"")
        if rng.random() < 0.5:  # and a few raw bytes anywhere
            at = rng.randint(0, len(text))
            text = text[:at] + rng.choice(pieces) + text[at:]
        # When Arrow is offered it
        table = plain_csv_table(text)
        expected = _by_csv_module(text)
        # Then it reads the csv module's table, or leaves the text to the csv module
        if table is not None:
            fast += 1
            assert isinstance(expected, pa.Table), (text, expected)
            assert table.equals(expected), text
    assert fast == 1064  # of 3,000: the rest had something that tells the two apart


def test_a_range_table_is_the_records_of_the_range_fast_or_not() -> None:
    # Given a plain CSV and the same with one quoted value, each planned in ranges of 40 bytes
    plain = b"id,name\n" + b"".join(f"{i},n{i}\n".encode() for i in range(50))
    quoted = plain.replace(b"7,n7\n", b'7,"n,7"\n')
    for data in (plain, quoted):

        def fetch(start: int, end: int, data: bytes = data) -> bytes:
            return data[start:end]

        header = header_of(fetch, len(data))
        for byte_range in plan_ranges(len(data), 40):
            # When a range is read as a table
            table = range_table(fetch, byte_range, len(data), "csv", header=header)
            # Then it is the table of the range's records
            records = list(range_records(fetch, byte_range, len(data), "csv", header=header))
            assert table.equals(raw_table_from_records(records)), (data, byte_range)


def test_the_long_line_check_answers_as_measuring_every_line() -> None:
    # Given 4,000 random texts of short and long lines, with and without a last line ending
    rng = random.Random(20261202)
    for _ in range(4000):
        limit = rng.randint(1, 12)
        lines = [b"x" * rng.choice((0, 1, limit // 2, limit - 1, limit, limit + 1, 2 * limit, rng.randint(0, 30)))
                 for _ in range(rng.randint(0, 6))]  # fmt: skip
        text = b"\n".join(lines) + rng.choice((b"", b"\n"))
        # When it is checked for a line over the limit
        # Then the answer is the one measuring every line gives
        assert has_line_longer_than(text, limit) == (max(map(len, text.split(b"\n"))) > limit), (text, limit)
