"""Progress: tasks-table stream -> WebSocket pushes, the WebSocket routes, and the stall watchdog.

Three handlers share this folder (and one warm container each): stream_handler (ProgressFunction),
ws_handler (ConnectionsFunction), watchdog_handler (WatchdogFunction). The work is in busline_core.steps.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.data_classes import DynamoDBStreamEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext
from busline_core import steps
from busline_core.settings import ProgressSettings
from busline_core.wiring import build_deps

USAGE = {"error": 'unknown action; send {"action": "subscribe", "taskId": "<task id>"}'}

logger = Logger()
tracer = Tracer()
deps = build_deps(ProgressSettings())


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_source(data_class=DynamoDBStreamEvent)
def stream_handler(event: DynamoDBStreamEvent, context: LambdaContext) -> None:
    # REMOVE records carry no new image (and the FilterCriteria already drops them on AWS)
    images = [record.dynamodb.new_image for record in event.records if record.dynamodb and record.dynamodb.new_image]
    sent = steps.push_progress(images, deps)
    logger.info("progress pushed", extra={"images": len(images), "messages": sent})


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def ws_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = event["requestContext"]
    route, connection_id = request["routeKey"], request["connectionId"]
    logger.append_keys(route=route, connection_id=connection_id)
    if route == "$connect":
        steps.connect(connection_id, deps)
    elif route == "$disconnect":
        steps.disconnect(connection_id, deps)
    elif route == "subscribe" and isinstance(task_id := _message(event).get("taskId"), str) and task_id:
        steps.subscribe(connection_id, task_id, deps)
    elif deps.pusher is not None:
        # no route responses are configured, so the usage hint travels like every other message
        deps.pusher.push(connection_id, USAGE)
    return {"statusCode": 200}


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def watchdog_handler(event: dict[str, Any], context: LambdaContext) -> None:
    failed = steps.watchdog(deps, datetime.now(UTC))
    logger.info("watchdog ran", extra={"failed": failed})


def _message(event: dict[str, Any]) -> dict[str, Any]:
    try:
        message = json.loads(event.get("body") or "{}")
    except json.JSONDecodeError:
        return {}
    return message if isinstance(message, dict) else {}
