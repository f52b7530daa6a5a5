"""Split a source into byte ranges, and read the records of one range, the classic way (as Hadoop's
line records or BigQuery's CSV loads do).

A range owns the records that start inside it: it skips to the first record start after its first byte
(unless it begins the source) and reads on past its last byte to finish the record it cuts. The records
of all ranges, in range order, are then exactly those one reader of the whole source yields.

A record ends where the readers end a line: their text is read with newline="", which ends a line at
"\\n", "\\r\\n" and a lone "\\r" (and csv does the same), so those are the boundaries here too; "\\r\\n"
is one ending, never a boundary between its two bytes. None of these bytes occurs inside a multi-byte
UTF-8 character, so a range always hands over whole characters. A CSV field holding a line ending would
make a line a different thing than a record: such a source declares `multilineFields` and is read whole.

Nothing here opens a source: `fetch(start, end_exclusive)` is bound by the caller to an S3 ranged
get_object or an HTTP GET with a Range header, and the records are parsed by readers.iter_records, limits
included.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import pyarrow as pa

from .errors import SourceOverLimit, SourceUnreadable
from .limits import MAX_RECORD_LENGTH
from .readers import Record, iter_records, plain_csv_table
from .storage import raw_table_from_records

# A range becomes one chunk of work. 2 MiB is the default chunk's size on the demo source (flights.csv:
# 20,000 rows of about 92 bytes, 1.8 MB), so a range costs the memory and time the steps are sized for;
# its records are at most 2 MiB plus one record of text whatever their count, and the largest source
# (MAX_SOURCE_BYTES, 8 GiB) makes 4,096 ranges, well under MAX_CHUNKS_PER_TASK.
RANGE_BYTES: Final = 2 * 1024**2

# Formats whose records are lines; a JSON array's items are not.
SPLITTABLE_FORMATS = frozenset({"csv", "ndjson"})
# Compressed sources are read from their first byte on (readers.py decompresses .gz and .zip; the
# others are not text at all), so byte offsets of the stored object mean nothing to their records.
COMPRESSED_SUFFIXES = (
    ".gz", ".gzip", ".tgz", ".zip", ".bz2", ".tbz2", ".xz", ".txz", ".lzma", ".lz", ".lz4",
    ".zst", ".zstd", ".br", ".z", ".7z", ".rar", ".sz", ".snappy", ".deflate",
)  # fmt: skip
_RANGED_SCHEMES = frozenset({"s3", "http", "https"})

Fetch = Callable[[int, int], bytes]

_BOM = b"\xef\xbb\xbf"
# A range's own bytes come in one GET when they fit (a default range always does): a range costs that
# GET and, usually, one more to finish its last record. Bigger ranges come in pieces of this size.
_RANGE_FETCH_BYTES = 8 * 1024**2
# Past a range's end (and for a header) only the rest of one record is wanted, mostly a few hundred
# bytes: reads start small and double, so a long record costs a few GETs, not one per 64 KiB.
_FIRST_FETCH_PAST_END = 64 * 1024
_MAX_FETCH_PAST_END = 1024**2
# A record is at most MAX_RECORD_LENGTH characters of 1 to 4 bytes: a line not ended within this many
# bytes is over the limit the readers enforce, and is not read to its end (which may be the source's).
_MAX_RECORD_BYTES = 4 * MAX_RECORD_LENGTH


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Bytes [start, end) of a source, the index-th range of its plan."""

    start: int
    end: int
    index: int

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end or self.index < 0:
            raise ValueError(f"not a byte range: start {self.start}, end {self.end}, index {self.index}")


def plan_ranges(size: int, range_bytes: int = RANGE_BYTES) -> list[ByteRange]:
    """Ranges of `range_bytes` (the last one shorter) covering a source of `size` bytes without gap or
    overlap, in order; an empty source is one empty range, so every source has a range to report it."""
    if size < 0:
        raise ValueError(f"a source has a size of 0 bytes or more, not {size}")
    if range_bytes < 1:
        raise ValueError(f"a range holds at least 1 byte, not {range_bytes}")
    if size == 0:
        return [ByteRange(0, 0, 0)]
    return [
        ByteRange(start, min(start + range_bytes, size), index)
        for index, start in enumerate(range(0, size, range_bytes))
    ]


