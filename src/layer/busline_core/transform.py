"""Cast, validate, filter and join one chunk of raw rows. Pure: no I/O, no clock.

Each source row ends up as exactly one of: an output row, a reject (with its source row number and
reason) or a filtered row, so read = transformed + rejected + filtered always holds.

This is the hot loop of the pipeline (hundreds of thousands of rows per task), so a chunk is an Apache
Arrow table and every step runs over whole columns with pyarrow.compute: a column is parsed by one kernel
and cleared by another (no NUL, every float finite), required values, key sizes and filters are masks,
and a join looks up all its keys in one hash lookup. The rules themselves are the Python casters of
spec.py: a kernel stands in for one only where it gives the same answer, and a column of a chunk that its
kernel cannot clear (a bad value, or text Arrow reads otherwise than Python) is redone value by value with
the caster, so the result is the same whichever path a column takes. Decimals, booleans, dates and
timestamps have no kernel that reads them as Python does: they are cast in Python once per distinct value
of the chunk (a chunk of flights has ~20 distinct hours). Reference values are cast once per reference
table and kept as Arrow arrays.

A str may hold a lone surrogate (what a JSON "\\ud800" decodes to), which UTF-8 cannot encode: such a value
travels as the bytes Python's "surrogatepass" encodes it to (a raw chunk holds them in a binary column,
transform views them as a string column), which are not UTF-8, so no text check clears its column and the
per-value rules reject its row, spelling the surrogate as an escape.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .contracts import Reject
from .limits import MAX_KEY_BYTES
from .spec import (
    CASTERS,
    LIST_OPS,
    SCALAR_OPS,
    OutputColumn,
    TaskSpec,
    cast_literal,
    is_loadable_text,
    output_columns,
)

__all__ = [
    "ArrowProjection",
    "OutputColumn",
    "ReferenceTable",
    "Reject",
    "TableResult",
    "TransformResult",
    "arrow_type",
    "output_columns",
    "output_schema",
    "output_schema_of",
    "transform_rows",
    "transform_table",
]

RawRow = Mapping[str, str | None]
Key = tuple[str | None, ...]
_MAX_SHOWN_VALUE = 200  # keep reject reasons readable when a value is a whole paragraph
# What a failed cast raises: ArithmeticError covers an OverflowError or a decimal signal, which would
# otherwise fail the whole chunk, on every delivery, instead of rejecting one row. A kernel that cannot
# parse a value raises pa.ArrowInvalid, a ValueError.
_CAST_ERRORS = (ValueError, TypeError, ArithmeticError)


# --- the shape of a transformed table ---------------------------------------------------------------

_ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int": pa.int64(),  # Postgres bigint
    "float": pa.float64(),
    "bool": pa.bool_(),
    # The canonical text the casters give: a decimal keeps every digit (numeric reads it, exponent
    # included), a date is ISO and a timestamp its UTC instant in ISO form.
    "decimal": pa.string(),
    "date": pa.string(),
    "timestamp": pa.string(),
}


def arrow_type(column_type: str) -> pa.DataType:
    """The Arrow type holding a column type's values in a transformed table."""
    return _ARROW_TYPES[column_type]


def output_schema(spec: TaskSpec) -> pa.Schema:
    """The schema of a transformed table: output_columns(spec), in order, each of its arrow_type."""
    return output_schema_of(output_columns(spec))


def output_schema_of(columns: Sequence[OutputColumn]) -> pa.Schema:
    """The schema of a transformed table with these output columns (what load knows of a spec)."""
    return pa.schema([pa.field(column.name, arrow_type(column.type)) for column in columns])


@dataclass
class TableResult:
    table: pa.Table  # the output rows, with output_schema(spec)
    rejects: list[Reject]
    filtered: int


@dataclass
class TransformResult:
    rows: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    filtered: int = 0


# --- text between Python and Arrow ---------------------------------------------------------------


