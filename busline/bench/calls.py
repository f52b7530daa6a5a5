"""AWS calls of a measured run, from moto's request recorder: who made them, and what AWS would bill.

Every recorded request is attributed to a service (SigV4 credential scope) and an operation, and to its
origin:
- "function": made by a function's code (botocore puts `exec-env/AWS_Lambda_…` in the User-Agent, from the
  AWS_EXECUTION_ENV the local cloud's workers set, as Lambda does);
- "eventSource": the local cloud's Lambda event source mappings (SQS receives and deletes on the template's
  queues, DynamoDB stream reads): on AWS, Lambda's pollers make these, and SQS bills them;
- "emulation": what only the local cloud does (the SNS bridge queue it polls because moto's EventBridge
  cannot target SNS, its TTL sweeper, …): there is no such call on AWS.
"function" + "eventSource" are the calls a deployment makes: what "per chunk" and the cost count.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

FUNCTION, EVENT_SOURCE, EMULATION = "function", "eventSource", "emulation"
ON_AWS = (FUNCTION, EVENT_SOURCE)
_LAMBDA_USER_AGENT = "exec-env/AWS_Lambda"
# Bodies worth decoding: small JSON requests whose content says what is billed (entries, tables, queues).
_DECODED_SERVICES = frozenset({"sqs", "events", "dynamodb", "dynamodbstreams"})
_READ_BLOCK = 1 << 20


def _header(entry: dict[str, Any], name: str) -> str:
    wanted = name.lower()
    return next((str(value) for key, value in entry.get("headers", {}).items() if key.lower() == wanted), "")


def service_of(entry: dict[str, Any]) -> str:
    # SigV4: "AWS4-HMAC-SHA256 Credential=<key>/<date>/<region>/<service>/aws4_request, ..."
    authorization = _header(entry, "authorization")
    marker = "Credential="
    if _header(entry, "x-amz-target").startswith("DynamoDBStreams"):
        return "dynamodbstreams"  # signed as "dynamodb", but a separate API (and free for Lambda)
    if marker in authorization:
        scope = authorization.split(marker, 1)[1].split(",", 1)[0].split("/")
        if len(scope) >= 4:
            return scope[3]
    return "unsigned"


def _body(entry: dict[str, Any]) -> str:
    body = entry.get("body") or ""
    if entry.get("body_encoded"):
        try:
            return base64.b64decode(body).decode(errors="replace")
        except (binascii.Error, ValueError):
            return ""
    return str(body)


def _parameters(body: str) -> dict[str, Any]:
    """A request's parameters: JSON protocols send an object, the query protocol a form."""
    if body.startswith("{"):
        with contextlib.suppress(ValueError):
            parsed = json.loads(body)
            if isinstance(parsed, dict):
                return parsed
        return {}
    return {name: values[0] for name, values in parse_qs(body).items()} if "=" in body else {}


def operation_of(entry: dict[str, Any], service: str, parameters: dict[str, Any] | None = None) -> str:
    target = _header(entry, "x-amz-target")
    if target:
        return target.rsplit(".", 1)[-1]
    if parameters and isinstance(parameters.get("Action"), str):
        return str(parameters["Action"])
    if service == "s3":
        path = urlsplit(entry.get("url", "")).path.strip("/")
        return f"{entry.get('method')} {'object' if '/' in path else 'bucket'}"
    body = _body(entry)[:4096] if service not in _DECODED_SERVICES else ""
    if "Action=" in body:
        action = parse_qs(body).get("Action")
        if action:
            return action[0]
    return str(entry.get("method"))


