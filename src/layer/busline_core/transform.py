"""Cast, validate, filter and join one chunk of raw rows. Pure: no I/O, no clock.

Each source row ends up as exactly one of: an output row, a reject (with its source row number and
reason) or a filtered row, so read = transformed + rejected + filtered always holds.
This is the hot loop of the pipeline (hundreds of thousands of rows per task), so it works
column by column: each column is cast in one comprehension, each filter yields a mask, each join
looks up all its keys at once, and reference values are cast once per reference table.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from .contracts import Reject
from .limits import MAX_KEY_BYTES
from .spec import (
    BIGINT_MAX,
    BIGINT_MIN,
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
    "OutputColumn",
    "ReferenceTable",
    "Reject",
    "TransformResult",
    "output_columns",
    "transform_rows",
]

RawRow = Mapping[str, str | None]
Key = tuple[str | None, ...]
_MAX_SHOWN_VALUE = 200  # keep reject reasons readable when a value is a whole paragraph
# What a failed cast raises: ArithmeticError covers an OverflowError or a decimal signal, which would
# otherwise fail the whole chunk, on every delivery, instead of rejecting one row.
_CAST_ERRORS = (ValueError, TypeError, ArithmeticError)


@dataclass
class TransformResult:
    rows: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    filtered: int = 0


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

# A filter sees one column's typed values and says, per row, whether the row stays.
ColumnFilter = Callable[[list[Any]], list[bool]]


def _compile_filter(op: str, operand: Any, operands: list[Any] | None, column_type: str) -> ColumnFilter:
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


def _identity(value: Any) -> Any:
    return value


# Column casting. Casting a whole column in one comprehension is several times faster than a
# cast call per cell; when a column has a bad value the column is redone value by value to find
# the offending rows. int and float use the builtins and check the whole column afterwards;
# the slower types are cast once per distinct value (a chunk of flights has ~20 distinct hours).



def _ints_in_range(values: list[Any]) -> bool:
    present = [value for value in values if value is not None]
    return not present or (min(present) >= BIGINT_MIN and max(present) <= BIGINT_MAX)


def _floats_finite(values: list[Any]) -> bool:
    present = [value for value in values if value is not None]
    # Any NaN or infinity makes the sum non-finite; a legitimate overflow only costs the slow path.
    return math.isfinite(sum(present))


_FAST_CASTS: dict[str, tuple[Callable[[str], Any], Callable[[list[Any]], bool]]] = {
    "int": (int, _ints_in_range),
    "float": (float, _floats_finite),
}
_DISTINCT_VALUE_TYPES = frozenset({"decimal", "bool", "date", "timestamp"})


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
    output_names: list[str]
    projection: dict[Key, tuple[Any, ...] | str]
    required: bool


@dataclass
class _Plan:
    columns: list[_ColumnPlan]
    filters: list[tuple[str, ColumnFilter]]  # (column, filter)
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
            projection = table.projection(tuple((column.name, column.type) for column in join.columns))
        except ValueError as exc:
            raise ValueError(f"join {join.name}: {exc}") from None
        joins.append(
            _JoinPlan(
                name=join.name,
                left_columns=list(join.on),
                output_names=[column.as_ for column in join.columns],
                projection=projection,
                required=join.required,
            )
        )
    return _Plan(columns, filters, joins)


def _cast_column(column: _ColumnPlan, texts: list[str | None], problems: dict[int, str]) -> list[Any]:
    """Typed values of one column; rows whose value does not cast get a reason in `problems`.

    The first problem of a row wins (columns are cast in spec order), like a row-by-row check would.
    """
    if column.required and None in texts:
        reason = f"column {column.name}: required value missing"
        for offset, text in enumerate(texts):
            if text is None:
                problems.setdefault(offset, reason)
    if column.type == "string":
        # Texts go to Postgres as they are, so each must be one it can store. One look at the whole
        # column instead of one per cell; only a column that fails it is redone value by value.
        if is_loadable_text("".join(filter(None, texts))):
            return texts
        return _cast_each(column, texts, problems)

    fast = _FAST_CASTS.get(column.type)
    if fast is not None:
        convert, valid = fast
        try:
            if None in texts:
                values = [None if text is None else convert(text) for text in texts]
            else:
                values = list(map(convert, texts))  # type: ignore[arg-type]  # no None: checked above
            if valid(values):
                return values
        except _CAST_ERRORS:
            pass
        return _cast_each(column, texts, problems)

    if column.type in _DISTINCT_VALUE_TYPES:
        typed: dict[str | None, Any] = {None: None}
        bad: set[str] = set()
        for text in set(texts):
            if text is None:
                continue
            try:
                typed[text] = column.cast(text)
            except _CAST_ERRORS:
                bad.add(text)
        if bad:
            for offset, text in enumerate(texts):
                if text in bad:
                    problems.setdefault(offset, _cast_problem(column, text))  # type: ignore[arg-type]
        return [typed.get(text) for text in texts]

    return _cast_each(column, texts, problems)


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


def _check_key_size(key: Sequence[str], texts_by_column: Mapping[str, list[str | None]], problems: dict[int, str]) -> None:
    """Reject rows whose key values together pass MAX_KEY_BYTES: their primary key index row would fail
    the load. A UTF-8 character is at most 4 bytes, so most chunks are cleared by their longest values."""
    columns = [texts_by_column[name] for name in key if name in texts_by_column]
    longest = sum(max(map(len, filter(None, texts)), default=0) for texts in columns)
    if longest * 4 <= MAX_KEY_BYTES:
        return
    shown = ", ".join(key)
    for offset, values in enumerate(zip(*columns, strict=True)):
        size = sum(len(value.encode("utf-8", "surrogatepass")) for value in values if value is not None)
        if size > MAX_KEY_BYTES:
            problems.setdefault(
                offset,
                f"key ({shown}): {size:,} bytes, over the limit of {MAX_KEY_BYTES:,} (a Postgres index row holds 2,704)",
            )


def transform_rows(
    rows: Sequence[Mapping[str, str | None]],
    spec: TaskSpec,
    refs: Mapping[str, ReferenceTable],
    first_row: int,
) -> TransformResult:
    """Type one chunk. `first_row` is the source row number of rows[0] (rows count from 1).

    refs: one ReferenceTable per join name, keyed on the join's reference columns (in `on` order).
    Order of checks per row: casts and required values (reject), then filters (filtered), then joins.
    """
    plan = _compile(spec, refs)
    problems: dict[int, str] = {}  # row offset -> reject reason

    texts_by_column: dict[str, list[str | None]] = {}
    values_by_column: dict[str, list[Any]] = {}
    for column in plan.columns:
        texts = [row.get(column.name) for row in rows]
        texts_by_column[column.name] = texts
        values_by_column[column.name] = _cast_column(column, texts, problems)
    _check_key_size(spec.target.key, texts_by_column, problems)

    keep: list[bool] | None = None
    for column_name, column_filter in plan.filters:
        mask = column_filter(values_by_column[column_name])
        keep = mask if keep is None else [a and b for a, b in zip(keep, mask, strict=True)]

    names = [column.name for column in plan.columns]
    typed_rows = [
        dict(zip(names, values, strict=True)) for values in zip(*values_by_column.values(), strict=True)
    ]
    # Join keys are the source's text, matched against the reference's text; all lookups of a join
    # run in one C-level map.
    joins = []
    for join in plan.joins:
        keys = list(zip(*(texts_by_column[c] for c in join.left_columns), strict=True))
        joins.append((join, keys, list(map(join.projection.get, keys))))

    result = TransformResult()
    output = result.rows
    rejects = result.rejects
    filtered = 0
    for offset, typed in enumerate(typed_rows):
        reason = problems.get(offset) if problems else None
        if reason is None:
            if keep is not None and not keep[offset]:
                filtered += 1
                continue
            for join, keys, matches in joins:
                match = matches[offset]
                if match is None:
                    if join.required:
                        shown = ", ".join(
                            f"{column}={'null' if value is None else value}"
                            for column, value in zip(join.left_columns, keys[offset], strict=True)
                        )
                        reason = f"join {join.name}: no match for {shown}"
                        break
                    for output_name in join.output_names:
                        typed[output_name] = None
                elif isinstance(match, str):
                    reason = f"join {join.name}: {match}"
                    break
                else:
                    typed.update(zip(join.output_names, match, strict=True))
        if reason is not None:
            rejects.append(Reject(row=first_row + offset, reason=reason, data=_reject_data(rows[offset])))
        else:
            output.append(typed)

    result.filtered = filtered
    return result