def _string_array(texts: Sequence[str | None]) -> pa.Array:
    """A string array of `texts`; one holding a lone surrogate is carried as "surrogatepass" bytes."""
    try:
        return pa.array(texts, pa.string())
    except UnicodeEncodeError:
        encoded = [None if text is None else text.encode("utf-8", "surrogatepass") for text in texts]
        # view, not cast: a cast would refuse the bytes that are not UTF-8, which are the point.
        return pa.array(encoded, pa.binary()).view(pa.string())


def _texts(array: pa.Array | pa.ChunkedArray) -> list[Any]:
    """The Python values of a column: for a text column, the very strs _string_array was given."""
    if pa.types.is_binary(array.type) or pa.types.is_large_binary(array.type):
        return [None if value is None else _decoded(value) for value in array.to_pylist()]
    try:
        if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
            return _strs(array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array)
        return array.to_pylist()
    except UnicodeDecodeError:
        raw = array.cast(pa.large_binary() if pa.types.is_large_string(array.type) else pa.binary())
        return [None if value is None else _decoded(value) for value in raw.to_pylist()]


def _strs(array: pa.Array) -> list[str | None]:
    """What to_pylist gives for a string or large_string array, read straight from its offsets and data:
    to_pylist makes a scalar per value, which made the rows of a chunk's rejects a quarter of its transform
    (NumPy would do it too, but the layer has no NumPy). UnicodeDecodeError for data that is not UTF-8."""
    length = len(array)
    if length == 0:
        return []
    width = 8 if pa.types.is_large_string(array.type) else 4
    _, offsets_buffer, data_buffer = array.buffers()
    window = memoryview(offsets_buffer)[array.offset * width : (array.offset + length + 1) * width]
    offsets = window.cast("q" if width == 8 else "i")  # Arrow's buffers are little-endian, as Lambda's CPUs
    start, end = offsets[0], offsets[length]
    data = bytes(memoryview(data_buffer)[start:end]) if data_buffer is not None and end > start else b""
    text = data.decode("utf-8")
    bounds = [offset - start for offset in offsets]
    values: list[str | None]
    if len(text) == len(data):  # ASCII, the usual case: byte offsets are character offsets
        values = [text[bounds[i] : bounds[i + 1]] for i in range(length)]
    else:
        values = [data[bounds[i] : bounds[i + 1]].decode("utf-8") for i in range(length)]
    if array.null_count:
        for index in pc.indices_nonzero(array.is_null()).to_pylist():
            values[index] = None
    return values


def _decoded(raw: bytes) -> str:
    try:
        return raw.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        # Not even surrogatepass bytes: each bad byte becomes a lone surrogate, shown and rejected as one.
        return raw.decode("utf-8", "surrogateescape")


def _any(mask: pa.Array) -> bool:
    return pc.any(mask).as_py() is True  # None (no values, or only nulls) is no


def _offsets(mask: pa.Array) -> list[int]:
    return pc.indices_nonzero(mask).to_pylist()


def _mask(offsets: Collection[int], length: int) -> pa.Array:
    flags = [False] * length
    for offset in offsets:
        flags[offset] = True
    return pa.array(flags, pa.bool_())


# --- reference tables ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ArrowProjection:
    """A projection() as Arrow arrays, all in one order: each reference key (as _join_key writes it), the
    typed values of each projected column (null for a key whose values do not cast) and each key's problem
    (null when its values cast)."""

    keys: pa.Array
    columns: list[pa.Array]
    problems: pa.Array


