"""The task spec: what to read, how to type and filter it, what to join, where to load it.

It is the body of an ad hoc `POST /tasks` and the output of a named pipeline, so every rule a
bad spec could break is checked here, before anything is recorded, with a message naming the field.
The JSON field names are the documented ones (camelCase `nullValues`, `chunkRows`; `as`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal, NamedTuple
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from .limits import (
    MAX_CHUNK_ROWS,
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
    MIN_CHUNK_ROWS,
)

ColumnType = Literal["string", "int", "float", "decimal", "bool", "date", "timestamp"]
SourceFormat = Literal["csv", "ndjson", "json"]
FilterOp = Literal["eq", "ne", "lt", "le", "gt", "ge", "in", "not_in", "is_null", "not_null"]

SCALAR_OPS: frozenset[str] = frozenset({"eq", "ne", "lt", "le", "gt", "ge"})
LIST_OPS: frozenset[str] = frozenset({"in", "not_in"})

# Postgres identifiers we create ourselves: lower case so they never need quoting by users, 63 bytes max.
IDENTIFIER_PATTERN = re.compile(rf"^[a-z_][a-z0-9_]{{0,{MAX_IDENTIFIER_LENGTH - 1}}}$")

# Busline's own tables (the ledger, the catalog, the staging table of a load) are named busline_*; a target
# of that name could be mistaken for one of them by an operator, so it is refused.
RESERVED_TABLE_PREFIX = "busline_"

# The pydantic error type of a refused target: the API answers it with 400 naming the field (a well-formed
# request that is not an acceptable task), not with the 422 of a malformed body.
TARGET_REFUSED = "target_refused"

DEFAULT_CHUNK_ROWS = 20_000

# What each column type becomes in the warehouse.
POSTGRES_TYPES: dict[str, str] = {
    "string": "text",
    "int": "bigint",
    "float": "double precision",
    "decimal": "numeric",
    "bool": "boolean",
    "date": "date",
    "timestamp": "timestamptz",
}


# --- casting text to typed, JSON-able values (shared by spec validation and transform) -------------

BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1  # what an int column holds (Postgres bigint)
# What a numeric column holds: Postgres refuses a value with more digits before or after the point.
NUMERIC_MAX_INTEGER_DIGITS = 131_072
NUMERIC_MAX_SCALE = 16_383
_BOOLEANS: dict[str, bool] = {
    "true": True, "t": True, "1": True, "yes": True,
    "false": False, "f": False, "0": False, "no": False,
}  # fmt: skip


def is_loadable_text(text: str) -> bool:
    """Whether Postgres can store `text` as is.

    Postgres text cannot hold NUL, and a str that is not valid Unicode (a lone surrogate, which is
    what a JSON "\\ud800" decodes to) cannot even be encoded to UTF-8 to be sent: either would fail
    the load of the whole chunk, on every delivery.
    """
    if "\x00" in text:
        return False
    if text.isascii():  # O(1) in CPython: the common case never encodes
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _cast_string(text: str) -> str:
    if not is_loadable_text(text):
        raise ValueError("not text Postgres can store")
    return text


def _cast_int(text: str) -> int:
    value = int(text)
    if not BIGINT_MIN <= value <= BIGINT_MAX:
        raise ValueError("out of bigint range")
    return value


def _cast_float(text: str) -> float:
    value = float(text)
    # NaN and infinities are not JSON, and a source that contains them is almost always broken.
    # Too large a number ('1e309') is an infinity here; too small a one becomes 0.0 or a subnormal,
    # both of which Postgres double precision takes.
    if not math.isfinite(value):
        raise ValueError("not finite")
    return value


def _cast_decimal(text: str) -> str:
    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        raise ValueError("not a decimal") from exc
    exponent = value.as_tuple().exponent
    if not isinstance(exponent, int):  # 'n', 'N' or 'F': a NaN or an infinity
        raise ValueError("not finite")
    if -exponent > NUMERIC_MAX_SCALE:
        raise ValueError("too many digits after the decimal point for numeric")
    if not value:
        # Any zero fits, but Postgres refuses to read an exponent past about 1e9 ('0E+2000000000').
        return str(value) if exponent <= 0 else "0"
    if value.adjusted() >= NUMERIC_MAX_INTEGER_DIGITS:
        raise ValueError("too many digits before the decimal point for numeric")
    # Kept as text so no precision is lost on the way to Postgres numeric, which reads the exponent
    # notation str() may give ('1E+5').
    return str(value)


def _cast_bool(text: str) -> bool:
    try:
        return _BOOLEANS[text.strip().lower()]
    except KeyError:
        raise ValueError("not a boolean") from None


def _cast_date(text: str) -> str:
    return date.fromisoformat(text.strip()).isoformat()


def _cast_timestamp(text: str) -> str:
    if "\x00" in text:
        # fromisoformat stops reading at a NUL: '2013-01-01T10:00\x00junk' would be 10:00.
        raise ValueError("not a timestamp")
    value = datetime.fromisoformat(text.strip())
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC).isoformat()
    # In UTC, because Python takes offsets Postgres refuses ('+05:30:15.5'). An instant that falls
    # outside years 1 to 9999 in UTC has no UTC datetime: refused as a value, not raised as an
    # OverflowError no caller expects.
    try:
        return value.astimezone(UTC).isoformat()
    except OverflowError:
        raise ValueError("outside years 1 to 9999 in UTC") from None


CASTERS: dict[str, Callable[[str], Any]] = {
    "string": _cast_string,
    "int": _cast_int,
    "float": _cast_float,
    "decimal": _cast_decimal,
    "bool": _cast_bool,
    "date": _cast_date,
    "timestamp": _cast_timestamp,
}


def literal_as_text(value: Any) -> str:
    """A JSON literal from a spec (e.g. a filter value) as the text a source would hold."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def cast_literal(value: Any, column_type: str) -> Any:
    """Cast a spec literal to a column type; ValueError when it does not fit."""
    return CASTERS[column_type](literal_as_text(value))