def splittable(fmt: str, uri: str, multiline_fields: bool) -> bool:
    """Whether a source can be read range by range: CSV or NDJSON, s3:// or http(s):// (the caller still
    has to find that the server honours Range), not compressed by its name's suffix (as open_source
    judges it), and not declared to hold line endings inside fields."""
    parts = urlsplit(uri)
    name = unquote(parts.path).lower()
    return (
        fmt in SPLITTABLE_FORMATS
        and not multiline_fields
        and parts.scheme.lower() in _RANGED_SCHEMES
        and not name.endswith(COMPRESSED_SUFFIXES)
    )


def header_of(fetch: Fetch, size: int, *, name_hint: str = "source") -> bytes:
    """The first line of the source with its line ending ("\\n", "\\r\\n" or "\\r"; none when the source
    is one line), without a UTF-8 byte-order mark: a CSV's header, for the ranges after the first.

    Read in small ranged fetches; a line of more than 4 * MAX_RECORD_LENGTH bytes (more characters than
    a record may have) raises SourceOverLimit.
    """
    reader = _Reader(fetch, size, 0, name_hint)
    header = b""
    step = _FIRST_FETCH_PAST_END
    while piece := reader.read(size, step):
        # A "\r" that ended the last read may be the first half of a "\r\n".
        searched_from = max(len(header) - 1, 0)
        header += piece
        cut = _line_end(header, searched_from)
        if (len(header) if cut is None else cut) > _MAX_RECORD_BYTES:
            raise _line_too_long(name_hint, 0)
        if cut is not None:
            return header[:cut].removeprefix(_BOM)
        step = min(2 * step, _MAX_FETCH_PAST_END)
    return header.removeprefix(_BOM)


def iter_range_bytes(
    fetch: Fetch, byte_range: ByteRange, size: int, *, skip_header: bool, name_hint: str = "source"
) -> Iterator[bytes]:
    """The bytes of the records that start inside `byte_range`, in pieces, line endings included.

    A range past the first owns the record at its start only if the byte before it ends a line; it reads
    on past its end to finish its last record (to the next line ending, or the end of the source). The
    first range drops a UTF-8 byte-order mark and, with `skip_header`, the header line with it. A range
    in which no record starts yields nothing. Concatenated over a plan's ranges the pieces are the source
    itself, less its byte-order mark (and header).

    Memory: the range's bytes (fetched whole up to 8 MiB) plus pieces of up to 1 MiB of its last record.
    A source that changes size while read, or a server that ignores the range, raises SourceUnreadable;
    a last record going on for more than 4 * MAX_RECORD_LENGTH bytes past the end (more characters than
    a record may have) raises SourceOverLimit, without reading it to its end.
    """
    start, end = byte_range.start, min(byte_range.end, size)
    if start >= end:
        return
    if start == 0 and not skip_header:
        # The first record starts at byte 0 even behind a byte-order mark: were it owned from byte 3,
        # a first range shorter than the mark would own nothing and the next would skip the record.
        reader = _Reader(fetch, size, 0, name_hint, read_ahead_to=end + _FIRST_FETCH_PAST_END)
        yield from _without_bom(_to_end_of_last_record(reader, b"", end))
        return
    # The first record's start is right after the first line ending at or after byte start - 1 (at or
    # after byte 0 in the first range: the header's).
    reader = _Reader(fetch, size, start - 1 if start else 0, name_hint, read_ahead_to=end + _FIRST_FETCH_PAST_END)
    owned = _from_first_record(reader, end)
    if owned is not None:
        yield from _to_end_of_last_record(reader, owned, end)


def range_bytes(
    fetch: Fetch, byte_range: ByteRange, size: int, *, skip_header: bool, name_hint: str = "source"
) -> bytes:
    """iter_range_bytes, joined: the range's records as one bytes value."""
    return b"".join(iter_range_bytes(fetch, byte_range, size, skip_header=skip_header, name_hint=name_hint))


def range_records(
    fetch: Fetch,
    byte_range: ByteRange,
    size: int,
    fmt: str,
    *,
    header: bytes | None = None,
    name_hint: str = "source",
    delimiter: str = ",",
    null_values: Sequence[str] = ("NA", ""),
) -> Iterator[Record]:
    """The records of one range, parsed by readers.iter_records (its formats' rules and limits), streamed.

    For CSV, `header` is header_of's value, which a plan can fetch once for all its ranges; it is
    fetched here when None. An error of the range's records says which bytes, as its line numbers count
    from the range's first record (line 2 in a CSV, whose line 1 is the header).
    """
    header = _header_for(fetch, size, fmt, header, name_hint)
    is_csv = fmt == "csv"
    yield from _parsed(
        iter_range_bytes(fetch, byte_range, size, skip_header=is_csv, name_hint=name_hint),
        byte_range, fmt, header=header, name_hint=name_hint, delimiter=delimiter, null_values=null_values,
    )  # fmt: skip