class ReferenceTable:
    """A small lookup source (airports, airlines…) indexed by its key columns' text values.

    Keys are compared as text, exactly as the sources hold them, so `UA` matches `UA` whatever the
    column types are. A row with a null key part can never match and is left out; when a key is
    repeated the first row wins.
    """

    def __init__(self, index: dict[Key, RawRow], key_columns: list[str], columns: frozenset[str]) -> None:
        self._index = index
        self.key_columns = list(key_columns)
        self.columns = columns  # column names seen in the reference (empty when it had no rows)
        self._projections: dict[tuple[tuple[str, str], ...], dict[Key, tuple[Any, ...] | str]] = {}
        self._arrow_projections: dict[tuple[tuple[str, str], ...], ArrowProjection] = {}

    @classmethod
    def from_records(cls, records: Iterable[RawRow], key_columns: list[str]) -> ReferenceTable:
        if not key_columns:
            raise ValueError("a reference table needs at least one key column")
        index: dict[Key, RawRow] = {}
        columns: frozenset[str] = frozenset()
        for record in records:
            if not columns:
                columns = frozenset(record)
                missing = [column for column in key_columns if column not in columns]
                if missing:
                    raise ValueError(f"reference has no key column {', '.join(missing)}")
            key = tuple(record.get(column) for column in key_columns)
            if None not in key:
                index.setdefault(key, record)
        return cls(index, key_columns, columns)

    def __len__(self) -> int:
        return len(self._index)

    def projection(self, columns: tuple[tuple[str, str], ...]) -> dict[Key, tuple[Any, ...] | str]:
        """key -> typed values of `columns` ((reference column, type) pairs), or an error text.

        Computed once per table and column list: a warm container reuses its reference tables
        across chunks, so the casting cost is paid once, not once per flight.
        """
        cached = self._projections.get(columns)
        if cached is not None:
            return cached
        if self.columns:
            missing = [name for name, _ in columns if name not in self.columns]
            if missing:
                raise ValueError(f"reference has no column {', '.join(missing)}")
        casters = [(name, column_type, CASTERS[column_type]) for name, column_type in columns]
        projected: dict[Key, tuple[Any, ...] | str] = {}
        for key, record in self._index.items():
            values: list[Any] = []
            problem = None
            for name, column_type, cast in casters:
                text = record.get(name)
                if text is None:
                    values.append(None)
                    continue
                try:
                    values.append(cast(text))
                except _CAST_ERRORS:
                    problem = f"column {name}: {_show(text)} is not a valid {column_type}"
                    break
            # A bad reference value rejects only the rows that join to it, with this reason.
            projected[key] = problem if problem is not None else tuple(values)
        self._projections[columns] = projected
        return projected

    def arrow_projection(self, columns: tuple[tuple[str, str], ...]) -> ArrowProjection:
        """projection(columns) as Arrow arrays, cached the same way (so built once per warm container)."""
        cached = self._arrow_projections.get(columns)
        if cached is not None:
            return cached
        projected = self.projection(columns)
        keys = list(projected)
        matches = list(projected.values())
        key_parts = [_string_array([key[part] for key in keys]) for part in range(len(self.key_columns))]
        arrays = [
            pa.array(
                [None if isinstance(match, str) else match[position] for match in matches], arrow_type(kind)
            )
            for position, (_, kind) in enumerate(columns)
        ]
        problems = _string_array([match if isinstance(match, str) else None for match in matches])
        arrow = ArrowProjection(_join_key(key_parts), arrays, problems)
        self._arrow_projections[columns] = arrow
        return arrow


def _join_key(parts: Sequence[pa.Array]) -> pa.Array:
    """One text per row for a key of one or more columns, null when a part is null.

    Each part of a key of several columns is written as its byte length, ':' and its bytes, so no two
    different keys give the same text, whatever characters their parts hold (a separator alone would
    be ambiguous as soon as a value held it).
    """
    if len(parts) == 1:
        return parts[0]
    pieces: list[pa.Array] = []
    for part in parts:
        pieces.extend((pc.cast(pc.binary_length(part), pa.string()), part))
    return pc.binary_join_element_wise(*pieces, ":")


# --- reject reasons and data ---------------------------------------------------------------------


def _show(text: str) -> str:
    if len(text) > _MAX_SHOWN_VALUE:
        text = text[:_MAX_SHOWN_VALUE] + "…"
    if not is_loadable_text(text):
        text = _escaped(text)
    return f"'{text}'"


def _escaped(text: str) -> str:
    """`text` with NUL and lone surrogates spelled as escapes (\\x00, \\ud800), so a reason shows them
    and can be written as UTF-8 JSON (a lone surrogate cannot be encoded at all)."""
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def _reject_data(row: RawRow) -> dict[str, Any]:
    """The raw row of a reject, as UTF-8 JSON can hold it.

    Every field is kept, in the spec or not, and any of them may hold a lone surrogate: written as
    is, it would fail the chunk's rejects file on every delivery, so it is spelled as an escape.
    A NUL needs nothing (JSON escapes it).
    """
    data = dict(row)
    try:
        if "".join(data).isascii() and "".join(filter(None, data.values())).isascii():
            return data
    except TypeError:  # a value that is not text: looked at field by field
        pass
    return {_encodable(name): _encodable(value) for name, value in data.items()}


