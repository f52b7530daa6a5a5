"""ConnectionsFunction: the WebSocket routes ($connect, $disconnect, subscribe, $default)."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext
from busline_core import progress
from busline_core.deps import build_connections_deps
from busline_core.settings import ConnectionsSettings

logger = Logger()
tracer = Tracer()
deps = build_connections_deps(ConnectionsSettings())


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = event["requestContext"]
    route, connection_id = request["routeKey"], request["connectionId"]
    # the $connect authorizer's principal, handed by API Gateway to every route of the connection
    owner = (request.get("authorizer") or {}).get("principalId")
    logger.append_keys(route=route, connection_id=connection_id, owner=owner)
    if route == "$disconnect":
        progress.disconnect(connection_id, deps)
    elif not isinstance(owner, str) or not owner:
        logger.warning("no authorizer principal on the connection: refused")
        return {"statusCode": 401}
    elif route == "$connect":
        progress.connect(connection_id, owner, deps)
    elif route == "subscribe" and isinstance(task_id := _message(event).get("taskId"), str) and task_id:
        progress.subscribe(connection_id, owner, task_id, deps)
    else:
        progress.usage(connection_id, deps)
    return {"statusCode": 200}


def _message(event: dict[str, Any]) -> dict[str, Any]:
    try:
        message = json.loads(event.get("body") or "{}")
    except json.JSONDecodeError:
        return {}
    return message if isinstance(message, dict) else {}
