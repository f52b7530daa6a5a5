"""AWS::ApiGatewayV2: WebSocket and HTTP APIs, assembled once every piece has been seen.

A WebSocket API's integrations, routes, $connect authorizer and stage become one WsApi for the WebSocket
gateway. An HTTP API (ProtocolType HTTP, or SAM's AWS::Serverless::HttpApi, which is an OpenAPI `Body`
with the routes, JWT authorizers and CORS) becomes one HttpApi for the HTTP API gateway; its routes may
also come as Route/Integration/Authorizer resources.
"""

from __future__ import annotations

from typing import Any

from busline.localcloud.model import (
    HttpApi,
    HttpAuthorizer,
    HttpCors,
    HttpRoute,
    ProvisionedResource,
    ProvisionError,
    WsApi,
)
from busline.localcloud.provision.apigateway import LAMBDA_INVOCATION_URI, openapi_operations
from busline.localcloud.provision.context import ProvisionContext, provisioned, truthy

_API = "AWS::ApiGatewayV2::Api"
_DEFAULT_ROUTE = "$default"
_PAYLOAD_FORMAT = "2.0"  # the only one the HTTP API gateway builds events for


def api(ctx: ProvisionContext, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
    api_id = ctx.api_id(logical_id)
    if _is_http_api(props):
        return _http_api(ctx, logical_id, resource, props, api_id)
    if props.get("ProtocolType") != "WEBSOCKET":
        raise ProvisionError(
            f"{logical_id}: ProtocolType {props.get('ProtocolType')} is not supported by the local cloud "
            "(WEBSOCKET or HTTP)"
        )
    for quick_create in ("Body", "BodyS3Location", "Target", "RouteKey"):
        if quick_create in props:
            raise ProvisionError(f"{logical_id}: {quick_create} on a WebSocket API is not supported by the local cloud")
    # Locally `{websocket}/{stage}` reaches the API of that stage (gateway_ws), as AWS's ApiEndpoint/{stage} does.
    endpoint = (ctx.endpoints.websocket if ctx.endpoints is not None
                else f"wss://{api_id}.execute-api.{ctx.region}.amazonaws.com")
    return provisioned(logical_id, resource, api_id, ApiId=api_id, ApiEndpoint=endpoint)


def _is_http_api(props: dict[str, Any]) -> bool:
    # An OpenAPI import (SAM's HttpApi) leaves ProtocolType out: only HTTP APIs are imported that way.
    protocol = props.get("ProtocolType")
    return protocol == "HTTP" or (protocol is None and "Body" in props)


def _http_api(ctx: ProvisionContext, logical_id: str, resource: dict[str, Any], props: dict[str, Any],
              api_id: str) -> ProvisionedResource:
    if "BodyS3Location" in props:
        raise ProvisionError(f"{logical_id}: the local cloud needs the HTTP API's definition inline (Body)")
    body = props.get("Body") or {}
    if not isinstance(body, dict):
        raise ProvisionError(f"{logical_id}: Body must be an OpenAPI document")
    http_api = HttpApi(logical_id=logical_id, api_id=api_id,
                       name=str(props.get("Name") or (body.get("info") or {}).get("title") or logical_id))
    http_api.routes.extend(_body_routes(ctx, logical_id, body))
    cors = props.get("CorsConfiguration") or body.get("x-amazon-apigateway-cors")
    if isinstance(cors, dict):
        http_api.cors = _cors(cors)
    if "Target" in props:  # quick create: one route (RouteKey, else $default) to one function
        route_key = str(props.get("RouteKey") or _DEFAULT_ROUTE)
        http_api.routes.append(HttpRoute(route_key, _lambda_function(ctx, "AWS_PROXY", props["Target"], logical_id)))
    ctx.model.http_apis.append(http_api)
    endpoint = (HttpApi.local_endpoint(ctx.endpoints.rest, api_id) if ctx.endpoints is not None
                else f"https://{api_id}.execute-api.{ctx.region}.amazonaws.com")
    return provisioned(logical_id, resource, api_id, ApiId=api_id, ApiEndpoint=endpoint)


def _body_routes(ctx: ProvisionContext, logical_id: str, body: dict[str, Any]) -> list[HttpRoute]:
    schemes = (body.get("components") or {}).get("securitySchemes") or {}
    default_security = body.get("security")
    routes = []
    for path, method, operation in openapi_operations(body):
        context = f"{logical_id}: {method} {path}"
        integration = operation.get("x-amazon-apigateway-integration") or {}
        function = _lambda_function(ctx, integration.get("type"), integration.get("uri"), context)
        _require_payload_format(integration.get("payloadFormatVersion"), context)
        authorizer, scopes = _security(operation.get("security", default_security), schemes, context)
        route_key = _DEFAULT_ROUTE if path == _DEFAULT_ROUTE else f"{method} {path}"
        routes.append(HttpRoute(route_key, function, authorizer, scopes))
    return routes


def _security(requirements: Any, schemes: dict[str, Any], context: str) -> tuple[HttpAuthorizer | None, list[str]]:
    """The route's JWT authorizer and scopes; SAM writes `NONE` for a route without authorization."""
    for requirement in requirements or []:
        for name, scopes in (requirement or {}).items():
            if name == "NONE":
                return None, []
            settings = ((schemes.get(name) or {}).get("x-amazon-apigateway-authorizer")) or {}
            if str(settings.get("type", "")).lower() != "jwt":
                raise ProvisionError(
                    f"{context}: authorizer {name} is not supported by the local cloud (JWT authorizers only)")
            configuration = settings.get("jwtConfiguration") or {}
            authorizer = _jwt_authorizer(name, configuration, settings.get("identitySource"), context)
            return authorizer, [str(scope) for scope in scopes or []]
    return None, []


def _jwt_authorizer(name: str, configuration: dict[str, Any], identity_source: Any, context: str) -> HttpAuthorizer:
    # SAM passes `issuer`/`audience` through as written, in either case.
    settings = {str(key).lower(): value for key, value in configuration.items()}
    issuer = settings.get("issuer")
    if not issuer:
        raise ProvisionError(f"{context}: JWT authorizer {name} has no issuer")
    audience = settings.get("audience") or []
    sources = identity_source if isinstance(identity_source, list) else str(identity_source or "").split(",")
    return HttpAuthorizer(
        name=name, issuer=str(issuer),
        audiences=[str(item) for item in (audience if isinstance(audience, list) else [audience])],
        identity_sources=[str(source).strip() for source in sources if str(source).strip()]
        or ["$request.header.Authorization"],
    )  # fmt: skip


def _cors(settings: dict[str, Any]) -> HttpCors:
    """x-amazon-apigateway-cors (allowOrigins, …) or CorsConfiguration (AllowOrigins, …)."""
    values = {str(key).lower(): value for key, value in settings.items()}

    def texts(name: str) -> list[str]:
        return [str(item) for item in values.get(name) or []]

    max_age = values.get("maxage")
    return HttpCors(
        allow_origins=texts("alloworigins"), allow_methods=texts("allowmethods"),
        allow_headers=texts("allowheaders"), expose_headers=texts("exposeheaders"),
        max_age_s=int(max_age) if max_age is not None else None,
        allow_credentials=truthy(values.get("allowcredentials")),
    )  # fmt: skip


def _lambda_function(ctx: ProvisionContext, integration_type: Any, uri: Any, context: str) -> str:
    """The logical id of the function an AWS_PROXY integration's URI (or bare function ARN) invokes."""
    text = str(uri or "")
    match = LAMBDA_INVOCATION_URI.search(text)
    if str(integration_type or "").upper() != "AWS_PROXY" or not (match or ":function:" in text):
        raise ProvisionError(f"{context}: only AWS_PROXY integrations of a Lambda function are supported locally")
    return ctx.function_by_arn(match.group("arn") if match else text, context)


def _require_payload_format(version: Any, context: str) -> None:
    if str(version) != _PAYLOAD_FORMAT:
        raise ProvisionError(
            f"{context}: payloadFormatVersion {version} is not supported by the local cloud for HTTP APIs "
            f"({_PAYLOAD_FORMAT} only, SAM's default)"
        )


def integration(ctx: ProvisionContext, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
    ctx.api_by_id(str(props.get("ApiId")), _API, logical_id)
    integration_id = ctx.api_id(logical_id)[:7]
    ctx.ws_integrations[integration_id] = _lambda_function(
        ctx, props.get("IntegrationType"), props.get("IntegrationUri"), logical_id)
    return provisioned(logical_id, resource, integration_id, IntegrationId=integration_id)


def route(ctx: ProvisionContext, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
    api = ctx.api_by_id(str(props.get("ApiId")), _API, logical_id)
    ctx.ws_routes.append((api.logical_id, {**props, "LogicalId": logical_id}))
    route_id = ctx.api_id(logical_id)[:7]
    return provisioned(logical_id, resource, route_id, RouteId=route_id)


def authorizer(ctx: ProvisionContext, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
    ctx.api_by_id(str(props.get("ApiId")), _API, logical_id)
    authorizer_id = ctx.api_id(logical_id)[:6]
    kind = props.get("AuthorizerType")
    if kind == "JWT":  # an HTTP API's: read again by finish() for the routes that name it
        return provisioned(logical_id, resource, authorizer_id, AuthorizerId=authorizer_id)
    if kind != "REQUEST":
        raise ProvisionError(f"{logical_id}: AuthorizerType {kind} is not supported locally (REQUEST or JWT)")
    match = LAMBDA_INVOCATION_URI.search(str(props.get("AuthorizerUri", "")))
    if match is None:
        raise ProvisionError(f"{logical_id}: AuthorizerUri must name a Lambda function")
    sources = props.get("IdentitySource", [])
    ctx.ws_authorizers[authorizer_id] = (
        ctx.function_by_arn(match.group("arn"), logical_id),
        [sources] if isinstance(sources, str) else list(sources),
    )
    return provisioned(logical_id, resource, authorizer_id, AuthorizerId=authorizer_id)


def stage(ctx: ProvisionContext, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
    api = ctx.api_by_id(str(props.get("ApiId")), _API, logical_id)
    stage = str(props.get("StageName", "$default"))
    ctx.ws_stages[api.logical_id] = stage
    return provisioned(logical_id, resource, stage)


def _resolved_properties(ctx: ProvisionContext, resource_type: str, physical_id: Any, context: str) -> dict[str, Any]:
    """The resolved Properties of the template's resource of that type that Ref returns `physical_id` for."""
    for resource in ctx.model.resources.values():
        if resource.type == resource_type and resource.physical_id == str(physical_id):
            template = (ctx.cfn.get("Resources") or {})[resource.logical_id]
            resolved: dict[str, Any] = ctx.resolver.resolve(template.get("Properties") or {}, resource.logical_id)
            return resolved
    raise ProvisionError(f"{context}: {physical_id!r} is not an {resource_type} of this template")


def _http_route(ctx: ProvisionContext, route: dict[str, Any]) -> HttpRoute:
    """An HTTP API's route given as an AWS::ApiGatewayV2::Route resource."""
    context = str(route["LogicalId"])
    target = str(route.get("Target", ""))
    integration_id = target.removeprefix("integrations/")
    if integration_id not in ctx.ws_integrations:
        raise ProvisionError(f"{context}: Target {target!r} is not an integration of this template")
    integration = _resolved_properties(ctx, "AWS::ApiGatewayV2::Integration", integration_id, context)
    _require_payload_format(integration.get("PayloadFormatVersion"), context)
    kind = str(route.get("AuthorizationType", "NONE")).upper()
    jwt: HttpAuthorizer | None = None
    if kind == "JWT":
        settings = _resolved_properties(ctx, "AWS::ApiGatewayV2::Authorizer", route.get("AuthorizerId"), context)
        jwt = _jwt_authorizer(str(settings.get("Name", route.get("AuthorizerId"))),
                              settings.get("JwtConfiguration") or {}, settings.get("IdentitySource"), context)
    elif kind != "NONE":
        raise ProvisionError(f"{context}: AuthorizationType {kind} on an HTTP API is not supported locally (JWT or NONE)")
    scopes = [str(scope) for scope in route.get("AuthorizationScopes") or []]
    return HttpRoute(str(route["RouteKey"]), ctx.ws_integrations[integration_id], jwt, scopes)


def finish(ctx: ProvisionContext) -> None:
    http_apis = {http_api.logical_id: http_api for http_api in ctx.model.http_apis}
    for http_api in http_apis.values():
        http_api.stage = ctx.ws_stages.get(http_api.logical_id, "$default")
    for api_logical_id, route in ctx.ws_routes:
        if api_logical_id in http_apis:
            http_apis[api_logical_id].routes.append(_http_route(ctx, route))
    templates = ctx.cfn.get("Resources") or {}
    for logical_id, resource in ctx.model.resources.items():
        if resource.type != _API or logical_id in http_apis:
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