def _encodable(value: Any) -> Any:
    if not isinstance(value, str) or value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def _table_rows(table: pa.Table, offsets: list[int]) -> list[RawRow]:
    """Rows `offsets` of `table` as the reader gave them: every column, null as None."""
    if not offsets:
        return []
    taken = table.take(pa.array(offsets, pa.int64()))
    names = taken.column_names
    if not names:
        return [{} for _ in offsets]
    columns = [_texts(column) for column in taken.columns]
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


# --- compiled plan ------------------------------------------------------------------------------

# Typed values are JSON-able, so decimals and timestamps are text; filters compare them as numbers
# and instants, not as strings ("10" < "9" as text).
_COMPARABLE: dict[str, Callable[[Any], Any]] = {
    "decimal": Decimal,
    "timestamp": datetime.fromisoformat,
}

_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
}

_ARROW_COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    "eq": pc.equal,
    "ne": pc.not_equal,
    "lt": pc.less,
    "le": pc.less_equal,
    "gt": pc.greater,
    "ge": pc.greater_equal,
}

# Decimal text orders as its number and a timestamp as its instant, not as text: these (and dates) are
# filtered in Python with the comparisons above, once per distinct value of the chunk.
_FILTERED_IN_PYTHON = frozenset({"decimal", "date", "timestamp"})


@dataclass
class _Typed:
    """One cast column: its typed values (arrow_type; null where the text is null or was refused) and,
    for a column cast per distinct value, those values and each row's position among them (null for a
    null text)."""

    values: pa.Array
    distinct: tuple[list[Any], pa.Array] | None = None


# A filter sees one cast column and says, per row, whether the row stays (never null).
RowFilter = Callable[[_Typed], pa.Array]
# The same filter over Python values (what a filter on the distinct values of a column runs).
ColumnFilter = Callable[[list[Any]], list[bool]]


def _python_filter(op: str, operand: Any, operands: list[Any] | None, column_type: str) -> ColumnFilter:
    comparable = _COMPARABLE.get(column_type)

    def typed(value: Any) -> Any:
        cast = cast_literal(value, column_type)
        return comparable(cast) if comparable else cast

    # Like SQL, a null never satisfies a comparison or a membership test.
    if op == "is_null":
        return lambda values: [value is None for value in values]
    if op == "not_null":
        return lambda values: [value is not None for value in values]
    if op in LIST_OPS:
        members = frozenset(typed(value) for value in operands or [])
        wanted = op == "in"
        convert = comparable or _identity
        return lambda values: [
            value is not None and (convert(value) in members) is wanted for value in values
        ]
    if op in SCALAR_OPS:
        compare = _COMPARISONS[op]
        target = typed(operand)
        convert = comparable or _identity
        return lambda values: [value is not None and compare(convert(value), target) for value in values]
    raise ValueError(f"unknown filter op '{op}'")


