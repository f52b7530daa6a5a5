"""AWS::ApiGatewayV2 (WebSocket APIs only): integrations, routes, a $connect authorizer and the stage
become one WsApi for the WebSocket gateway, assembled once every piece has been seen."""

from __future__ import annotations

from typing import Any

from busline.localcloud.model import ProvisionedResource, ProvisionError, WsApi
from busline.localcloud.provision.apigateway import LAMBDA_INVOCATION_URI
from busline.localcloud.provision.context import ProvisionContext, provisioned


def api(ctx: ProvisionContext, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
    if props.get("ProtocolType") != "WEBSOCKET":
        raise ProvisionError(
            f"{logical_id}: ProtocolType {props.get('ProtocolType')} is not supported by the local cloud "
            "(WEBSOCKET only; use a REST API for HTTP)"
        )
    for quick_create in ("Body", "BodyS3Location", "Target", "RouteKey"):
        if quick_create in props:
            raise ProvisionError(f"{logical_id}: {quick_create} on AWS::ApiGatewayV2::Api is not supported by the local cloud")
    api_id = ctx.api_id(logical_id)
    endpoint = (
        ctx.endpoints.websocket if ctx.endpoints is not None else f"wss://{api_id}.execute-api.{ctx.region}.amazonaws.com"
    )
    return provisioned(logical_id, resource, api_id, ApiId=api_id, ApiEndpoint=endpoint)


def integration(ctx: ProvisionContext, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
    ctx.api_by_id(str(props.get("ApiId")), "AWS::ApiGatewayV2::Api", logical_id)
    uri = str(props.get("IntegrationUri", ""))
    match = LAMBDA_INVOCATION_URI.search(uri)
    if props.get("IntegrationType") != "AWS_PROXY" or not (match or ":function:" in uri):
        raise ProvisionError(f"{logical_id}: only AWS_PROXY integrations of a Lambda function are supported locally")
    integration_id = ctx.api_id(logical_id)[:7]
    ctx.ws_integrations[integration_id] = ctx.function_by_arn(match.group("arn") if match else uri, logical_id)
    return provisioned(logical_id, resource, integration_id, IntegrationId=integration_id)


def route(ctx: ProvisionContext, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
    api = ctx.api_by_id(str(props.get("ApiId")), "AWS::ApiGatewayV2::Api", logical_id)
    ctx.ws_routes.append((api.logical_id, {**props, "LogicalId": logical_id}))
    route_id = ctx.api_id(logical_id)[:7]
    return provisioned(logical_id, resource, route_id, RouteId=route_id)


def authorizer(ctx: ProvisionContext, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
    ctx.api_by_id(str(props.get("ApiId")), "AWS::ApiGatewayV2::Api", logical_id)
    if props.get("AuthorizerType") != "REQUEST":
        raise ProvisionError(f"{logical_id}: AuthorizerType {props.get('AuthorizerType')} is not supported locally (REQUEST only)")
    match = LAMBDA_INVOCATION_URI.search(str(props.get("AuthorizerUri", "")))
    if match is None:
        raise ProvisionError(f"{logical_id}: AuthorizerUri must name a Lambda function")
    authorizer_id = ctx.api_id(logical_id)[:6]
    sources = props.get("IdentitySource", [])
    ctx.ws_authorizers[authorizer_id] = (
        ctx.function_by_arn(match.group("arn"), logical_id),
        [sources] if isinstance(sources, str) else list(sources),
    )
    return provisioned(logical_id, resource, authorizer_id, AuthorizerId=authorizer_id)


def stage(ctx: ProvisionContext, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
    api = ctx.api_by_id(str(props.get("ApiId")), "AWS::ApiGatewayV2::Api", logical_id)
    stage = str(props.get("StageName", "$default"))
    ctx.ws_stages[api.logical_id] = stage
    return provisioned(logical_id, resource, stage)


def finish(ctx: ProvisionContext) -> None:
    templates = ctx.cfn.get("Resources") or {}
    for logical_id, resource in ctx.model.resources.items():
        if resource.type != "AWS::ApiGatewayV2::Api":
            continue
        props = ctx.resolver.resolve(templates[logical_id].get("Properties") or {}, logical_id)
        api = WsApi(
            logical_id=logical_id,
            api_id=resource.physical_id,
            name=str(props.get("Name", logical_id)),
            route_selection_expression=str(props.get("RouteSelectionExpression", "$request.body.action")),
            stage=ctx.ws_stages.get(logical_id, "$default"),
            routes={},
        )
        for api_logical_id, route in ctx.ws_routes:
            if api_logical_id != logical_id:
                continue
            target = str(route.get("Target", ""))
            integration_id = target.removeprefix("integrations/")
            if integration_id not in ctx.ws_integrations:
                raise ProvisionError(f"{route['LogicalId']}: Target {target!r} is not an integration of this template")
            api.routes[str(route["RouteKey"])] = ctx.ws_integrations[integration_id]
            authorizer_id = route.get("AuthorizerId")
            if authorizer_id:
                if route["RouteKey"] != "$connect":
                    raise ProvisionError(f"{route['LogicalId']}: authorizers are only supported on $connect")
                if authorizer_id not in ctx.ws_authorizers:
                    raise ProvisionError(f"{route['LogicalId']}: AuthorizerId {authorizer_id!r} is not an authorizer of this template")
                api.connect_authorizer, api.authorizer_identity_sources = ctx.ws_authorizers[authorizer_id]
        ctx.model.ws_apis.append(api)
