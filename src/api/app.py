"""REST API: submit a task, read its snapshot, list tasks, page through its rejected rows.

Thin on purpose: validation is Powertools' (422 naming each field), the work is in busline_core.steps.
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
from busline_core import steps
from busline_core.contracts import RejectPage, SubmitTaskRequest, TaskPage, TaskSnapshot, TaskStatus
from busline_core.errors import BuslineError, InvalidTask
from busline_core.settings import ApiSettings
from busline_core.wiring import build_deps
from pydantic import BaseModel

LOCAL_OWNER = "local-user"  # no authorizer in front of the API (local cloud, or an open dev stage)

logger = Logger()
tracer = Tracer()
app = APIGatewayRestResolver(enable_validation=True, cors=CORSConfig(allow_origin="*"))
app.enable_swagger(path="/swagger", title="Busline API")
deps = build_deps(ApiSettings())


def current_owner() -> str:
    return app.current_event.request_context.authorizer.principal_id or LOCAL_OWNER


class TaskLinks(BaseModel):
    self: str  # relative to the API base URL
    progress: str  # the message to send on the WebSocket API for live progress


class TaskAccepted(BaseModel):
    taskId: str
    status: TaskStatus
    links: TaskLinks


@app.post("/tasks")
def submit_task(request: Annotated[SubmitTaskRequest, Body()]) -> Response[TaskAccepted]:
    task_id = (snapshot := steps.submit_task(request, current_owner(), deps)).taskId
    subscribe = json.dumps({"action": "subscribe", "taskId": task_id})
    accepted = TaskAccepted(taskId=task_id, status=snapshot.status, links=TaskLinks(self=f"/tasks/{task_id}", progress=subscribe))
    return Response(status_code=202, content_type=content_types.APPLICATION_JSON, body=accepted)


@app.get("/tasks/<taskId>")
def get_task(taskId: str) -> TaskSnapshot:
    return steps.get_task(taskId, deps, owner=current_owner())


@app.get("/tasks")
def list_tasks(
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    next_token: Annotated[str | None, Query(alias="nextToken")] = None,
) -> TaskPage:
    return steps.list_tasks(current_owner(), limit, next_token, deps)


@app.get("/tasks/<taskId>/rejects")
def list_rejects(
    taskId: str,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    next_token: Annotated[str | None, Query(alias="nextToken")] = None,
) -> RejectPage:
    return steps.list_rejects(taskId, limit, next_token, deps, owner=current_owner())


@app.exception_handler(BuslineError)
def busline_error(error: BuslineError) -> Response:
    body: dict[str, Any] = {"message": error.message}
    if isinstance(error, InvalidTask):
        body["errors"] = error.errors
    if error.status_code >= 500:
        logger.exception("request failed")
    return Response(status_code=error.status_code, content_type=content_types.APPLICATION_JSON, body=body)


@app.exception_handler(RequestValidationError)
def invalid_request(error: RequestValidationError) -> Response:
    # Powertools' default 422 keeps only loc and type; the reason ("key column 'x' is not among the
    # columns") is what the user needs to fix the request.
    detail = [{"loc": list(e.get("loc", ())), "type": e.get("type"), "msg": e.get("msg")} for e in error.errors()]
    return Response(status_code=422, content_type=content_types.APPLICATION_JSON, body={"statusCode": 422, "detail": detail})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