# --- field checks --------------------------------------------------------------------------------


def _check_identifier(value: str) -> str:
    if not IDENTIFIER_PATTERN.match(value):
        raise ValueError(
            f"'{value}' is not a valid identifier (lower case letters, digits and _, "
            f"not starting with a digit, at most {MAX_IDENTIFIER_LENGTH} characters)"
        )
    return value


def table_name_problem(value: str) -> str | None:
    """Why `value` cannot be a target table, or None. A target is a plain table name: Busline picks the
    schema (the owner's own), so a schema-qualified or quoted name is refused rather than reinterpreted."""
    if "." in value or '"' in value:
        return (
            f"'{value}' is not a plain table name: a spec names a table, never a schema "
            "(Busline writes your tables into your own schema)"
        )
    if not IDENTIFIER_PATTERN.match(value):
        return (
            f"'{value}' is not a valid table name (lower case letters, digits and _, "
            f"not starting with a digit, at most {MAX_IDENTIFIER_LENGTH} characters)"
        )
    if value.startswith(RESERVED_TABLE_PREFIX):
        return f"'{value}': table names starting with '{RESERVED_TABLE_PREFIX}' are reserved for Busline's own tables"
    return None


def _check_table_name(value: str) -> str:
    problem = table_name_problem(value)
    if problem is not None:
        raise PydanticCustomError(TARGET_REFUSED, "{problem}", {"problem": problem})
    return value


def _refuse_schema(value: object) -> None:
    raise PydanticCustomError(
        TARGET_REFUSED,
        "a spec names a table, never a schema: Busline writes each owner's tables into the owner's own "
        "schema; remove target.schema",
    )


def _check_uri(value: str) -> str:
    parts = urlsplit(value)
    scheme = parts.scheme.lower()
    if scheme == "s3":
        if not parts.netloc or not parts.path.strip("/"):
            raise ValueError(f"'{value}' must look like s3://bucket/key")
        return value
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"'{value}' must be an s3://, https:// or http:// URI")
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when it is asked for
    except ValueError as error:
        raise ValueError(f"'{value}' has an invalid port") from error
    # Which hosts and schemes a stack may fetch depends on the stack (AllowLoopbackHttpSources), so that
    # rule is safe_http.py's, applied at submit (source_access.py) and again at every read.
    return value


Identifier = Annotated[str, AfterValidator(_check_identifier)]
TableName = Annotated[str, AfterValidator(_check_table_name)]
SourceUri = Annotated[str, Field(max_length=MAX_URI_LENGTH), AfterValidator(_check_uri)]
SourceColumnName = Annotated[str, Field(min_length=1, max_length=MAX_SOURCE_COLUMN_NAME_LENGTH)]
NullMarkers = Annotated[
    list[Annotated[str, Field(max_length=MAX_NULL_MARKER_LENGTH)]], Field(max_length=MAX_NULL_MARKERS)
]