def _compile_filter(op: str, operand: Any, operands: list[Any] | None, column_type: str) -> RowFilter:
    if column_type in _FILTERED_IN_PYTHON:
        each = _python_filter(op, operand, operands, column_type)
        null_stays = each([None])[0]

        def by_distinct_value(column: _Typed) -> pa.Array:
            if column.distinct is None:
                return pa.array(each(column.values.to_pylist()), pa.bool_())
            values, positions = column.distinct
            return pc.fill_null(pc.take(pa.array(each(values), pa.bool_()), positions), null_stays)

        return by_distinct_value

    if op == "is_null":
        return lambda column: pc.is_null(column.values)
    if op == "not_null":
        return lambda column: pc.is_valid(column.values)
    value_type = arrow_type(column_type)
    if op in LIST_OPS:
        # Python's `in` finds -0.0 among {0.0}; Arrow's hash lookup tells them apart, unless +0.0 is
        # added to both sides first (which turns -0.0 into 0.0 and changes nothing else).
        normal = _plus_zero if column_type == "float" else _identity
        members = normal(pa.array([cast_literal(value, column_type) for value in operands or []], value_type))
        wanted = op == "in"

        def membership(column: _Typed) -> pa.Array:
            found = pc.is_in(normal(column.values), value_set=members)  # a null is never found
            return pc.and_(pc.is_valid(column.values), found if wanted else pc.invert(found))

        return membership
    if op in SCALAR_OPS:
        compare = _ARROW_COMPARISONS[op]
        target = pa.scalar(cast_literal(operand, column_type), value_type)
        # Arrow compares text by its UTF-8 bytes, which orders it by code point, as Python does.
        return lambda column: pc.fill_null(compare(column.values, target), False)
    raise ValueError(f"unknown filter op '{op}'")


def _identity(value: Any) -> Any:
    return value


def _plus_zero(values: pa.Array) -> pa.Array:
    return pc.add(values, 0.0)


# Column casting. A column is parsed by one kernel and checked by another; a column that fails either is
# redone value by value with the Python caster, which finds the offending rows and their reasons.


def _arrow_ints(texts: pa.Array) -> pa.Array:
    # Arrow reads an optional '-' then ASCII digits, into int64 (which is bigint: a value that does not
    # fit fails the cast), and int() reads all of those to the same value; Arrow refuses '+5', ' 7' and
    # '1_000', which then take the per-value path. But it also reads '0x1F' as hexadecimal, which int()
    # refuses.
    values = pc.cast(texts, pa.int64())
    if _any(pc.starts_with(texts, "0x")) or _any(pc.starts_with(texts, "0X")):
        raise ValueError("hexadecimal text")
    return values


def _fits_bigint(values: pa.Array) -> bool:
    return True  # an int64 is a bigint: a value that does not fit has failed the cast


def _arrow_floats(texts: pa.Array) -> pa.Array:
    # The finite values Arrow reads are plain decimal notation ('1.', '.5', '+1e5'), which float() reads
    # to the same double (both round correctly); Arrow refuses ' 1' and '1_0'. The rest of what it reads
    # are forms of infinity and NaN (some that float() refuses, such as 'nan(1)'): never finite.
    return pc.cast(texts, pa.float64())


def _floats_finite(values: pa.Array) -> bool:
    return not _any(pc.invert(pc.is_finite(values)))


# type -> (parse a whole column or raise, whether the parsed column holds only values the type takes)
_FAST_CASTS: dict[str, tuple[Callable[[pa.Array], pa.Array], Callable[[pa.Array], bool]]] = {
    "int": (_arrow_ints, _fits_bigint),
    "float": (_arrow_floats, _floats_finite),
}


@dataclass
class _ColumnPlan:
    name: str
    type: str
    required: bool
    cast: Callable[[str], Any]


@dataclass
class _JoinPlan:
    name: str
    left_columns: list[str]
    projection: ArrowProjection
    required: bool


@dataclass
class _Plan:
    columns: list[_ColumnPlan]
    filters: list[tuple[str, RowFilter]]  # (column, filter)
    joins: list[_JoinPlan]


def _compile(spec: TaskSpec, refs: Mapping[str, ReferenceTable]) -> _Plan:
    # A key column can never be null in the table, so a null key is rejected here, by name,
    # instead of failing a whole chunk in the warehouse.
    key_columns = set(spec.target.key)
    columns = [
        _ColumnPlan(
            column.name, column.type, column.required or column.name in key_columns, CASTERS[column.type]
        )
        for column in spec.columns
    ]
    types = {column.name: column.type for column in spec.columns}
    filters = [
        (
            spec_filter.column,
            _compile_filter(spec_filter.op, spec_filter.value, spec_filter.values, types[spec_filter.column]),
        )
        for spec_filter in spec.filters
    ]
    joins = []
    for join in spec.joins:
        table = refs.get(join.name)
        if table is None:
            raise ValueError(f"join {join.name}: no reference table was given")
        reference_key = list(join.on.values())
        if table.key_columns != reference_key:
            raise ValueError(
                f"join {join.name}: reference table is keyed on {table.key_columns}, the join on {reference_key}"
            )
        try:
            projection = table.arrow_projection(tuple((column.name, column.type) for column in join.columns))
        except ValueError as exc:
            raise ValueError(f"join {join.name}: {exc}") from None
        joins.append(
            _JoinPlan(
                name=join.name, left_columns=list(join.on), projection=projection, required=join.required
            )
        )
    return _Plan(columns, filters, joins)


