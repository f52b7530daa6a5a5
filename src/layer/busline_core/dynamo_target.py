"""The DynamoDB target: a chunk's rows put into (mode upsert) or deleted from (mode delete) a DynamoDB
table that an operator assigned to the task's owner.

Tenancy, the same rule as Postgres targets: Busline writes only a table an operator assigned to the owner.
The assignment is the table's tag `busline:owner` = the owner (docs/runbook.md). A table without that tag,
another owner's table and a table that does not exist are refused alike (TargetRefused, the task fails at
once), so an owner cannot learn that someone else's table exists. The load role's IAM policy names the
tables of the template parameter DynamoTargetTableArns and nothing else.

Exactly once: putting or deleting an item by its key is idempotent, so a redelivered chunk leaves the
table as its first delivery did. The counts of a chunk (items put, items that existed and were deleted)
are fixed before its first write and recorded in the idempotency table under the chunk's identity; a
later delivery reports the recorded counts, and skips the writes once they are marked done.

Write rate: BatchWriteItem of 25 items, paced to `writes_per_second` items per second per load
invocation (the template divides DynamoTargetWriteRate by LoadMaxConcurrency, so all of a stack's loads
together stay under it); unprocessed items are sent again after a backoff. Only this module touches
boto3 for the target.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

import boto3
import pyarrow as pa
from boto3.dynamodb.types import TypeSerializer
from botocore.exceptions import ClientError

from .contracts import LoadOutcome
from .errors import DataRefused, LoadFailed, TargetRefused
from .spec import OutputColumn, TargetSpec

OWNER_TAG: Final = "busline:owner"
BATCH_WRITE_ITEMS: Final = 25  # BatchWriteItem's limit
BATCH_GET_KEYS: Final = 100  # BatchGetItem's limit
UNPROCESSED_RETRIES: Final = 8  # then the chunk fails and SQS delivers it again
UNPROCESSED_FIRST_WAIT_S: Final = 0.05
UNPROCESSED_MAX_WAIT_S: Final = 2.0
ASSIGNMENT_MAX_AGE_S: Final = 60.0  # a warm container sees an operator's untagging within a minute
LEDGER_PREFIX: Final = "busline-dynamodb-target"
LEDGER_DAYS: Final = 14  # past the tasks' retention, a chunk is never delivered again

# Which DynamoDB key type takes which column type: a key column must serialise to its attribute's type.
_KEY_TYPES: Final[dict[str, set[str]]] = {
    "S": {"string", "date", "timestamp"},
    "N": {"int", "float", "decimal"},
}


@dataclass(frozen=True)
class _Assignment:
    owner: str | None
    key: tuple[str, ...]  # partition key, then sort key
    key_types: tuple[str, ...]
    checked_at: float


@dataclass
class _Pacer:
    """At most `per_second` items per second, from the first batch on."""

    per_second: float
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    _next_at: float = field(default=0.0, init=False)

    def wait_for(self, items: int) -> None:
        now = self.clock()
        if self._next_at > now:
            self.sleep(self._next_at - now)
            now = self._next_at
        self._next_at = max(now, self._next_at) + items / self.per_second


class DynamoTarget:
    """One per warm load container."""

    def __init__(
        self,
        client: Any,
        ledger_table: str,
        writes_per_second: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._client = client
        self._ledger_table = ledger_table
        self._pacer = _Pacer(writes_per_second, clock, sleep)
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._assignments: dict[str, _Assignment] = {}
        self._serialize = TypeSerializer().serialize

    @classmethod
    def from_settings(cls, ledger_table: str, writes_per_second: float) -> DynamoTarget:
        return cls(boto3.client("dynamodb"), ledger_table, writes_per_second)

    # --- tenancy --------------------------------------------------------------------------------------

    def ensure_table(self, owner: str, target: TargetSpec, columns: Sequence[OutputColumn]) -> None:
        """Refuse a table not assigned to `owner`, or whose key is not the spec's key (with matching types)."""
        assignment = self._assignment(target.table)
        if assignment.owner != owner:
            raise TargetRefused(_not_assigned(target.table))
        if tuple(target.key) != assignment.key:
            raise TargetRefused(
                f"dynamodb table {target.table}: its key is [{', '.join(assignment.key)}], the spec's "
                f"target.key is [{', '.join(target.key)}]"
            )
        types = {column.name: column.type for column in columns}
        for name, key_type in zip(assignment.key, assignment.key_types, strict=True):
            if types.get(name) not in _KEY_TYPES.get(key_type, set()):
                raise TargetRefused(
                    f"dynamodb table {target.table}: key attribute {name} has type {key_type}, which a "
                    f"column of type {types.get(name)} cannot fill"
                )

    def _assignment(self, table: str) -> _Assignment:
        known = self._assignments.get(table)
        if known is not None and self._clock() - known.checked_at < ASSIGNMENT_MAX_AGE_S:
            return known
        try:
            described = self._client.describe_table(TableName=table)["Table"]
            tags = self._client.list_tags_of_resource(ResourceArn=described["TableArn"]).get("Tags", [])
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code in ("ResourceNotFoundException", "AccessDeniedException"):
                # Missing, or outside DynamoTargetTableArns: to the owner both read as not assigned.
                raise TargetRefused(_not_assigned(table)) from error
            raise LoadFailed(f"dynamodb table {table}: {code or 'the table could not be described'}") from error
        attribute_types = {a["AttributeName"]: a["AttributeType"] for a in described["AttributeDefinitions"]}
        ordered = sorted(described["KeySchema"], key=lambda part: part["KeyType"] != "HASH")
        key = tuple(part["AttributeName"] for part in ordered)
        owner = next((tag["Value"] for tag in tags if tag["Key"] == OWNER_TAG), None)
        assignment = _Assignment(owner, key, tuple(attribute_types[name] for name in key), self._clock())
        self._assignments[table] = assignment
        return assignment

    # --- one chunk ------------------------------------------------------------------------------------

    def load_chunk(
        self,
        task_id: str,
        chunk: int,
        owner: str,
        target: TargetSpec,
        columns: Sequence[OutputColumn],
        rows: pa.Table,
    ) -> LoadOutcome:
        self.ensure_table(owner, target, columns)
        items = self._items_by_key(target, columns, rows, chunk)
        ledger_id = f"{LEDGER_PREFIX}#{task_id}#{chunk}"
        recorded = self._recorded(ledger_id)
        if recorded is not None and recorded["written"]:
            return LoadOutcome(rows=recorded["loaded"], deleted=recorded["deleted"], already_loaded=True)
        if recorded is None:
            counts = {"loaded": len(items), "deleted": 0}
            if target.mode == "delete":
                counts = {"loaded": 0, "deleted": self._count_present(target.table, list(items))}
            recorded = self._record(ledger_id, counts)
        requests: list[dict[str, Any]]
        if target.mode == "delete":
            requests = [{"DeleteRequest": {"Key": dict(key)}} for key in items]
        else:
            requests = [{"PutRequest": {"Item": item}} for item in items.values()]
        for start in range(0, len(requests), BATCH_WRITE_ITEMS):
            self._write_batch(target.table, requests[start : start + BATCH_WRITE_ITEMS])
        self._client.update_item(
            TableName=self._ledger_table,
            Key={"id": {"S": ledger_id}},
            UpdateExpression="SET written = :yes",
            ExpressionAttributeValues={":yes": {"BOOL": True}},
        )
        return LoadOutcome(rows=recorded["loaded"], deleted=recorded["deleted"], already_loaded=False)

    def _items_by_key(
        self, target: TargetSpec, columns: Sequence[OutputColumn], rows: pa.Table, chunk: int
    ) -> dict[_KeyView, dict[str, Any]]:
        """The chunk's items by key, in source order, the later row of one key winning (BatchWriteItem
        refuses one key twice in a batch)."""
        types = {column.name: column.type for column in columns}
        items: dict[_KeyView, dict[str, Any]] = {}
        for position, row in enumerate(_rows(rows), start=1):
            try:
                values = {name: _attribute_value(value, types[name]) for name, value in row.items()}
                item = {name: self._serialize(value) for name, value in values.items() if value is not None}
            except (ArithmeticError, TypeError) as error:
                # a decimal of more than DynamoDB's 38 digits: refused on every delivery alike
                raise DataRefused(
                    f"dynamodb table {target.table}, chunk {chunk}, row {position}: {type(error).__name__}: "
                    "a number DynamoDB cannot store (at most 38 significant digits)"
                ) from error
            key = _KeyView({name: item[name] for name in target.key})
            items.pop(key, None)
            items[key] = item
        return items

    def _count_present(self, table: str, keys: list[_KeyView]) -> int:
        present = 0
        for start in range(0, len(keys), BATCH_GET_KEYS):
            pending: list[dict[str, Any]] = [dict(key) for key in keys[start : start + BATCH_GET_KEYS]]
            names = list(pending[0]) if pending else []
            projection = ", ".join(f"#k{i}" for i in range(len(names)))
            attribute_names = {f"#k{i}": name for i, name in enumerate(names)}
            for attempt in range(UNPROCESSED_RETRIES + 1):
                if not pending:
                    break
                if attempt:
                    self._back_off(attempt)
                answer = self._client.batch_get_item(
                    RequestItems={
                        table: {
                            "Keys": pending,
                            "ProjectionExpression": projection,
                            "ExpressionAttributeNames": attribute_names,
                            "ConsistentRead": True,
                        }
                    }
                )
                present += len(answer.get("Responses", {}).get(table, []))
                pending = answer.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])
            if pending:
                raise LoadFailed(f"dynamodb table {table}: {len(pending)} keys stayed unprocessed; retried later")
        return present

    def _write_batch(self, table: str, requests: list[dict[str, Any]]) -> None:
        pending = requests
        for attempt in range(UNPROCESSED_RETRIES + 1):
            if attempt:
                self._back_off(attempt)
            self._pacer.wait_for(len(pending))
            try:
                answer = self._client.batch_write_item(RequestItems={table: pending})
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") == "ValidationException":
                    # the same items are refused on every delivery (an item over 400 KB, an empty key)
                    message = error.response.get("Error", {}).get("Message", "")
                    raise DataRefused(f"dynamodb table {table} refused an item: {message}") from error
                raise
            pending = answer.get("UnprocessedItems", {}).get(table, [])
            if not pending:
                return
        raise LoadFailed(
            f"dynamodb table {table}: {len(pending)} items stayed unprocessed after {UNPROCESSED_RETRIES} "
            "retries (the table is throttled); the chunk is delivered again"
        )

    def _back_off(self, attempt: int) -> None:
        wait = min(UNPROCESSED_MAX_WAIT_S, UNPROCESSED_FIRST_WAIT_S * 2 ** (attempt - 1))
        self._sleep(wait * self._rng.uniform(0.5, 1.5))

    # --- the ledger -----------------------------------------------------------------------------------

    def _recorded(self, ledger_id: str) -> dict[str, Any] | None:
        found = self._client.get_item(
            TableName=self._ledger_table, Key={"id": {"S": ledger_id}}, ConsistentRead=True
        ).get("Item")
        if found is None:
            return None
        return {
            "loaded": int(found["loaded"]["N"]),
            "deleted": int(found["deleted"]["N"]),
            "written": bool(found.get("written", {}).get("BOOL", False)),
        }

    def _record(self, ledger_id: str, counts: dict[str, int]) -> dict[str, Any]:
        """Record the chunk's counts unless a concurrent delivery did first; the recorded ones win."""
        expiration = int(time.time()) + LEDGER_DAYS * 86400
        try:
            self._client.put_item(
                TableName=self._ledger_table,
                Item={
                    "id": {"S": ledger_id},
                    "loaded": {"N": str(counts["loaded"])},
                    "deleted": {"N": str(counts["deleted"])},
                    "written": {"BOOL": False},
                    "expiration": {"N": str(expiration)},
                },
                ConditionExpression="attribute_not_exists(id)",
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            recorded = self._recorded(ledger_id)
            if recorded is not None:
                return recorded
        return {**counts, "written": False}


class _KeyView(dict[str, Any]):
    """A serialized key usable as a dict key (serialized attribute values are dicts themselves)."""

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted((name, repr(value)) for name, value in self.items())))


def _rows(table: pa.Table) -> Iterator[dict[str, Any]]:
    for batch in table.to_batches():
        yield from batch.to_pylist()


def _attribute_value(value: Any, column_type: str) -> Any:
    """A transformed value as DynamoDB stores it: numbers as Decimal (DynamoDB has no float; a decimal
    column arrives as its canonical text), dates and timestamps as their ISO 8601 text (it sorts as they
    compare); None (the attribute left out) for a NaN or an infinity, which DynamoDB cannot store."""
    if value is None or isinstance(value, bool):
        return value
    if column_type == "decimal":
        return Decimal(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return None
        return Decimal(repr(value))
    return value


def _not_assigned(table: str) -> str:
    return (
        f"dynamodb table {table} is not assigned to this owner (an operator tags a table "
        f"{OWNER_TAG} = <owner> to assign it; see the runbook)"
    )
