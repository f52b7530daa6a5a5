"""Make moto's server honour the atomicity AWS promises, where Busline relies on it.

DynamoDB applies each single-item request atomically. moto evaluates conditions, applies updates and
builds responses in plain Python under a multi-threaded server, so two concurrent UpdateItems can
interleave: measured here, 8 threads x 50 `ADD` updates ended at 399 instead of 400, and copying an
item while another request updated it raised "dictionary changed size during iteration". Fan-in
counters and exactly-once phase transitions depend on that atomicity, so DynamoDB and its streams
(which read the same tables) are served one request at a time. Other services keep their concurrency:
SQS long polls would otherwise block everything.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

_DYNAMODB_LOCK = threading.RLock()
_applied = False


def _serialized(method: Callable[..., Any], lock: threading.RLock) -> Callable[..., Any]:
    @functools.wraps(method)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return method(*args, **kwargs)

    return locked


def make_dynamodb_atomic() -> None:
    global _applied
    if _applied:
        return
    from moto.dynamodb.responses import DynamoHandler
    from moto.dynamodbstreams.responses import DynamoDBStreamsHandler

    DynamoHandler.call_action = _serialized(DynamoHandler.call_action, _DYNAMODB_LOCK)  # type: ignore[method-assign]
    DynamoDBStreamsHandler.call_action = _serialized(  # type: ignore[method-assign]
        DynamoDBStreamsHandler.call_action, _DYNAMODB_LOCK
    )
    _applied = True