def range_table(
    fetch: Fetch,
    byte_range: ByteRange,
    size: int,
    fmt: str,
    *,
    header: bytes | None = None,
    name_hint: str = "source",
    delimiter: str = ",",
    null_values: Sequence[str] = ("NA", ""),
) -> pa.Table:
    """The records of one range as a raw chunk (storage.raw_table_from_records), the same table
    range_records gives. A plain CSV range (readers.plain_csv_table) is parsed by Arrow in one call; any
    other is parsed record by record from the same bytes, fetched once."""
    header = _header_for(fetch, size, fmt, header, name_hint)
    is_csv = fmt == "csv"
    body = range_bytes(fetch, byte_range, size, skip_header=is_csv, name_hint=name_hint)
    if is_csv and header:
        table = plain_csv_table(header + body, delimiter=delimiter, null_values=null_values)
        if table is not None:
            return table
    records = _parsed(
        iter((body,)),
        byte_range,
        fmt,
        header=header,
        name_hint=name_hint,
        delimiter=delimiter,
        null_values=null_values,
    )
    return raw_table_from_records(list(records))


def _header_for(fetch: Fetch, size: int, fmt: str, header: bytes | None, name_hint: str) -> bytes | None:
    """The header a range of a `fmt` source is read with: the one given, or a CSV's fetched."""
    if fmt not in SPLITTABLE_FORMATS:
        raise ValueError(
            f"only {' and '.join(sorted(SPLITTABLE_FORMATS))} sources are read by range, not {fmt}"
        )
    if fmt == "csv" and header is None:
        return header_of(fetch, size, name_hint=name_hint)
    return header


def _parsed(
    pieces: Iterator[bytes],
    byte_range: ByteRange,
    fmt: str,
    *,
    header: bytes | None,
    name_hint: str,
    delimiter: str,
    null_values: Sequence[str],
) -> Iterator[Record]:
    is_csv = fmt == "csv"
    # iter_records decodes utf-8-sig, which drops one mark at the start of what it reads. The source's
    # own mark is gone already, so a mark is put first for it to drop: the text is then exactly what
    # the whole-source reader sees (a second mark in the source, or a mark in a range's first record,
    # stays data for both).
    pieces = itertools.chain((_BOM, header or b""), pieces)
    with io.BufferedReader(_PiecesStream(pieces), buffer_size=_FIRST_FETCH_PAST_END) as stream:
        try:
            yield from iter_records(
                stream, fmt, name_hint=name_hint, delimiter=delimiter, null_values=null_values
            )
        except SourceUnreadable as error:
            raise _in_range(error, byte_range, is_csv) from error


# --- reading ------------------------------------------------------------------------------------


class _Reader:
    """The source read forward from `position` in ranged fetches, never past its size.

    With `read_ahead_to`, the first fetch also takes the bytes up to there: a range's reader asks for the
    first _FIRST_FETCH_PAST_END bytes past its end with its own bytes, so the record its end cuts is most
    often finished without a second GET (one call per range instead of two)."""

    def __init__(self, fetch: Fetch, size: int, position: int, name_hint: str, *, read_ahead_to: int = 0) -> None:
        self._fetch = fetch
        self.size = size
        self.position = position
        self.name = name_hint
        self._read_ahead_to = read_ahead_to
        self._buffer = memoryview(b"")
        self._buffer_start = position

    def read(self, limit: int, most: int) -> bytes:
        """The next bytes, at most `most` of them and none at or past `limit`; b"" when there are none."""
        stop = min(limit, self.size, self.position + most)
        if stop <= self.position:
            return b""
        buffered_end = self._buffer_start + len(self._buffer)
        if self.position >= buffered_end:
            fetch_to = min(self.size, max(stop, self._read_ahead_to))
            self._read_ahead_to = 0
            data = self._fetch(self.position, fetch_to)
            if len(data) != fetch_to - self.position:
                raise SourceUnreadable(
                    self.name,
                    f"bytes {self.position:,} to {fetch_to:,} came back as {len(data):,} bytes: the source "
                    "changed while it was read, or its server does not honour byte ranges",
                )
            self._buffer, self._buffer_start, buffered_end = memoryview(data), self.position, fetch_to
        stop = min(stop, buffered_end)
        piece = bytes(self._buffer[self.position - self._buffer_start : stop - self._buffer_start])
        self.position = stop
        if stop == buffered_end:
            self._buffer = memoryview(b"")
        return piece


