"""Make moto's server behave as AWS does where Busline relies on it: DynamoDB's atomicity, and S3 keeping
the body of a PUT (keep_put_bodies).

DynamoDB applies each single-item request atomically. moto evaluates conditions, applies updates and
builds responses in plain Python under a multi-threaded server, so two concurrent UpdateItems can
interleave: measured here, 8 threads x 50 `ADD` updates ended at 399 instead of 400, and copying an
item while another request updated it raised "dictionary changed size during iteration". Fan-in
counters and exactly-once phase transitions depend on that atomicity, so DynamoDB and its streams
(which read the same tables) are served one request at a time. Other services keep their concurrency:
SQS long polls would otherwise block everything.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from typing import Any

_DYNAMODB_LOCK = threading.RLock()
_applied = False


def _serialized(method: Callable[..., Any], lock: threading.RLock) -> Callable[..., Any]:
    @functools.wraps(method)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return method(*args, **kwargs)

    return locked


def _dynamodb_handlers() -> tuple[type[Any], ...]:
    from moto.dynamodb.responses import DynamoHandler
    from moto.dynamodbstreams.responses import DynamoDBStreamsHandler

    return DynamoHandler, DynamoDBStreamsHandler


def make_dynamodb_atomic() -> None:
    """For the rest of the process: the local cloud's moto server never runs without it."""
    global _applied
    if _applied:
        return
    for handler in _dynamodb_handlers():
        handler.call_action = _serialized(handler.call_action, _DYNAMODB_LOCK)
    _applied = True


@contextlib.contextmanager
def atomic_dynamodb() -> Iterator[None]:
    """The same serialization for the block only, undone on exit: for tests that run moto in-process
    (mock_aws) from several threads and must see AWS's per-item atomicity, without changing moto for
    the tests that follow."""
    lock = threading.RLock()
    originals = [(handler, handler.__dict__.get("call_action")) for handler in _dynamodb_handlers()]
    for handler, _ in originals:
        handler.call_action = _serialized(handler.call_action, lock)
    try:
        yield
    finally:
        for handler, own in originals:
            if own is None:
                del handler.call_action  # it was inherited: let the base class's show through again
            else:
                handler.call_action = own


_put_bodies_kept = False


def keep_put_bodies() -> None:
    """For the rest of the process: a PUT's body is the object, whatever its Content-Type says.

    moto's server hands every request with a form Content-Type to werkzeug's form parser, which eats
    the body. Python's urllib sends `application/x-www-form-urlencoded` with any PUT that names no
    type, so a file PUT through a presigned upload URL (POST /uploads) was stored empty, where S3
    stores the bytes. No AWS API sends an HTML form with PUT, so PUT bodies are never parsed as one.
    """
    global _put_bodies_kept
    if _put_bodies_kept:
        return
    from moto.core.request import Request

    wants_form = Request.want_form_data_parsed

    def want_form_data_parsed(self: Any) -> bool:
        return self.method != "PUT" and bool(wants_form.__get__(self))

    Request.want_form_data_parsed = property(want_form_data_parsed)  # type: ignore[method-assign,assignment]
    _put_bodies_kept = True
