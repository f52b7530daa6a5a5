"""The one exception hierarchy of the Busline layer.

Every module of the layer raises subclasses of BuslineError. Each says whether a retry of the same
work can help (`retryable`): the SQS steps fail a task at once on a non-retryable error instead of
letting SQS redeliver it until the DLQ. The HTTP status of each error lives in one mapping in the
API module (src/api/app.py), not here.
"""

from __future__ import annotations

from .redaction import display_url


class BuslineError(Exception):
    retryable: bool = True

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidTask(BuslineError):
    """A task request or spec is not acceptable; `errors` lists each offending field."""

    retryable = False

    def __init__(self, message: str, *, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        # Each entry: {"field": "source.uri", "message": "..."}; the API returns them as they are.
        self.errors = errors or []


class InvalidPage(InvalidTask):
    """A page request with a bad limit, or a token this API did not issue for this listing."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", errors=[{"field": field, "message": message}])


class RequestTooLarge(InvalidTask):
    """A request body or a spec over a size limit (limits.py); `field` names what is too large."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", errors=[{"field": field, "message": message}])


class NotJsonText(BuslineError):
    """A request body that is not JSON text (RFC 8259, with I-JSON's stricter rules) within the body
    limits; `position` is the offset in the body where it went wrong, when known."""

    retryable = False

    def __init__(self, reason: str, position: int | None = None) -> None:
        super().__init__(f"body: not JSON text: {reason}")
        self.reason = reason
        self.position = position


class NotSignedIn(BuslineError):
    """The request carries no verified identity (the API's authorizer is missing or was bypassed)."""

    retryable = False

    def __init__(self, reason: str = "sign in: no verified identity on the request") -> None:
        super().__init__(reason)


class TaskNotFound(BuslineError):
    """No such task, or not the caller's: the two answer alike."""

    retryable = False

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id} not found")
        self.task_id = task_id


class TaskAlreadyRecorded(BuslineError):
    """A task id chosen ahead (a schedule's run) is recorded already: this is a repeated delivery."""

    retryable = False

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id} is recorded already")
        self.task_id = task_id


class TaskNotCancellable(BuslineError):
    """The task is past cancelling: finished, or COMMITTING (its rows may be becoming visible right now)."""

    retryable = False

    def __init__(self, task_id: str, status: str) -> None:
        super().__init__(f"task {task_id} is {status}: only a task that is still running can be cancelled")
        self.task_id = task_id
        self.status = status


class PipelineNotFound(BuslineError):
    """No pipeline of that name (GET /pipelines/{name}/…; a task naming one is an InvalidPipeline)."""

    retryable = False

    def __init__(self, name: str) -> None:
        super().__init__(f"pipeline {name} not found")
        self.name = name


class ScheduleNotFound(BuslineError):
    """No such schedule, or not the caller's: the two answer alike."""

    retryable = False

    def __init__(self, schedule_id: str) -> None:
        super().__init__(f"schedule {schedule_id} not found")
        self.schedule_id = schedule_id


class WarehouseUnavailable(BuslineError):
    """The warehouse cannot be reached for a read a person waits on (a dashboard): try again later."""


class ListingUnavailable(BuslineError):
    """The task list cannot be read right now: its index is missing or being built (an upgrade's deploys,
    template parameter OwnerIndex). Every other request still works."""


class SourceUnreadable(BuslineError):
    """A source cannot be opened or parsed; retrying the same bytes will not help."""

    retryable = False

    def __init__(self, uri: str, reason: str) -> None:
        # The URI as the owner wrote it may carry credentials or a presigned signature.
        super().__init__(f"source {display_url(uri)} is unreadable: {reason}")
        self.uri = uri
        self.reason = reason


class SourceOverLimit(SourceUnreadable):
    """A source (or the task it makes) past one of limits.py's source or task limits; `limit` is the
    constant's name, so the reason names what to change."""

    def __init__(self, uri: str, limit: str, reason: str) -> None:
        super().__init__(uri, f"{reason} (limit {limit})")
        self.limit = limit


class ChunkFailed(BuslineError):
    """A chunk could not be processed (also raised by the deliberate fault switch)."""


class LoadFailed(BuslineError):
    """Writing a chunk into the warehouse failed; the message names table/column/row."""


class TargetRefused(LoadFailed):
    """The target is not a table Busline may write for the task's owner (one it did not create and no
    operator mapped, or a mapping outside the owner's schema); the catalog will not change by itself,
    so the task fails at once instead of being retried into the DLQ."""

    retryable = False


class DataRefused(LoadFailed):
    """The warehouse refused the chunk's data itself (a Postgres data exception or a constraint the table
    has beyond Busline's): the same rows will be refused on every delivery, so the task fails at once,
    naming the row and column. Transform rejects what it knows Postgres refuses; this is the rest."""

    retryable = False


class PublishFailed(BuslineError):
    """EventBridge or SNS refused some entries."""


class ConfigurationError(BuslineError):
    """The function's environment or secrets are missing something it needs (an operator can fix it,
    so the message is retried until the DLQ, where it can be replayed)."""
