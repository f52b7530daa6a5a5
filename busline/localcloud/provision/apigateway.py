"""AWS::ApiGateway::RestApi and Stage: the inline OpenAPI body becomes RestRoutes for the REST gateway."""

from __future__ import annotations

import re
from typing import Any

from busline.localcloud.model import ProvisionedResource, ProvisionError, RestRoute
from busline.localcloud.provision.context import ProvisionContext, provisioned

_HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}
LAMBDA_INVOCATION_URI = re.compile(r"functions/(?P<arn>arn:[^/]+:lambda:[^/]+)/invocations")


def rest_api(ctx: ProvisionContext, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
    body = props.get("Body")
    if not isinstance(body, dict):
        raise ProvisionError(
            f"{logical_id}: the local cloud needs the API definition inline (SAM's Body); "
            "BodyS3Location and ApiGateway::Resource/Method resources are not supported"
        )
    api_id = ctx.api_id(logical_id)
    for path, operations in (body.get("paths") or {}).items():
        for method_key, operation in (operations or {}).items():
            if method_key == "x-amazon-apigateway-any-method":
                method = "ANY"
            elif method_key.lower() in _HTTP_METHODS:
                method = method_key.upper()
            else:
                continue  # path-level "parameters" and other extensions
            integration = (operation or {}).get("x-amazon-apigateway-integration") or {}
            if integration.get("type") == "mock":
                continue  # SAM's CORS preflight; the gateway answers OPTIONS itself
            match = LAMBDA_INVOCATION_URI.search(str(integration.get("uri", "")))
            if integration.get("type") != "aws_proxy" or match is None:
                raise ProvisionError(
                    f"{logical_id}: {method} {path}: only Lambda proxy integrations are supported by the local cloud"
                )
            ctx.model.rest_routes.append(
                RestRoute(
                    function=ctx.function_by_arn(match.group("arn"), f"{logical_id}: {method} {path}"),
                    method=method,
                    path=path,
                    api_logical_id=logical_id,
                )
            )
    return provisioned(logical_id, resource, api_id, RootResourceId=api_id[::-1])


def stage(ctx: ProvisionContext, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
    api = ctx.api_by_id(str(props.get("RestApiId")), "AWS::ApiGateway::RestApi", logical_id)
    stage = str(props.get("StageName", "Prod"))
    ctx.rest_stages[api.logical_id] = stage
    return provisioned(logical_id, resource, stage)


def finish(ctx: ProvisionContext) -> None:
    for route in ctx.model.rest_routes:
        route.stage = ctx.rest_stages.get(route.api_logical_id, route.stage)