class _SpecModel(BaseModel):
    # populate_by_name: a spec dumped without by_alias (as_) still parses back.
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class SourceSpec(_SpecModel):
    uri: SourceUri
    format: SourceFormat
    nullValues: NullMarkers = Field(default_factory=lambda: ["NA", ""])
    delimiter: str = Field(",", min_length=1, max_length=1)
    # Read only the first `limit` rows: a sample of a big source (the rest is never downloaded or parsed,
    # except that a .zip has to be fetched whole before its member can be read).
    limit: int | None = Field(default=None, ge=1, le=MAX_ROW_COUNT)
    # A CSV field may hold a line break (inside quotes). Such a source cannot be cut into byte ranges at
    # line ends, so it is read by one worker; without it, an uncompressed CSV or NDJSON source in S3 is
    # read in parallel ranges (ranges.py). False by default, as BigQuery's allowQuotedNewlines.
    multilineFields: bool = False


class ColumnSpec(_SpecModel):
    name: Identifier
    type: ColumnType
    required: bool = False


class FilterSpec(_SpecModel):
    column: str
    op: FilterOp
    value: Any = None
    values: Annotated[list[Any], Field(max_length=MAX_IN_VALUES)] | None = None

    @model_validator(mode="after")
    def _operand_present(self) -> FilterSpec:
        if self.op in SCALAR_OPS and self.value is None:
            raise ValueError(f"op '{self.op}' needs a 'value'")
        if self.op in LIST_OPS and not self.values:
            raise ValueError(f"op '{self.op}' needs a non-empty 'values' list")
        return self


class JoinColumn(_SpecModel):
    name: SourceColumnName  # column of the reference source
    as_: Identifier = Field(alias="as")  # output column name
    type: ColumnType = "string"


class JoinSpec(_SpecModel):
    name: Identifier
    uri: SourceUri
    format: SourceFormat = "csv"
    on: dict[str, SourceColumnName] = Field(min_length=1)  # left (spec) column -> reference column
    columns: list[JoinColumn] = Field(min_length=1, max_length=MAX_COLUMNS)
    required: bool = False
    nullValues: NullMarkers = Field(default_factory=lambda: ["NA", ""])
    delimiter: str = Field(",", min_length=1, max_length=1)


TargetKind = Literal["postgres", "dynamodb"]
TargetMode = Literal["insert", "upsert", "delete", "replace"]
# A DynamoDB table name (AWS's rule); the table is one of the stack's own account and region.
DYNAMODB_TABLE_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
DYNAMODB_MODES: tuple[TargetMode, ...] = ("upsert", "delete")
DYNAMODB_MAX_KEY_COLUMNS = 2  # a partition key, and a sort key if the table has one


def _dynamodb_table_problem(value: str) -> str | None:
    if not DYNAMODB_TABLE_PATTERN.match(value):
        return (
            f"'{value}' is not a DynamoDB table name (3 to 255 letters, digits, '_', '-' and '.'; a name, "
            "never an ARN)"
        )
    return None