def _source_column(table: pa.Table, name: str, present: Collection[str]) -> pa.Array:
    """Column `name` of the chunk as one string array; all nulls when the source has no such column."""
    if name not in present:
        return pa.nulls(table.num_rows, pa.string())
    column = table.column(name).combine_chunks()
    if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
        # How a raw chunk carries a column holding a lone surrogate (storage.raw_table_from_records):
        # surrogatepass bytes, viewed as the text they are, unchecked (a cast would refuse them).
        return column.cast(pa.binary()).view(pa.string())
    if not pa.types.is_string(column.type):  # large_string, or null when a reader saw only nulls
        column = column.cast(pa.string())
    return column


def _cast_column(column: _ColumnPlan, texts: pa.Array, problems: dict[int, str]) -> _Typed:
    """The typed values of one column; rows whose value does not cast get a reason in `problems`.

    The first problem of a row wins (columns are cast in spec order), like a row-by-row check would.
    """
    if column.required and texts.null_count:
        reason = f"column {column.name}: required value missing"
        for offset in _offsets(pc.is_null(texts)):
            problems.setdefault(offset, reason)
    if column.type == "string":
        if _loadable(texts):
            return _Typed(texts)
        return _Typed(_string_array(_cast_each(column, _texts(texts), problems)))

    fast = _FAST_CASTS.get(column.type)
    if fast is not None:
        parse, valid = fast
        try:
            values = parse(texts)
            if valid(values):
                return _Typed(values)
        except _CAST_ERRORS:
            pass
        return _Typed(pa.array(_cast_each(column, _texts(texts), problems), arrow_type(column.type)))

    return _cast_distinct(column, texts, problems)


def _loadable(texts: pa.Array) -> bool:
    """Whether every value is text Postgres can store (is_loadable_text), in two passes over the column."""
    if _any(pc.match_substring(texts, "\x00")):
        return False
    try:
        texts.validate(full=True)  # UTF-8 throughout: a lone surrogate travels as bytes that are not
    except pa.ArrowInvalid:
        return False
    return True


def _cast_distinct(column: _ColumnPlan, texts: pa.Array, problems: dict[int, str]) -> _Typed:
    encoded = pc.dictionary_encode(texts)  # nulls are null positions, not a distinct value
    positions = encoded.indices
    typed: list[Any] = []
    bad: dict[int, str] = {}  # position of a distinct text that does not cast -> reason
    for position, text in enumerate(_texts(encoded.dictionary)):
        try:
            typed.append(column.cast(text))
        except _CAST_ERRORS:
            typed.append(None)
            bad[position] = _cast_problem(column, text)
    if bad:
        rows = pc.indices_nonzero(pc.is_in(positions, value_set=pa.array(list(bad), positions.type)))
        for offset, position in zip(rows.to_pylist(), pc.take(positions, rows).to_pylist(), strict=True):
            problems.setdefault(offset, bad[position])
    values = pc.take(pa.array(typed, arrow_type(column.type)), positions)
    return _Typed(values, (typed, positions))


def _cast_each(column: _ColumnPlan, texts: list[str | None], problems: dict[int, str]) -> list[Any]:
    values: list[Any] = []
    cast = column.cast
    for offset, text in enumerate(texts):
        if text is None:
            values.append(None)
            continue
        try:
            values.append(cast(text))
        except _CAST_ERRORS:
            problems.setdefault(offset, _cast_problem(column, text))
            values.append(None)
    return values