def iter_recorded_requests(chunks: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The recorder's entries, from text arriving in pieces. Not line by line: moto's threads append an
    entry and its newline in two writes, so under load a line can hold two entries (and another none);
    the objects themselves stay whole."""
    decoder = json.JSONDecoder()
    buffer, position = "", 0
    pieces = iter(chunks)
    exhausted = False

    def more() -> bool:
        nonlocal buffer, position, exhausted
        try:
            piece = next(pieces)
        except StopIteration:
            exhausted = True
            return False
        buffer, position = buffer[position:] + piece, 0
        return True

    while True:
        while position < len(buffer) and buffer[position].isspace():
            position += 1
        if position >= len(buffer):
            if exhausted or not more():
                return
            continue
        try:
            entry, position = decoder.raw_decode(buffer, position)
        except json.JSONDecodeError:
            if exhausted or not more():  # else: an entry cut by the end of the piece read so far
                raise
            continue
        yield entry


def read_in_blocks(path: Path) -> Iterator[str]:
    """A recording, piece by piece: at 10x it holds every chunk's S3 body, too much to read at once."""
    if not path.exists():
        return
    with path.open(encoding="utf-8", errors="replace") as stream:
        while block := stream.read(_READ_BLOCK):
            yield block


@dataclass
class CallStats:
    """Counts of one measured run's recorded calls."""

    by_service: Counter[str] = field(default_factory=Counter)  # everything recorded
    by_operation: Counter[str] = field(default_factory=Counter)
    by_origin: Counter[str] = field(default_factory=Counter)
    aws_by_service: Counter[str] = field(default_factory=Counter)  # function + eventSource only
    aws_by_operation: Counter[str] = field(default_factory=Counter)
    eventbridge_entries: int = 0  # events put (the unit EventBridge bills), from PutEvents bodies
    sqs_messages_deleted: int = 0  # messages consumed from queues: each was delivered into one
    s3_bytes_put: int = 0
    s3_objects_put: int = 0
    dynamodb_by_table: Counter[tuple[str, str]] = field(default_factory=Counter)  # (table, operation)

    @property
    def total(self) -> int:
        return sum(self.by_service.values())

    @property
    def aws_total(self) -> int:
        return sum(self.aws_by_service.values())


def count_calls(entries: Iterable[dict[str, Any]], queue_urls: Iterable[str] = ()) -> CallStats:
    """Attribute every entry (see the module doc). `queue_urls`: the template's queues, whose polling by
    the local cloud stands for Lambda's event source mappings; its other queues are emulation."""
    template_queues = {_queue_key(url) for url in queue_urls}
    stats = CallStats()
    for entry in entries:
        service = service_of(entry)
        parameters = _parameters(_body(entry)) if service in _DECODED_SERVICES else {}
        operation = operation_of(entry, service, parameters)
        key = f"{service}:{operation}"
        origin = _origin(entry, service, parameters, template_queues)
        stats.by_service[service] += 1
        stats.by_operation[key] += 1
        stats.by_origin[origin] += 1
        if origin not in ON_AWS:
            continue
        stats.aws_by_service[service] += 1
        stats.aws_by_operation[key] += 1
        if key == "events:PutEvents":
            stats.eventbridge_entries += len(parameters.get("Entries") or []) or 1
        elif key == "sqs:DeleteMessageBatch":
            stats.sqs_messages_deleted += len(parameters.get("Entries") or [])
        elif key == "sqs:DeleteMessage":
            stats.sqs_messages_deleted += 1
        elif key == "s3:PUT object":
            stats.s3_objects_put += 1
            with contextlib.suppress(ValueError):
                stats.s3_bytes_put += int(_header(entry, "content-length") or 0)
        elif service == "dynamodb":
            stats.dynamodb_by_table[(str(parameters.get("TableName", "?")), operation)] += 1
    return stats


def _queue_key(url: str) -> str:
    # Clients spell a queue's URL with different hosts (localhost, 127.0.0.1): its path names it.
    return urlsplit(url).path.rstrip("/")


def _origin(
    entry: dict[str, Any], service: str, parameters: dict[str, Any], template_queues: set[str]
) -> str:
    if _LAMBDA_USER_AGENT in _header(entry, "user-agent"):
        return FUNCTION
    if service == "dynamodbstreams":
        return EVENT_SOURCE
    if service == "sqs" and _queue_key(str(parameters.get("QueueUrl", ""))) in template_queues:
        return EVENT_SOURCE
    return EMULATION
