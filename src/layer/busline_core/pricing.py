"""AWS list prices, the one table Busline's cost figures use, and the arithmetic from usage to US dollars.

us-east-1 list prices as checked in late November 2026 (the tooling notes); recheck them before publishing
a figure. Free tiers are left out on purpose: the cost of one task must not depend on what else the account
ran that month. Everything here is pure: usage in, dollars out, so `make bench` and the docs share it.
"""

from __future__ import annotations

import math
from base64 import b64decode
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

PRICES_REGION = "us-east-1"
PRICES_CHECKED = "late November 2026"
MILLION = 1_000_000


@dataclass(frozen=True)
class PriceList:
    """US dollars per unit. Units are what AWS bills, not API calls: see `estimate_cost` for the mapping."""

    eventbridge_event: float  # a custom event put on a bus, per 64 KB chunk of it
    sqs_request: float  # any SQS action, per 64 KB chunk of its payload (a batch of 10 is one request)
    lambda_request: float
    lambda_gb_second_x86_64: float
    lambda_gb_second_arm64: float
    dynamodb_write_unit: float  # on-demand: one write of an item up to 1 KB
    dynamodb_read_unit: float  # on-demand: one strongly consistent read of up to 4 KB
    websocket_message: float  # API Gateway WebSocket, per 32 KB chunk, either direction
    websocket_connection_minute: float
    s3_put: float  # PUT, COPY, POST, LIST
    s3_get: float  # GET, HEAD and the other reads
    stepfunctions_transition: float  # Standard workflows
    glue_dpu_hour: float
    glue_minimum_seconds: float  # a Glue job is billed per second with this minimum


LIST_PRICES = PriceList(
    eventbridge_event=1.00 / MILLION,
    sqs_request=0.40 / MILLION,
    lambda_request=0.20 / MILLION,
    lambda_gb_second_x86_64=0.0000166667,
    lambda_gb_second_arm64=0.0000133334,
    dynamodb_write_unit=0.625 / MILLION,
    dynamodb_read_unit=0.125 / MILLION,
    websocket_message=1.00 / MILLION,
    websocket_connection_minute=0.25 / MILLION,
    s3_put=0.005 / 1000,
    s3_get=0.0004 / 1000,
    stepfunctions_transition=0.025 / 1000,
    # from the performance issue, not among the tooling notes' checked prices: recheck first
    glue_dpu_hour=0.44,
    glue_minimum_seconds=60.0,
)

# How each operation is billed. Keys are "<service>:<operation>": the bench names them as moto's request
# log does (S3 as "<METHOD> object|bucket"), a task's meter (usage.py) by the client's operation names.
# A batch bills each of its items: only the caller can say how many (Usage's units), so a batch call alone
# is left unpriced.
_DYNAMODB_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem"})
_DYNAMODB_READS = frozenset({"GetItem", "Query", "Scan"})
_DYNAMODB_FREE = frozenset({"DescribeTable", "ListTagsOfResource"})  # control plane: not billed per call
# A GET on a bucket is a LIST, billed like a PUT.
_S3_PUT_CLASS = frozenset({
    "PUT object", "POST object", "PUT bucket", "POST bucket", "GET bucket",
    "PutObject", "CopyObject", "CreateMultipartUpload", "UploadPart", "UploadPartCopy",
    "CompleteMultipartUpload", "ListObjectsV2", "ListObjects", "ListMultipartUploads", "ListParts",
})  # fmt: skip
_S3_GET_CLASS = frozenset({"GET object", "HEAD object", "HEAD bucket", "GetObject", "HeadObject", "HeadBucket"})
_S3_FREE = frozenset({"DELETE object", "DELETE bucket", "DeleteObject", "DeleteObjects", "AbortMultipartUpload"})
# Records a Lambda event source mapping reads from a DynamoDB stream are free.
_FREE_SERVICES = frozenset({"dynamodbstreams"})