def _cast_problem(column: _ColumnPlan, text: str) -> str:
    return f"column {column.name}: {_show(text)} is not a valid {column.type}"


def _check_key_size(
    key: Sequence[str], texts_by_column: Mapping[str, pa.Array], problems: dict[int, str]
) -> None:
    """Reject rows whose key values together pass MAX_KEY_BYTES: their primary key index row would fail
    the load. Byte lengths are those of the UTF-8 text (a lone surrogate's 3 bytes included)."""
    sizes = None
    for name in key:
        size = pc.fill_null(pc.cast(pc.binary_length(texts_by_column[name]), pa.int64()), 0)
        sizes = size if sizes is None else pc.add(sizes, size)
    if sizes is None:
        return
    over = pc.greater(sizes, MAX_KEY_BYTES)
    if not _any(over):
        return
    shown = ", ".join(key)
    for offset in _offsets(over):
        problems.setdefault(
            offset,
            f"key ({shown}): {sizes[offset].as_py():,} bytes, over the limit of {MAX_KEY_BYTES:,} "
            "(a Postgres index row holds 2,704)",
        )


def _join(
    join: _JoinPlan, texts_by_column: Mapping[str, pa.Array], alive: pa.Array, reasons: dict[int, str]
) -> tuple[list[pa.Array], pa.Array]:
    """The joined columns of every row, and `alive` less the rows this join rejects (their reasons in
    `reasons`). Keys are the source's text, matched against the reference's text."""
    sources = [texts_by_column[name] for name in join.left_columns]
    positions = pc.index_in(_join_key(sources), value_set=join.projection.keys)
    failed = None
    if join.required:
        missing = pc.and_(pc.is_null(positions), alive)
        if _any(missing):
            offsets = _offsets(missing)
            taken = pa.array(offsets, pa.int64())
            shown_columns = [_texts(pc.take(source, taken)) for source in sources]
            for offset, values in zip(offsets, zip(*shown_columns, strict=True), strict=True):
                shown = ", ".join(
                    f"{column}={'null' if value is None else value}"
                    for column, value in zip(join.left_columns, values, strict=True)
                )
                reasons[offset] = f"join {join.name}: no match for {shown}"
            failed = missing
    # A row that matches a key whose reference values do not cast is rejected with that key's problem.
    problems = pc.take(join.projection.problems, positions)
    if problems.null_count < len(problems):
        broken = pc.and_(pc.is_valid(problems), alive)
        if _any(broken):
            offsets = _offsets(broken)
            for offset, problem in zip(
                offsets, _texts(pc.take(problems, pa.array(offsets, pa.int64()))), strict=True
            ):
                reasons[offset] = f"join {join.name}: {problem}"
            failed = broken if failed is None else pc.or_(failed, broken)
    if failed is not None:
        alive = pc.and_(alive, pc.invert(failed))
    # No match (in an optional join) takes null positions, hence null values.
    return [pc.take(column, positions) for column in join.projection.columns], alive


def _transform(
    table: pa.Table,
    spec: TaskSpec,
    refs: Mapping[str, ReferenceTable],
    first_row: int,
    raw_rows: Callable[[list[int]], list[RawRow]],
) -> TableResult:
    plan = _compile(spec, refs)
    length = table.num_rows
    present = frozenset(table.column_names)
    problems: dict[int, str] = {}  # row offset -> reject reason, from casts, required values and keys

    texts_by_column: dict[str, pa.Array] = {}
    typed_by_column: dict[str, _Typed] = {}
    for column in plan.columns:
        texts = _source_column(table, column.name, present)
        texts_by_column[column.name] = texts
        typed_by_column[column.name] = _cast_column(column, texts, problems)
    _check_key_size(spec.target.key, texts_by_column, problems)

    # Rows still headed for the output: not rejected, then not filtered, then joined.
    alive = pc.invert(_mask(problems, length)) if problems else pa.repeat(True, length)
    filtered = 0
    if plan.filters:
        keep = None
        for column_name, row_filter in plan.filters:
            mask = row_filter(typed_by_column[column_name])
            keep = mask if keep is None else pc.and_(keep, mask)
        kept = pc.and_(alive, keep)
        filtered = alive.true_count - kept.true_count
        alive = kept

    output = [typed.values for typed in typed_by_column.values()]
    join_reasons: dict[int, str] = {}
    for join in plan.joins:
        joined, alive = _join(join, texts_by_column, alive, join_reasons)
        output.extend(joined)

    result = pa.Table.from_arrays(output, schema=output_schema(spec))
    if alive.true_count < length:
        result = result.filter(alive)
    reasons = problems | join_reasons  # disjoint: a join only sees rows no earlier step rejected
    offsets = sorted(reasons)
    rejects = [
        Reject(row=first_row + offset, reason=reasons[offset], data=_reject_data(raw))
        for offset, raw in zip(offsets, raw_rows(offsets), strict=True)
    ]
    return TableResult(table=result, rejects=rejects, filtered=filtered)