class TargetSpec(_SpecModel):
    # postgres: a table in the owner's own schema (tenancy.py); dynamodb: a table of the stack's account
    # that an operator assigned to the owner (dynamo_target.py)
    kind: TargetKind = "postgres"
    table: str  # never qualified: Busline decides where an owner's tables are
    key: list[str] = Field(min_length=1, max_length=MAX_KEY_COLUMNS)
    # insert: a row whose key is already there (or earlier in the task) is a reject; upsert: it replaces
    # it; delete: rows with the task's keys are deleted; replace: the table becomes exactly the task's rows
    mode: TargetMode = "upsert"
    # task: the rows become visible all at once when the task succeeds (staged, then merged in one
    # transaction); chunk: each chunk is visible as it lands, and a failed task leaves what it loaded.
    # Default: task for postgres; chunk for dynamodb, which has no transaction a whole task fits in.
    commit: Literal["task", "chunk"] = "task"
    # `schema` was removed: it stays a field only so that a spec still giving it is refused by name, with
    # the reason, instead of as an unknown field. Never set, never dumped.
    schema_: SkipJsonSchema[Annotated[None, BeforeValidator(_refuse_schema)]] = Field(
        None, alias="schema", exclude=True
    )

    @model_validator(mode="before")
    @classmethod
    def _commit_default_of_kind(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("kind") == "dynamodb" and "commit" not in data:
            return {**data, "commit": "chunk"}
        return data

    @field_validator("table")
    @classmethod
    def _table_of_kind(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("kind", "postgres") == "dynamodb":
            problem = _dynamodb_table_problem(value)
            if problem is not None:
                raise PydanticCustomError(TARGET_REFUSED, "{problem}", {"problem": problem})
            return value
        return _check_table_name(value)

    @model_validator(mode="after")
    def _modes_of_kind(self) -> TargetSpec:
        if self.kind == "dynamodb":
            if self.mode not in DYNAMODB_MODES:
                raise ValueError(
                    f'mode: a dynamodb target takes mode "upsert" or "delete", not "{self.mode}"'
                )
            if self.commit != "chunk":
                raise ValueError(
                    'commit: a dynamodb target commits chunk by chunk ("chunk"): DynamoDB has no transaction '
                    "a whole task fits in"
                )
            if len(self.key) > DYNAMODB_MAX_KEY_COLUMNS:
                raise ValueError(
                    f"key: a dynamodb table's key is a partition key and at most one sort key, not "
                    f"{len(self.key)} columns"
                )
        if self.mode == "replace" and self.commit != "task":
            raise ValueError(
                'commit: mode "replace" needs commit "task" (a table replaced chunk by chunk would be empty, '
                "then partial, while the task runs)"
            )
        return self


class OutputColumn(NamedTuple):
    name: str
    type: str  # a ColumnType


class TaskSpec(_SpecModel):
    source: SourceSpec
    columns: list[ColumnSpec] = Field(min_length=1, max_length=MAX_COLUMNS)
    filters: list[FilterSpec] = Field(default_factory=list, max_length=MAX_FILTERS)
    joins: list[JoinSpec] = Field(default_factory=list, max_length=MAX_JOINS)
    target: TargetSpec
    chunkRows: int = Field(DEFAULT_CHUNK_ROWS, ge=MIN_CHUNK_ROWS, le=MAX_CHUNK_ROWS)

    @model_validator(mode="after")
    def _columns_consistent(self) -> TaskSpec:
        types: dict[str, str] = {}
        for index, column in enumerate(self.columns):
            if column.name in types:
                raise ValueError(f"columns[{index}].name: duplicate column '{column.name}'")
            types[column.name] = column.type

        outputs = set(types)
        join_names: set[str] = set()
        for j, join in enumerate(self.joins):
            if join.name in join_names:
                raise ValueError(f"joins[{j}].name: duplicate join name '{join.name}'")
            join_names.add(join.name)
            for left in join.on:
                if left not in types:
                    raise ValueError(f"joins[{j}].on: column '{left}' is not among the columns")
            for c, join_column in enumerate(join.columns):
                if join_column.as_ in outputs:
                    raise ValueError(
                        f"joins[{j}].columns[{c}].as: duplicate output column '{join_column.as_}'"
                    )
                outputs.add(join_column.as_)
        if len(outputs) > MAX_COLUMNS:
            raise ValueError(
                f"joins: {len(self.columns)} columns and {len(outputs) - len(self.columns)} join columns make "
                f"{len(outputs)} output columns, over the limit of {MAX_COLUMNS}"
            )

        seen_key: set[str] = set()
        for k, key_column in enumerate(self.target.key):
            if key_column not in types:
                raise ValueError(f"target.key[{k}]: column '{key_column}' is not among the columns")
            if key_column in seen_key:
                raise ValueError(f"target.key[{k}]: column '{key_column}' is repeated")
            seen_key.add(key_column)

        for f, spec_filter in enumerate(self.filters):
            column_type = types.get(spec_filter.column)
            if column_type is None:
                raise ValueError(
                    f"filters[{f}].column: column '{spec_filter.column}' is not among the columns"
                )
            # Filters compare typed values, so their operands must cast to the column's type.
            if spec_filter.op in SCALAR_OPS:
                _check_operand(spec_filter.value, column_type, f"filters[{f}].value")
            elif spec_filter.op in LIST_OPS:
                for v, operand in enumerate(spec_filter.values or []):
                    _check_operand(operand, column_type, f"filters[{f}].values[{v}]")
        return self


def _check_operand(value: Any, column_type: str, where: str) -> None:
    try:
        cast_literal(value, column_type)
    except (ValueError, TypeError):
        raise ValueError(f"{where}: {value!r} is not a valid {column_type}") from None


def output_columns(spec: TaskSpec) -> list[OutputColumn]:
    """Spec columns then join columns, in order: the shape of a transformed row and of the table."""
    columns = [OutputColumn(column.name, column.type) for column in spec.columns]
    for join in spec.joins:
        columns.extend(OutputColumn(join_column.as_, join_column.type) for join_column in join.columns)
    return columns
