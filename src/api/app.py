"""REST API: submit a task, read its snapshot, list tasks, page through its rejected rows, pipeline dashboards,
schedules.

Thin on purpose: validation is Powertools' (422 naming each field), bodies are read as strict JSON text by
busline_core.request_body, the work is busline_core.task_api, and this module is the one place where errors
become HTTP statuses. Every status an operation can answer is declared in the OpenAPI document (/swagger)
with its body, including the ones API Gateway answers before the function runs.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, CORSConfig, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import ServiceError
from aws_lambda_powertools.event_handler.middlewares.openapi_validation import (
    OpenAPIRequestValidationMiddleware,
)
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.event_handler.types import EventHandlerInstance
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from busline_core import correlation, pipelines, request_body, schedules, task_api
from busline_core.contracts import (
    RejectPage,
    RejectSummary,
    Schedule,
    ScheduleList,
    ScheduleRequest,
    SubmitTaskRequest,
    TaskPage,
    TaskSnapshot,
    TaskStatus,
    UploadRequest,
    UploadTicket,
)
from busline_core.dashboards import Dashboard
from busline_core.deps import build_api_deps
from busline_core.errors import (
    BuslineError,
    InvalidTask,
    ListingUnavailable,
    NotJsonText,
    NotSignedIn,
    PipelineNotFound,
    RequestTooLarge,
    ScheduleNotFound,
    SourceUnreadable,
    TaskNotCancellable,
    TaskNotFound,
    WarehouseUnavailable,
)
from busline_core.identity import owner_from_claims
from busline_core.limits import (
    MAX_PAGE_SIZE,
    MAX_PIPELINE_NAME_LENGTH,
    MAX_SCHEDULE_ID_LENGTH,
    MAX_TASK_ID_LENGTH,
)
from busline_core.paging import DEFAULT_REJECTS_PAGE, DEFAULT_TASKS_PAGE
from busline_core.pipelines import PipelineList
from busline_core.settings import ApiSettings
from pydantic import BaseModel

# The HTTP status of each error; the most specific class listed wins, anything else is a 500.
HTTP_STATUS: dict[type[BuslineError], int] = {
    InvalidTask: 400,
    NotSignedIn: 401,
    TaskNotFound: 404,
    PipelineNotFound: 404,
    ScheduleNotFound: 404,
    TaskNotCancellable: 409,
    RequestTooLarge: 413,
    SourceUnreadable: 422,
    WarehouseUnavailable: 503,
    ListingUnavailable: 503,
}

logger = Logger()
tracer = Tracer()


class StrictJsonBodies(OpenAPIRequestValidationMiddleware):
    """Powertools' request validation with every body read by request_body.py instead of json.loads.

    Only JSON is taken: Powertools would parse a form or multipart body into something no model means
    (and a multipart type without a boundary into an uncaught ValueError). A body that is not JSON text
    is a 422 naming the body, like any other malformed body; one over the byte limit a 413.
    """

    def _get_body(self, app: EventHandlerInstance) -> Any:
        event = app.current_event
        media_type = event.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type not in ("", content_types.APPLICATION_JSON):
            problem = f"{media_type} is not {content_types.APPLICATION_JSON}"
            raise RequestUnsupportedContentType(
                problem,
                errors=[{"type": "unsupported_content_type", "loc": ("header", "Content-Type"), "msg": problem}],
            )
        try:
            return request_body.parse(event.body, base64_encoded=bool(event.is_base64_encoded))
        except NotJsonText as error:
            location = ("body",) if error.position is None else ("body", error.position)
            raise RequestValidationError(
                [{"type": "json_invalid", "loc": location, "msg": f"not JSON text: {error.reason}"}]
            ) from None


settings = ApiSettings()
app = APIGatewayRestResolver(enable_validation=True, cors=CORSConfig(allow_origin=settings.web_origin))
# Powertools has no public hook for reading the body; the middleware it builds is replaced before any route runs.
app._request_validation_middleware = StrictJsonBodies()
app.enable_swagger(path="/swagger", title="Busline API")
deps = build_api_deps(settings)


# --- the bodies of the answers that are not a resource (declared in the OpenAPI document) ----------


class Message(BaseModel):
    message: str


class FieldError(BaseModel):
    field: str  # dotted path into the request, e.g. source.uri, joins.0.uri, nextToken, body
    message: str


class Refusal(BaseModel):
    message: str
    errors: list[FieldError] = []  # absent when API Gateway answers (413 over its 10 MB)


class ValidationIssue(BaseModel):
    loc: list[str | int]  # where: ["body", "columns", 0, "type"], ["query", "limit"], ["body", 17] (offset)
    type: str
    msg: str | None = None


class ValidationFailure(BaseModel):
    statusCode: int
    detail: list[ValidationIssue]


class InternalError(BaseModel):
    message: str
    requestId: str  # quote it: the log line of the failure carries it


_FAILURES: dict[int, tuple[str, type[BaseModel]]] = {
    400: ("Well-formed but not acceptable (a pipeline, a parameter, a source, a target, a page token): "
          "each field at fault in errors", Refusal),
    401: ("No valid access token (API Gateway answers before the function runs)", Message),
    403: ("Refused by API Gateway before the function runs", Message),
    404: ("No such task or schedule (or not the caller's: the two answer alike), or no such pipeline", Message),
    409: ("The task is past cancelling: finished, or committing its rows", Message),
    413: ("The body or the spec is over its byte limit (README, Limits), or over API Gateway's 10 MB", Refusal),
    415: ("The body is not sent as application/json", ValidationFailure),
    422: ("The request does not match its schema or a limit, or the body is not JSON text: each location "
          "in detail", ValidationFailure),
    429: ("Throttled by API Gateway", Message),
    500: ("An unexpected error, told without internals; requestId finds its log line", InternalError),
    503: ("Something the request reads cannot be reached right now (the warehouse; the task list while an upgrade "
          "rebuilds its index): try again", Message),
}
# Answered for every operation: by API Gateway before the function runs, or by the catch-all.
_ALWAYS = (401, 403, 429, 500)


def responses(status: int, model: type[BaseModel], description: str, *failures: int) -> dict[int, OpenAPIResponse]:
    """The OpenAPI responses of an operation: its success and every failure it can answer."""
    declared: dict[int, OpenAPIResponse] = {
        status: {"description": description, "content": {content_types.APPLICATION_JSON: {"model": model}}}
    }
    for failure in sorted({*failures, *_ALWAYS}):
        text, body = _FAILURES[failure]
        declared[failure] = {"description": text, "content": {content_types.APPLICATION_JSON: {"model": body}}}
    return declared


TaskId = Annotated[str, Path(max_length=MAX_TASK_ID_LENGTH)]


def current_owner() -> str:
    """The verified `sub` the Cognito authorizer put on the request; never a default."""
    return owner_from_claims(app.current_event.request_context.authorizer.claims)


def http_status(error: BuslineError) -> int:
    for cls in type(error).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500


class TaskLinks(BaseModel):
    self: str  # relative to the API base URL
    progress: str  # the message to send on the WebSocket API for live progress


class TaskAccepted(BaseModel):
    taskId: str
    status: TaskStatus
    links: TaskLinks


@app.post(
    "/tasks",
    responses=responses(202, TaskAccepted, "Accepted: recorded and announced; follow it at links", 400, 413, 415, 422),
)
def submit_task(request: Annotated[SubmitTaskRequest, Body()]) -> Response[TaskAccepted]:
    correlation.bind(correlation.from_request(app.current_event.headers, _request_id()))
    snapshot = task_api.submit_task(request, current_owner(), deps)
    subscribe = json.dumps({"action": "subscribe", "taskId": snapshot.taskId})
    links = TaskLinks(self=f"/tasks/{snapshot.taskId}", progress=subscribe)
    accepted = TaskAccepted(taskId=snapshot.taskId, status=snapshot.status, links=links)
    return Response(status_code=202, content_type=content_types.APPLICATION_JSON, body=accepted)


@app.get("/tasks/<taskId>", responses=responses(200, TaskSnapshot, "The task's snapshot", 404, 422))
def get_task(taskId: TaskId) -> TaskSnapshot:
    return task_api.get_task(taskId, current_owner(), deps)


@app.post(
    "/tasks/<taskId>/cancel",
    responses=responses(202, TaskSnapshot, "Cancelled: it ends now; what it staged is thrown away", 404, 409, 422),
)
def cancel_task(taskId: TaskId) -> Response[TaskSnapshot]:
    snapshot = task_api.cancel_task(taskId, current_owner(), deps)
    return Response(status_code=202, content_type=content_types.APPLICATION_JSON, body=snapshot)


@app.get("/tasks", responses=responses(200, TaskPage, "The caller's tasks, newest first", 400, 422, 503))
def list_tasks(
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_TASKS_PAGE,
    next_token: Annotated[str | None, Query(alias="nextToken")] = None,
    pipeline: Annotated[str | None, Query(min_length=1, max_length=MAX_PIPELINE_NAME_LENGTH)] = None,
    status: Annotated[TaskStatus | None, Query()] = None,
) -> TaskPage:
    return task_api.list_tasks(current_owner(), limit, next_token, deps, pipeline=pipeline, status=status)


@app.get("/tasks/<taskId>/rejects", responses=responses(200, RejectPage, "The task's rejected rows", 400, 404, 422))
def list_rejects(
    taskId: TaskId,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_REJECTS_PAGE,
    next_token: Annotated[str | None, Query(alias="nextToken")] = None,
) -> RejectPage:
    return task_api.list_rejects(taskId, current_owner(), limit, next_token, deps)


@app.get(
    "/tasks/<taskId>/rejects/summary",
    responses=responses(200, RejectSummary, "The task's rejected rows grouped by reason, most rows first", 404, 422),
)
def summarize_rejects(taskId: TaskId) -> RejectSummary:
    return task_api.summarize_rejects(taskId, current_owner(), deps)


@app.get("/pipelines", responses=responses(200, PipelineList, "The pipelines a task may name, with their params", 422))
def list_pipelines() -> PipelineList:
    current_owner()  # signed in, like every route, though the list is the same for everyone
    return pipelines.listed()


@app.get(
    "/pipelines/<name>/dashboard",
    responses=responses(200, Dashboard, "The pipeline's charts over the caller's table", 400, 404, 422, 503),
)
def pipeline_dashboard(
    name: Annotated[str, Path(min_length=1, max_length=MAX_PIPELINE_NAME_LENGTH)],
    table: Annotated[str | None, Query(min_length=1, max_length=255)] = None,
) -> Dashboard:
    return task_api.pipeline_dashboard(name, table, current_owner(), deps)


ScheduleId = Annotated[str, Path(min_length=1, max_length=MAX_SCHEDULE_ID_LENGTH)]


@app.post(
    "/schedules",
    responses=responses(201, Schedule, "Created: the pipeline runs as the caller at each firing", 400, 413, 415, 422),
)
def create_schedule(request: Annotated[ScheduleRequest, Body()]) -> Response[Schedule]:
    created = schedules.create_schedule(request, current_owner(), deps)
    return Response(status_code=201, content_type=content_types.APPLICATION_JSON, body=created)


@app.get("/schedules", responses=responses(200, ScheduleList, "The caller's schedules with their next runs", 422))
def list_schedules() -> ScheduleList:
    return schedules.list_schedules(current_owner(), deps)


@app.get("/schedules/<scheduleId>", responses=responses(200, Schedule, "The schedule and its next runs", 404, 422))
def get_schedule(scheduleId: ScheduleId) -> Schedule:
    return schedules.get_schedule(scheduleId, current_owner(), deps)


@app.delete(
    "/schedules/<scheduleId>",
    responses=responses(204, Message, "Deleted: no new run starts; runs already started carry on", 404, 422),
)
def delete_schedule(scheduleId: ScheduleId) -> Response[None]:
    schedules.delete_schedule(scheduleId, current_owner(), deps)
    return Response(status_code=204, body=None)


@app.post("/uploads", responses=responses(201, UploadTicket, "PUT the file to uploadUrl, then name uri", 413, 415, 422))
def create_upload(request: Annotated[UploadRequest, Body()]) -> Response[UploadTicket]:
    ticket = task_api.create_upload(request, current_owner(), deps)
    return Response(status_code=201, content_type=content_types.APPLICATION_JSON, body=ticket)


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


@app.exception_handler(BuslineError)
def busline_error(error: BuslineError) -> Response:
    status = http_status(error)
    if status == 503:
        # Its message may name a host or a driver's words: the caller learns only that it may try again.
        request_id = _request_id()
        logger.warning("request refused for now", exc_info=error, extra={"requestId": request_id})
        return _json(503, {"message": _FAILURES[503][0], "requestId": request_id})
    if status >= 500:
        return internal_error(error)
    body: dict[str, Any] = {"message": error.message}
    if isinstance(error, InvalidTask):
        body["errors"] = error.errors
    return _json(status, body)


def _validation_failure(status: int, errors: Any) -> Response:
    # Powertools' default keeps only loc and type; the reason ("key column 'x' is not among the
    # columns", "nested deeper than the limit of 16 levels") is what the user needs to fix the request.
    detail = [{"loc": list(e.get("loc", ())), "type": e.get("type"), "msg": e.get("msg")} for e in errors]
    return _json(status, {"statusCode": status, "detail": detail})


@app.exception_handler(RequestValidationError)
def invalid_request(error: RequestValidationError) -> Response:
    if any(tuple(e.get("loc", ()))[:1] == ("response",) for e in error.errors()):
        # Powertools reports an answer that does not match its own model as a request error: it is ours.
        return internal_error(error)
    refused = task_api.refused_target(error.errors())
    if refused is not None:
        return busline_error(refused)
    return _validation_failure(422, error.errors())


@app.exception_handler(RequestUnsupportedContentType)
def unsupported_media_type(error: RequestUnsupportedContentType) -> Response:
    return _validation_failure(415, error.errors())


@app.exception_handler(ServiceError)
def service_error(error: ServiceError) -> Response:
    # Powertools' own answers (404 for a path no route serves); the catch-all below would take them otherwise.
    return _json(int(error.status_code), {"message": error.msg})


def _request_id() -> str:
    context = app.current_event.get("requestContext") or {}
    return str(context.get("requestId") or getattr(app.lambda_context, "aws_request_id", "") or "unknown")


@app.exception_handler(Exception)
def internal_error(error: Exception) -> Response:
    """Anything unexpected: a 500 that says nothing of the internals, with the id to find its log line."""
    request_id = _request_id()
    logger.error("request failed", exc_info=error, extra={"requestId": request_id})
    return _json(500, {"message": "internal error", "requestId": request_id})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
