"""REST API: submit a task, read its snapshot, list tasks, page through its rejected rows.

Thin on purpose: validation is Powertools' (422 naming each field), the work is busline_core.task_api,
and this module is the one place where errors become HTTP statuses.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, CORSConfig, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from busline_core import task_api
from busline_core.contracts import (
    RejectPage,
    SubmitTaskRequest,
    TaskPage,
    TaskSnapshot,
    TaskStatus,
    UploadRequest,
    UploadTicket,
)
from busline_core.deps import build_api_deps
from busline_core.errors import BuslineError, InvalidTask, NotSignedIn, SourceUnreadable, TaskNotFound
from busline_core.identity import owner_from_claims
from busline_core.paging import DEFAULT_REJECTS_PAGE, DEFAULT_TASKS_PAGE, MAX_PAGE_SIZE
from busline_core.settings import ApiSettings
from pydantic import BaseModel

# The HTTP status of each error; the most specific class listed wins, anything else is a 500.
HTTP_STATUS: dict[type[BuslineError], int] = {
    InvalidTask: 400,
    NotSignedIn: 401,
    TaskNotFound: 404,
    SourceUnreadable: 422,
}

logger = Logger()
tracer = Tracer()
app = APIGatewayRestResolver(enable_validation=True, cors=CORSConfig(allow_origin="*"))
app.enable_swagger(path="/swagger", title="Busline API")
deps = build_api_deps(ApiSettings())


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


@app.post("/tasks")
def submit_task(request: Annotated[SubmitTaskRequest, Body()]) -> Response[TaskAccepted]:
    snapshot = task_api.submit_task(request, current_owner(), deps)
    subscribe = json.dumps({"action": "subscribe", "taskId": snapshot.taskId})
    links = TaskLinks(self=f"/tasks/{snapshot.taskId}", progress=subscribe)
    accepted = TaskAccepted(taskId=snapshot.taskId, status=snapshot.status, links=links)
    return Response(status_code=202, content_type=content_types.APPLICATION_JSON, body=accepted)


@app.get("/tasks/<taskId>")
def get_task(taskId: str) -> TaskSnapshot:
    return task_api.get_task(taskId, current_owner(), deps)


@app.get("/tasks")
def list_tasks(
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_TASKS_PAGE,
    next_token: Annotated[str | None, Query(alias="nextToken")] = None,
) -> TaskPage:
    return task_api.list_tasks(current_owner(), limit, next_token, deps)


@app.get("/tasks/<taskId>/rejects")
def list_rejects(
    taskId: str,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_REJECTS_PAGE,
    next_token: Annotated[str | None, Query(alias="nextToken")] = None,
) -> RejectPage:
    return task_api.list_rejects(taskId, current_owner(), limit, next_token, deps)


@app.post("/uploads")
def create_upload(request: Annotated[UploadRequest, Body()]) -> Response[UploadTicket]:
    ticket = task_api.create_upload(request, current_owner(), deps)
    return Response(status_code=201, content_type=content_types.APPLICATION_JSON, body=ticket)


@app.exception_handler(BuslineError)
def busline_error(error: BuslineError) -> Response:
    status = http_status(error)
    body: dict[str, Any] = {"message": error.message}
    if isinstance(error, InvalidTask):
        body["errors"] = error.errors
    if status >= 500:
        logger.exception("request failed")
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


@app.exception_handler(RequestValidationError)
def invalid_request(error: RequestValidationError) -> Response:
    refused = task_api.refused_target(error.errors())
    if refused is not None:
        return busline_error(refused)
    # Powertools' default 422 keeps only loc and type; the reason ("key column 'x' is not among the
    # columns") is what the user needs to fix the request.
    detail = [{"loc": list(e.get("loc", ())), "type": e.get("type"), "msg": e.get("msg")} for e in error.errors()]
    return Response(status_code=422, content_type=content_types.APPLICATION_JSON, body={"statusCode": 422, "detail": detail})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
