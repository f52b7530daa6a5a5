"""One correlation id per task, from the request that submitted it to the last log line of its load.

The API takes the client's `X-Correlation-Id` (checked here) or else API Gateway's request id; the task
keeps it (TaskState.correlation_id) and every event about the task carries it (contracts._Event). Each
function binds the id of the record it is working on (`bind`): from then on its Powertools log lines
carry it as `correlation_id`, its X-Ray segment is annotated with it, and the events it publishes are
stamped with it (bus.EventPublisher). `busline logs TASK_ID` finds a task's lines by it.
"""

from __future__ import annotations

import contextlib
import re
from contextvars import ContextVar
from typing import Any, Final, TypeVar

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.logging.exceptions import OrphanedChildLoggerError
from pydantic import BaseModel

from .errors import InvalidTask
from .limits import MAX_CORRELATION_ID_LENGTH

HEADER: Final = "X-Correlation-Id"
ANNOTATION: Final = "correlation_id"
# What a log query and a shell can carry unquoted: letters, digits and - _ . : / (a trace id's separators)
_SHAPE = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9._:/-]{{0,{MAX_CORRELATION_ID_LENGTH - 1}}}$")

_current: ContextVar[str | None] = ContextVar("busline_correlation_id", default=None)
_logger = Logger(child=True)
_tracer = Tracer()

Detail = TypeVar("Detail", bound=BaseModel)


def from_request(headers: dict[str, Any] | None, request_id: str | None) -> str | None:
    """The correlation id of an API request: the client's header when it sent one, else the request id.

    A header that is empty, too long or has other characters is the client's mistake: InvalidTask (400)."""
    sent = next((value for name, value in (headers or {}).items() if name.lower() == HEADER.lower()), None)
    if sent is None:
        return request_id
    if not isinstance(sent, str) or not _SHAPE.match(sent):
        message = (
            f"must be 1 to {MAX_CORRELATION_ID_LENGTH} characters: letters, digits and - _ . : / "
            "(not starting with a punctuation mark)"
        )
        raise InvalidTask(f"{HEADER}: {message}", errors=[{"field": HEADER, "message": message}])
    return sent


def bind(correlation_id: str | None) -> None:
    """Work on behalf of `correlation_id` from now on (None: of no task). Call it for every record: a warm
    container must not lend one task's id to the next record's log lines."""
    _current.set(correlation_id)
    # no function logger yet (a script, a test): no Powertools line to stamp
    with contextlib.suppress(OrphanedChildLoggerError):
        _logger.set_correlation_id(correlation_id)
    if correlation_id is not None:
        # no open segment (tracing off, or outside a handler): the log lines still carry the id
        with contextlib.suppress(Exception):
            _tracer.put_annotation(key=ANNOTATION, value=correlation_id)


def current() -> str | None:
    return _current.get()


def stamped(detail: Detail) -> Detail:
    """`detail` with the bound correlation id, when it is an event that carries one and has none yet."""
    value = _current.get()
    if value is None or "correlationId" not in type(detail).model_fields or getattr(detail, "correlationId", None):
        return detail
    return detail.model_copy(update={"correlationId": value})