def transform_table(
    table: pa.Table,
    spec: TaskSpec,
    refs: Mapping[str, ReferenceTable],
    first_row: int,
) -> TableResult:
    """Type one chunk. Row i of `table` is source row first_row + i (rows count from 1).

    table: one text column per source column, nulls already applied: string or large_string, or binary for
    a column holding surrogatepass bytes (storage.raw_table_from_records). A column the spec names but the
    table lacks is all nulls. A reject's data is its row: every column of the table, null as None.
    refs: one ReferenceTable per join name, keyed on the join's reference columns (in `on` order).
    Order of checks per row: casts, required values and key size (reject), then filters (filtered),
    then joins (reject). The output table has output_schema(spec) and the rows that pass, in order.
    """
    return _transform(table, spec, refs, first_row, lambda offsets: _table_rows(table, offsets))


def transform_rows(
    rows: Sequence[Mapping[str, str | None]],
    spec: TaskSpec,
    refs: Mapping[str, ReferenceTable],
    first_row: int,
) -> TransformResult:
    """transform_table over rows as dicts, giving rows as dicts of JSON-able values (int, float, bool, str).

    Only the spec's columns become Arrow columns (a field outside the spec may even be named by a lone
    surrogate, which no Arrow schema can hold); a reject's data is its row exactly as given.
    """
    table = pa.table(
        {column.name: _string_array([row.get(column.name) for row in rows]) for column in spec.columns}
    )
    result = _transform(table, spec, refs, first_row, lambda offsets: [rows[offset] for offset in offsets])
    return TransformResult(rows=result.table.to_pylist(), rejects=result.rejects, filtered=result.filtered)


# --- a pipeline's hook (pipelines.py states the contract) ------------------------------------------

HOOK_REJECTED_AT = "pipeline hook"


def apply_hook(result: TableResult, hook: Callable[[list[dict[str, Any]]], Any]) -> TableResult:
    """`result` after the pipeline's hook over its rows: the rows the hook returns, held to the output
    schema; the rows it leaves out filtered; if it raises (or returns rows that do not fit), every row of
    the batch rejected with its message. The hook gets a copy of the rows and nothing else."""
    if result.table.num_rows == 0:
        return result
    rows = result.table.to_pylist()  # fresh objects: nothing the hook does to them reaches the chunk
    try:
        returned = hook([dict(row) for row in rows])
        if not isinstance(returned, list) or not all(isinstance(row, dict) for row in returned):
            raise TypeError(f"returned {type(returned).__name__}, not a list of rows (dicts)")
        table = pa.Table.from_pylist(returned, schema=result.table.schema)
    except Exception as exc:  # the hook is the pipeline author's code: any failure is the batch's reason
        reason = f"{HOOK_REJECTED_AT}: {_escaped(str(exc) or type(exc).__name__)}"[:1000]
        rejects = [Reject(row=None, at=HOOK_REJECTED_AT, reason=reason, data=row) for row in rows]
        empty = result.table.schema.empty_table()
        return TableResult(table=empty, rejects=[*result.rejects, *rejects], filtered=result.filtered)
    left_out = max(0, len(rows) - table.num_rows)
    return TableResult(table=table, rejects=result.rejects, filtered=result.filtered + left_out)