Architecture = Literal["x86_64", "arm64"]


@dataclass(frozen=True)
class Usage:
    """What one task (or one projected run) used.

    `calls` counts requests per "<service>:<operation>". Where a bill counts something other than the
    request, the caller may say what it counted: PutEvents entries, messages a rule delivered into a
    queue (requests no client makes, so no recorder sees), DynamoDB capacity units. Left None, each
    call counts as one unit.
    """

    calls: Mapping[str, float] = field(default_factory=dict)  # float: a projection scales per-chunk counts
    lambda_invocations: float = 0
    lambda_gb_seconds: float = 0.0
    lambda_architecture: Architecture = "x86_64"
    eventbridge_events: float | None = None
    sqs_deliveries: float = 0
    dynamodb_write_units: float | None = None
    dynamodb_read_units: float | None = None
    websocket_messages: float = 0
    websocket_connection_minutes: float = 0.0
    stepfunctions_transitions: float = 0


@dataclass(frozen=True)
class CostLine:
    service: str
    item: str
    quantity: float
    unit_usd: float

    @property
    def usd(self) -> float:
        return self.quantity * self.unit_usd


@dataclass(frozen=True)
class CostEstimate:
    lines: tuple[CostLine, ...]
    unpriced: Mapping[str, float]  # operations the price table has no price for, with their counts
    free: Mapping[str, float]  # operations AWS does not bill

    @property
    def total_usd(self) -> float:
        return sum(line.usd for line in self.lines)

    def by_service(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for line in self.lines:
            totals[line.service] = totals.get(line.service, 0.0) + line.usd
        return totals

    def per_million_rows(self, rows: int) -> dict[str, float]:
        """USD per 1M rows, per service and "total"; empty when there were no rows."""
        if rows <= 0:
            return {}
        scale = MILLION / rows
        shares = {service: usd * scale for service, usd in self.by_service().items()}
        shares["total"] = self.total_usd * scale
        return shares


def estimate_cost(usage: Usage, prices: PriceList = LIST_PRICES) -> CostEstimate:
    """The list-price cost of `usage`. Operations without a price in the table are returned in `unpriced`
    (never guessed), operations AWS does not bill in `free`."""
    sqs_requests = eventbridge_calls = ddb_writes = ddb_reads = s3_puts = s3_gets = 0.0
    unpriced: dict[str, float] = {}
    free: dict[str, float] = {}
    for key, count in usage.calls.items():
        service, _, operation = key.partition(":")
        if service == "sqs":
            sqs_requests += count
        elif service == "events" and operation == "PutEvents":
            eventbridge_calls += count
        elif service == "dynamodb" and operation in _DYNAMODB_WRITES:
            ddb_writes += count
        elif service == "dynamodb" and operation in _DYNAMODB_READS:
            ddb_reads += count
        elif service == "s3" and operation in _S3_PUT_CLASS:
            s3_puts += count
        elif service == "s3" and operation in _S3_GET_CLASS:
            s3_gets += count
        elif (
            service in _FREE_SERVICES
            or (service == "s3" and operation in _S3_FREE)
            or (service == "dynamodb" and operation in _DYNAMODB_FREE)
        ):
            free[key] = free.get(key, 0) + count
        else:
            unpriced[key] = unpriced.get(key, 0) + count

    gb_second = (
        prices.lambda_gb_second_arm64
        if usage.lambda_architecture == "arm64"
        else prices.lambda_gb_second_x86_64
    )
    candidates = [
        CostLine("lambda", "requests", usage.lambda_invocations, prices.lambda_request),
        CostLine("lambda", f"GB-seconds ({usage.lambda_architecture})", usage.lambda_gb_seconds, gb_second),
        CostLine("sqs", "requests", sqs_requests + usage.sqs_deliveries, prices.sqs_request),
        CostLine(
            "eventbridge",
            "events",
            eventbridge_calls if usage.eventbridge_events is None else usage.eventbridge_events,
            prices.eventbridge_event,
        ),
        CostLine(
            "dynamodb",
            "write units",
            ddb_writes if usage.dynamodb_write_units is None else usage.dynamodb_write_units,
            prices.dynamodb_write_unit,
        ),
        CostLine(
            "dynamodb",
            "read units",
            ddb_reads if usage.dynamodb_read_units is None else usage.dynamodb_read_units,
            prices.dynamodb_read_unit,
        ),
        CostLine("s3", "PUT/COPY/POST/LIST requests", s3_puts, prices.s3_put),
        CostLine("s3", "GET/HEAD requests", s3_gets, prices.s3_get),
        CostLine("apigateway-websocket", "messages", usage.websocket_messages, prices.websocket_message),
        CostLine(
            "apigateway-websocket",
            "connection minutes",
            usage.websocket_connection_minutes,
            prices.websocket_connection_minute,
        ),
        CostLine(
            "stepfunctions",
            "state transitions",
            usage.stepfunctions_transitions,
            prices.stepfunctions_transition,
        ),
    ]
    return CostEstimate(tuple(line for line in candidates if line.quantity), unpriced, free)


def lambda_gb_seconds(billed_ms: float, memory_mb: int) -> float:
    """GB-seconds of `billed_ms` milliseconds at `memory_mb` (Lambda counts 1024 MB as 1 GB)."""
    return billed_ms / 1000 * memory_mb / 1024


def glue_cost_usd(dpus: float, seconds: float, prices: PriceList = LIST_PRICES) -> float:
    """A Glue job of `dpus` DPUs that ran `seconds`: billed per second, with the minimum."""
    billed = max(seconds, prices.glue_minimum_seconds)
    return dpus * billed / 3600 * prices.glue_dpu_hour


# --- DynamoDB capacity units ----------------------------------------------------------------------


def dynamodb_item_bytes(item: Mapping[str, Any]) -> int:
    """The size DynamoDB bills an item at, from its low-level form ({"name": {"S": "..."}, ...}):
    attribute names plus values (strings and binaries by length, numbers by significant digits, one byte
    for a boolean or null, three bytes and one per element for a list or map)."""
    return sum(len(name.encode()) + _value_bytes(value) for name, value in item.items())


def _value_bytes(value: Mapping[str, Any]) -> int:
    ((kind, content),) = value.items()
    if kind == "S":
        return len(str(content).encode())
    if kind == "N":
        return _number_bytes(str(content))
    if kind == "B":
        return len(_binary(content))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(str(element).encode()) for element in content)
    if kind == "NS":
        return sum(_number_bytes(str(element)) for element in content)
    if kind == "BS":
        return sum(len(_binary(element)) for element in content)
    if kind == "L":
        return 3 + sum(1 + _value_bytes(element) for element in content)
    if kind == "M":
        return 3 + sum(1 + len(name.encode()) + _value_bytes(element) for name, element in content.items())
    raise ValueError(f"unknown DynamoDB attribute type {kind!r}")


def _number_bytes(text: str) -> int:
    digits = Decimal(text).normalize().as_tuple().digits
    significant = len(digits) if any(digits) else 1
    return math.ceil(significant / 2) + 1


def _binary(content: Any) -> bytes:
    return bytes(content) if isinstance(content, bytes | bytearray) else b64decode(content)


def write_units(item_bytes: int, indexes: int = 0) -> int:
    """Write units of one write of an item of `item_bytes`, also written to `indexes` global secondary
    indexes that project it whole (each bills its own write)."""
    return max(1, math.ceil(item_bytes / 1024)) * (1 + indexes)


def read_units(item_bytes: int, *, consistent: bool = True) -> float:
    """Read units of one read of an item of `item_bytes` (an eventually consistent read costs half)."""
    units = max(1, math.ceil(item_bytes / 4096))
    return float(units) if consistent else units / 2
