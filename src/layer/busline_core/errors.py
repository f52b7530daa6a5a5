"""The one exception hierarchy of the Busline layer.

Every module of the layer (control plane and data plane) raises subclasses of BuslineError, so a
handler can map them to HTTP statuses or decide whether a retry can help.
"""

from __future__ import annotations


class BuslineError(Exception):
    """Base class; `status_code` is what the REST API answers when nothing more specific applies."""

    status_code: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidTask(BuslineError):
    """A task request or spec is not acceptable; `errors` lists each offending field."""

    status_code = 400

    def __init__(self, message: str, *, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        # Each entry: {"field": "source.uri", "message": "..."}; the API returns them as they are.
        self.errors = errors or []


class TaskNotFound(BuslineError):
    status_code = 404

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id} not found")
        self.task_id = task_id


class SourceUnreadable(BuslineError):
    """A source cannot be opened or parsed; retrying the same bytes will not help."""

    status_code = 422

    def __init__(self, uri: str, reason: str) -> None:
        super().__init__(f"source {uri} is unreadable: {reason}")
        self.uri = uri
        self.reason = reason


class ChunkFailed(BuslineError):
    """A chunk could not be processed (also raised by the deliberate fault switch)."""


class LoadFailed(BuslineError):
    """Writing a chunk into the warehouse failed; the message names table/column/row."""


class PublishFailed(BuslineError):
    """EventBridge or SNS refused some entries."""


class ConfigurationError(BuslineError):
    """The function's environment or secrets are missing something it needs."""