def _line_end(data: bytes, at: int = 0) -> int | None:
    """The index just past the first line ending in data[at:], None when no line surely ends there.

    A "\\r" as the last byte is not sure: it is all of the ending, or the first half of a "\\r\\n".
    """
    newline = data.find(b"\n", at)
    carriage = data.find(b"\r", at, newline if newline >= 0 else len(data))
    if carriage < 0:
        return newline + 1 if newline >= 0 else None
    if carriage + 1 == len(data):
        return None
    return carriage + 2 if data[carriage + 1] == 0x0A else carriage + 1


def _from_first_record(reader: _Reader, end: int) -> bytes | None:
    """The bytes read so far from the first record start the reader meets, or None when that start is at
    or past `end` (the range owns no record); reads only within the range."""
    carry = b""  # a "\r" that ended the last read, which the next may pair with a "\n"
    while piece := reader.read(end, _RANGE_FETCH_BYTES):
        data = carry + piece
        cut = _line_end(data)
        if cut is not None:
            first_record = reader.position - len(data) + cut
            return data[cut:] if first_record < end else None
        carry = data[-1:] if data.endswith(b"\r") else b""
    return None


def _to_end_of_last_record(reader: _Reader, owned: bytes, end: int) -> Iterator[bytes]:
    """`owned`, the rest of the range, then the bytes past `end` up to the end of the record it cuts."""
    last = owned[-1:]
    if owned:
        yield owned
    while piece := reader.read(end, _RANGE_FETCH_BYTES):
        yield piece
        last = piece[-1:]
    if last == b"\n":
        return  # the range ends with a record
    after_carriage = last == b"\r"
    past_end = 0
    step = _FIRST_FETCH_PAST_END
    while piece := reader.read(reader.size, step):
        if after_carriage:
            if piece.startswith(b"\n"):
                yield b"\n"
            return
        cut = _line_end(piece)
        past_end += len(piece) if cut is None else cut
        if past_end > _MAX_RECORD_BYTES:
            raise _line_too_long(reader.name, end)
        if cut is not None:
            yield piece[:cut]
            return
        yield piece
        after_carriage = piece.endswith(b"\r")
        step = min(2 * step, _MAX_FETCH_PAST_END)


def _without_bom(pieces: Iterable[bytes]) -> Iterator[bytes]:
    head = b""
    pieces = iter(pieces)
    for piece in pieces:
        head += piece
        if len(head) >= len(_BOM):
            break
    if head := head.removeprefix(_BOM):
        yield head
    yield from pieces


def _line_too_long(name: str, at: int) -> SourceOverLimit:
    return SourceOverLimit(
        name,
        "MAX_RECORD_LENGTH",
        f"a line going on at byte {at:,} is not ended within {_MAX_RECORD_BYTES:,} bytes, so it is longer "
        f"than {MAX_RECORD_LENGTH:,} characters",
    )


def _in_range(error: SourceUnreadable, byte_range: ByteRange, is_csv: bool) -> SourceUnreadable:
    # The line numbers iter_records gives count from the range's start, not the source's.
    first_line = (
        "line 1 is the header, line 2 the range's first record" if is_csv else "line 1 is its first record"
    )
    where = f"range {byte_range.index} (bytes {byte_range.start:,} to {byte_range.end:,}; {first_line})"
    if isinstance(error, SourceOverLimit):
        detail = error.reason.removesuffix(f" (limit {error.limit})")
        return SourceOverLimit(error.uri, error.limit, f"{where}: {detail}")
    return SourceUnreadable(error.uri, f"{where}: {error.reason}")


class _PiecesStream(io.RawIOBase):
    """Pieces of bytes as a readable stream, for iter_records; holds one piece at a time."""

    def __init__(self, pieces: Iterator[bytes]) -> None:
        super().__init__()
        self._pieces = pieces
        self._rest = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._rest:
            piece = next(self._pieces, None)
            if piece is None:
                return 0
            self._rest = memoryview(piece)
        target = memoryview(buffer).cast("B")
        count = min(len(target), len(self._rest))
        target[:count] = self._rest[:count]
        self._rest = self._rest[count:]
        return count


__all__ = [
    "COMPRESSED_SUFFIXES",
    "RANGE_BYTES",
    "SPLITTABLE_FORMATS",
    "ByteRange",
    "Fetch",
    "header_of",
    "iter_range_bytes",
    "plan_ranges",
    "range_bytes",
    "range_records",
    "splittable",
]
