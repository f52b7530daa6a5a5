"""The API's use cases: submit a task, read it, list the owner's tasks, page through its rejects.

Every read is scoped to the caller: another owner's task answers exactly like a missing one.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools import Logger
from pydantic import ValidationError

from .contracts import (
    TASK_SUBMITTED,
    Phase,
    PipelineRequest,
    RejectPage,
    SubmitTaskRequest,
    TaskPage,
    TaskSnapshot,
    TaskSubmitted,
)
from .deps import ApiDeps
from .errors import InvalidPage, InvalidTask, TaskNotFound
from .paging import check_limit
from .pipelines import expand_pipeline
from .spec import TaskSpec
from .task_state import TaskAbandoned, TaskState
from .tasks_repo import TasksRepository

logger = Logger(child=True)

ADHOC_PIPELINE = "adhoc"


def _field_errors(error: ValidationError) -> list[dict[str, str]]:
    found = []
    for detail in error.errors():
        location = [str(part) for part in detail["loc"]]
        if location and location[0] in ("spec", "pipeline"):
            location = location[1:]  # the union's tag, not a field of the request
        found.append({"field": ".".join(location) or "body", "message": detail["msg"]})
    return found


def _invalid(error: ValidationError, prefix: str = "") -> InvalidTask:
    errors = _field_errors(error)
    if prefix:
        errors = [{**entry, "field": f"{prefix}.{entry['field']}"} for entry in errors]
    summary = "; ".join(f"{entry['field']}: {entry['message']}" for entry in errors)
    return InvalidTask(f"invalid task: {summary}", errors=errors)


def _resolve_spec(
    request: SubmitTaskRequest | PipelineRequest | TaskSpec | Mapping[str, Any], deps: ApiDeps
) -> tuple[str, TaskSpec]:
    if isinstance(request, Mapping):
        try:
            request = SubmitTaskRequest.model_validate(request)
        except ValidationError as error:
            raise _invalid(error) from error
    body = request.root if isinstance(request, SubmitTaskRequest) else request
    if isinstance(body, PipelineRequest):
        params = dict(body.params)
        params.setdefault("chunkRows", deps.chunk_rows)
        try:
            spec = expand_pipeline(body.pipeline, params, deps.data_bucket)
        except ValidationError as error:
            raise _invalid(error, "params") from error
        return body.pipeline, spec
    spec = body
    if "chunkRows" not in spec.model_fields_set:
        spec = spec.model_copy(update={"chunkRows": deps.chunk_rows})
    return ADHOC_PIPELINE, spec


def submit_task(
    request: SubmitTaskRequest | PipelineRequest | TaskSpec | Mapping[str, Any], owner: str, deps: ApiDeps
) -> TaskSnapshot:
    """Validate, record (ACCEPTED) and announce a task; invalid requests record and publish nothing."""
    pipeline, spec = _resolve_spec(request, deps)
    spec_json = spec.model_dump_json(by_alias=True)
    try:
        # A spec built in code (or by a pipeline with odd params) is held to the same rules as a body.
        TaskSpec.model_validate_json(spec_json)
    except ValidationError as error:
        raise _invalid(error) from error

    state = deps.tasks.create(TaskState.submitted(str(uuid.uuid4()), owner, pipeline, spec_json, deps.clock()))
    try:
        deps.publisher.publish(TASK_SUBMITTED, TaskSubmitted(taskId=state.task_id))
    except Exception as error:
        # Without the event nothing will ever run it: say so on the task instead of leaving it ACCEPTED.
        deps.tasks.apply(state.task_id, TaskAbandoned(Phase.EXTRACT, f"could not publish TaskSubmitted: {error}"))
        raise
    logger.info("task accepted", extra={"task_id": state.task_id, "pipeline": pipeline, "owner": owner})
    return state.snapshot()


def _owned(task_id: str, owner: str, deps: ApiDeps) -> TaskState:
    state = deps.tasks.get(task_id)
    if state is None or state.owner != owner:
        raise TaskNotFound(task_id)
    return state


def get_task(task_id: str, owner: str, deps: ApiDeps) -> TaskSnapshot:
    return _owned(task_id, owner, deps).snapshot()


def list_tasks(owner: str, limit: int, next_token: str | None, deps: ApiDeps) -> TaskPage:
    check_limit(limit)
    listing = f"tasks/{owner}"
    start = None
    if next_token is not None:
        start = deps.page_tokens.decode(listing, next_token)
        if not TasksRepository.is_owner_position(start, owner):
            raise InvalidPage("nextToken", "not a token this API returned for this listing")
    states, position = deps.tasks.list_by_owner(owner, limit, start)
    token = None if position is None else deps.page_tokens.encode(listing, position)
    return TaskPage(items=[state.snapshot() for state in states], nextToken=token)


def list_rejects(task_id: str, owner: str, limit: int, next_token: str | None, deps: ApiDeps) -> RejectPage:
    check_limit(limit)
    _owned(task_id, owner, deps)
    listing = f"rejects/{task_id}"
    start = None if next_token is None else deps.page_tokens.decode(listing, next_token)
    items, position = deps.chunks.iter_rejects(task_id, limit, start)
    token = None if position is None else deps.page_tokens.encode(listing, position)
    return RejectPage(items=items, nextToken=token)
