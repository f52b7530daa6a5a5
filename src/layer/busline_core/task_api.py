"""The API's use cases: submit a task, read it, list the owner's tasks, page through its rejects, hand
out an upload URL.

Every read is scoped to the caller: another owner's task answers exactly like a missing one, and a task
may only read the sources source_access.py allows its owner.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from aws_lambda_powertools import Logger
from pydantic import ValidationError

from . import correlation, reject_groups, usage
from .contracts import (
    TASK_CANCELLED,
    TASK_SUBMITTED,
    Phase,
    PipelineRequest,
    Reject,
    RejectPage,
    RejectSummary,
    ScheduledBy,
    SubmitTaskRequest,
    TaskFinished,
    TaskPage,
    TaskSnapshot,
    TaskStatus,
    TaskSubmitted,
    UploadRequest,
    UploadTicket,
)
from .dashboards import Dashboard
from .deps import ApiDeps, SubmitDeps
from .errors import (
    InvalidPage,
    InvalidTask,
    RequestTooLarge,
    TaskAlreadyRecorded,
    TaskNotCancellable,
    TaskNotFound,
)
from .limits import MAX_SPEC_BYTES, MAX_SUMMARIZED_REJECTS
from .paging import check_limit
from .pipelines import expand_pipeline, pipeline_named
from .source_access import upload_prefix
from .spec import TARGET_REFUSED, TaskSpec, table_name_problem
from .task_state import Cancelled, TaskAbandoned, TaskState
from .tasks_repo import TasksRepository

logger = Logger(child=True)

ADHOC_PIPELINE = "adhoc"
# Long enough to upload a big file over a slow line, short enough that a leaked URL soon stops working.
UPLOAD_URL_SECONDS = 900


def _field_errors(details: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    found = []
    for detail in details:
        location = [str(part) for part in detail.get("loc", ())]
        if location and location[0] == "body":
            location = location[1:]  # the API's request validation says where the request held it
        if location and location[0] in ("spec", "pipeline"):
            location = location[1:]  # the union's tag, not a field of the request
        found.append({"field": ".".join(location) or "body", "message": str(detail.get("msg", ""))})
    return found


def _invalid_fields(errors: list[dict[str, str]]) -> InvalidTask:
    summary = "; ".join(f"{entry['field']}: {entry['message']}" for entry in errors)
    return InvalidTask(f"invalid task: {summary}", errors=errors)


def _invalid(error: ValidationError, prefix: str = "") -> InvalidTask:
    errors = _field_errors(error.errors())
    if prefix:
        errors = [{**entry, "field": f"{prefix}.{entry['field']}"} for entry in errors]
    return _invalid_fields(errors)


def refused_target(details: Iterable[Mapping[str, Any]]) -> InvalidTask | None:
    """The 400 for a request body whose target Busline refuses (a schema, a qualified or reserved table),
    or None. The API's request model finds these before submit_task runs and would answer 422 like a
    malformed body; a well-formed request Busline will not run is a 400, whichever layer notices it.
    Every error of the body is listed, so the user sees all of them at once."""
    details = list(details)
    if not any(detail.get("type") == TARGET_REFUSED for detail in details):
        return None
    return _invalid_fields(_field_errors(details))


def _resolve_spec(
    request: SubmitTaskRequest | PipelineRequest | TaskSpec | Mapping[str, Any], deps: SubmitDeps,
    source_uri: str | None = None,
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
        if source_uri is not None:
            spec = spec.model_copy(update={"source": spec.source.model_copy(update={"uri": source_uri})})
        return body.pipeline, spec
    spec = body
    if "chunkRows" not in spec.model_fields_set:
        spec = spec.model_copy(update={"chunkRows": deps.chunk_rows})
    return ADHOC_PIPELINE, spec


def submit_task(
    request: SubmitTaskRequest | PipelineRequest | TaskSpec | Mapping[str, Any],
    owner: str,
    deps: SubmitDeps,
    *,
    task_id: str | None = None,
    scheduled_by: ScheduledBy | None = None,
    retry_of: str | None = None,
    source_uri: str | None = None,
) -> TaskSnapshot:
    """Validate, record (ACCEPTED) and announce a task; invalid requests record and publish nothing.

    A `task_id` chosen by the caller (a schedule's run) is recorded once: a second submission under it
    raises TaskAlreadyRecorded and publishes nothing. `source_uri` replaces a named pipeline's source (a
    file dropped in the inbox) and is held to the same source rules."""
    pipeline, spec = checked_spec(request, owner, deps, source_uri=source_uri)
    spec_json = spec.model_dump_json(by_alias=True)
    submitted = TaskState.submitted(
        task_id or str(uuid.uuid4()),
        owner,
        pipeline,
        spec_json,
        deps.clock(),
        commit=spec.target.commit,
        correlation_id=correlation.current(),
        scheduled_by=scheduled_by,
        retry_of=retry_of,
    )
    with usage.METER.working_on(submitted.task_id):
        # the item counts this request's PutItem and the PutEvents that follows it (usage.py)
        state = deps.tasks.create(submitted, prepaid=("events:PutEvents", usage.EVENTBRIDGE_ENTRIES))
        announce(state, deps)
    logger.info("task accepted", extra={"task_id": state.task_id, "pipeline": pipeline, "owner": owner})
    return state.snapshot()


def submit_once(
    request: PipelineRequest,
    owner: str,
    deps: SubmitDeps,
    *,
    task_id: str,
    scheduled_by: ScheduledBy | None = None,
    retry_of: str | None = None,
    source_uri: str | None = None,
) -> TaskSnapshot:
    """Submit a task delivered at least once (a schedule's firing, a file dropped in the inbox) under the id
    its caller derives from what was delivered: a repeated delivery finds the task recorded and only
    announces it again while it never left ACCEPTED (extract takes a repeated TaskSubmitted as the same one)."""
    recorded = deps.tasks.get(task_id)
    if recorded is None:
        try:
            return submit_task(request, owner, deps, task_id=task_id, scheduled_by=scheduled_by, retry_of=retry_of,
                               source_uri=source_uri)
        except TaskAlreadyRecorded:
            recorded = deps.tasks.get(task_id)  # a concurrent delivery recorded it first
            if recorded is None:
                raise
    if recorded.status is TaskStatus.ACCEPTED:
        announce(recorded, deps)
    logger.info("task delivered again", extra={"task_id": task_id, "pipeline": recorded.pipeline})
    return recorded.snapshot()


def announce(state: TaskState, deps: SubmitDeps) -> None:
    """Publish TaskSubmitted for a recorded task (again, for a repeated delivery: extract is idempotent)."""
    try:
        deps.publisher.publish(TASK_SUBMITTED, TaskSubmitted(taskId=state.task_id, correlationId=state.correlation_id))
    except Exception as error:
        # Without the event nothing will ever run it: say so on the task instead of leaving it ACCEPTED.
        deps.tasks.apply(state.task_id, TaskAbandoned(Phase.EXTRACT, f"could not publish TaskSubmitted: {error}"))
        raise


def checked_spec(
    request: SubmitTaskRequest | PipelineRequest | TaskSpec | Mapping[str, Any], owner: str, deps: SubmitDeps,
    *, source_uri: str | None = None,
) -> tuple[str, TaskSpec]:
    """The pipeline name and spec of a request, held to every rule a submission is (400 naming each field)."""
    pipeline, spec = _resolve_spec(request, deps, source_uri)
    spec_json = spec.model_dump_json(by_alias=True)
    stored_bytes = len(spec_json.encode())
    if stored_bytes > MAX_SPEC_BYTES:
        # Measured as stored, defaults included: the task item has to hold it (limits.py).
        raise RequestTooLarge(
            "body",
            f"the spec is {stored_bytes:,} bytes as stored (defaults filled in), over the limit of {MAX_SPEC_BYTES:,} bytes",
        )
    try:
        # A spec built in code (or by a pipeline with odd params) is held to the same rules as a body.
        TaskSpec.model_validate_json(spec_json)
    except ValidationError as error:
        raise _invalid(error) from error
    deps.source_access.check(spec, owner)
    return pipeline, spec


def _owned(task_id: str, owner: str, deps: ApiDeps) -> TaskState:
    state = deps.tasks.get(task_id)
    if state is None or state.owner != owner:
        raise TaskNotFound(task_id)
    return state


def cancel_task(task_id: str, owner: str, deps: ApiDeps) -> TaskSnapshot:
    """End the owner's running task now (CANCELLED) and publish TaskCancelled, on which the load step throws
    away what it staged and notifies; chunks still in flight are dropped by the steps that pick them up."""
    _owned(task_id, owner, deps)
    outcome = deps.tasks.apply(task_id, Cancelled())
    if outcome is None:
        raise TaskNotCancellable(task_id, _owned(task_id, owner, deps).status.value)
    snapshot = outcome.after.snapshot()
    try:
        deps.publisher.publish(
            TASK_CANCELLED,
            TaskFinished(
                taskId=task_id,
                status=snapshot.status,
                counts=snapshot.counts,
                correlationId=outcome.after.correlation_id,
            ),
        )
    except Exception:
        # The task is cancelled all the same and nothing more is done for it; what it staged stays until
        # the bucket's lifecycle rule and the runbook's clean-up take it.
        logger.exception("TaskCancelled not published", extra={"task_id": task_id})
    logger.info("task cancelled", extra={"task_id": task_id, "owner": owner})
    return snapshot


def get_task(task_id: str, owner: str, deps: ApiDeps) -> TaskSnapshot:
    return _owned(task_id, owner, deps).snapshot()


def list_tasks(
    owner: str,
    limit: int,
    next_token: str | None,
    deps: ApiDeps,
    *,
    pipeline: str | None = None,
    status: TaskStatus | None = None,
) -> TaskPage:
    check_limit(limit)
    # the filters are part of the listing: a token of one filter is refused for another
    listing = f"tasks/{owner}/{pipeline or ''}/{status.value if status else ''}"
    start = None
    if next_token is not None:
        start = deps.page_tokens.decode(listing, next_token)
        if not TasksRepository.is_owner_position(start, owner):
            raise InvalidPage("nextToken", "not a token this API returned for this listing")
    states, position = deps.tasks.list_by_owner(owner, limit, start, pipeline=pipeline, status=status)
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


def summarize_rejects(task_id: str, owner: str, deps: ApiDeps) -> RejectSummary:
    """The owner's task's rejected rows grouped by kind of reason (reject_groups.py), from its kept rejects."""
    state = _owned(task_id, owner, deps)
    kept: list[Reject] = []
    position: dict[str, Any] | None = None
    while len(kept) < MAX_SUMMARIZED_REJECTS:
        page, position = deps.chunks.iter_rejects(task_id, min(10_000, MAX_SUMMARIZED_REJECTS - len(kept)), position)
        kept += page
        if position is None:
            break
    summarized, groups = reject_groups.summarize(kept)
    return RejectSummary(
        total=state.counts.rejected, summarized=summarized, complete=position is None, groups=groups
    )


def pipeline_dashboard(name: str, table: str | None, owner: str, deps: ApiDeps) -> Dashboard:
    """The pipeline's dashboard over the owner's `table` (by default the one the pipeline loads): only the
    caller's own table is ever read, so another owner's data answers like a table never loaded."""
    pipeline = pipeline_named(name)
    table = pipeline.default_table if table is None else table
    problem = table_name_problem(table)
    if problem is not None:
        raise InvalidTask(f"table: {problem}", errors=[{"field": "table", "message": problem}])
    return deps.dashboards().dashboard(name, owner, table, pipeline.dashboard)


def create_upload(request: UploadRequest | Mapping[str, Any], owner: str, deps: ApiDeps) -> UploadTicket:
    """A presigned PUT URL for a new object under the owner's upload prefix, and the URI a spec names it by.

    Each upload gets its own random folder, so two uploads of orders.csv never overwrite each other
    and a URI that has been used in a task keeps meaning the same bytes.
    """
    if isinstance(request, Mapping):
        try:
            request = UploadRequest.model_validate(request)
        except ValidationError as error:
            raise _invalid(error) from error
    key = f"{upload_prefix(owner)}{uuid.uuid4()}/{request.fileName}"
    url = deps.chunks.presigned_put(key, UPLOAD_URL_SECONDS, request.contentType)
    headers = {"Content-Type": request.contentType} if request.contentType else {}
    logger.info("upload url issued", extra={"key": key, "owner": owner})
    return UploadTicket(
        uploadUrl=url, uri=f"s3://{deps.data_bucket}/{key}", expiresIn=UPLOAD_URL_SECONDS, headers=headers
    )
