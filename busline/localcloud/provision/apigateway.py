"""AWS::ApiGateway::RestApi and Stage: the inline OpenAPI body becomes RestRoutes for the REST gateway."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from busline.localcloud.model import ProvisionedResource, ProvisionError, RestAuthorizer, RestRoute
from busline.localcloud.provision.context import ProvisionContext, provisioned

_HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}
_ANY_METHOD = "x-amazon-apigateway-any-method"


def openapi_operations(body: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(path, METHOD or ANY, operation) of an OpenAPI body, as API Gateway imports it (REST and HTTP APIs);
    path-level `parameters` and other extensions are not operations."""
    for path, operations in (body.get("paths") or {}).items():
        for method_key, operation in (operations or {}).items():
            if method_key == _ANY_METHOD:
                yield path, "ANY", operation or {}
            elif method_key.lower() in _HTTP_METHODS:
                yield path, method_key.upper(), operation or {}
LAMBDA_INVOCATION_URI = re.compile(r"functions/(?P<arn>arn:[^/]+:lambda:[^/]+)/invocations")


def rest_api(ctx: ProvisionContext, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
    body = props.get("Body")
    if not isinstance(body, dict):
        raise ProvisionError(
            f"{logical_id}: the local cloud needs the API definition inline (SAM's Body); "
            "BodyS3Location and ApiGateway::Resource/Method resources are not supported"
        )
    api_id = ctx.api_id(logical_id)
    authorizers = _authorizers(ctx, logical_id, body)
    binary_media_types = _binary_media_types(body, props)
    default_security = body.get("security")
    for path, method, operation in openapi_operations(body):
        integration = operation.get("x-amazon-apigateway-integration") or {}
        if integration.get("type") == "mock":
            ctx.model.rest_routes.append(RestRoute(
                function="", method=method, path=path, api_logical_id=logical_id,
                mock_headers=_mock_headers(integration), binary_media_types=binary_media_types,
            ))  # fmt: skip
            continue
        match = LAMBDA_INVOCATION_URI.search(str(integration.get("uri", "")))
        if integration.get("type") != "aws_proxy" or match is None:
            raise ProvisionError(
                f"{logical_id}: {method} {path}: only Lambda proxy integrations are supported by the local cloud"
            )
        authorizer, scopes = _security(operation.get("security", default_security), authorizers,
                                       f"{logical_id}: {method} {path}")
        ctx.model.rest_routes.append(
            RestRoute(
                function=ctx.function_by_arn(match.group("arn"), f"{logical_id}: {method} {path}"),
                method=method,
                path=path,
                api_logical_id=logical_id,
                authorizer=authorizer,
                scopes=scopes,
                binary_media_types=binary_media_types,
            )
        )
    ctx.model.rest_gateway_responses[logical_id] = _gateway_responses(body)
    return provisioned(logical_id, resource, api_id, RootResourceId=api_id[::-1])


def _binary_media_types(body: dict[str, Any], props: dict[str, Any]) -> list[str]:
    """The API's binaryMediaTypes: the body's extension and the BinaryMediaTypes property, which writes
    `/` as `~1` (SAM fills in both)."""
    declared = [*(body.get("x-amazon-apigateway-binary-media-types") or []), *(props.get("BinaryMediaTypes") or [])]
    return list(dict.fromkeys(str(media_type).replace("~1", "/") for media_type in declared))


def _authorizers(ctx: ProvisionContext, logical_id: str, body: dict[str, Any]) -> dict[str, RestAuthorizer]:
    """securitySchemes (OpenAPI 3) or securityDefinitions (Swagger 2) that API Gateway runs as authorizers."""
    schemes = dict((body.get("components") or {}).get("securitySchemes") or {})
    schemes |= body.get("securityDefinitions") or {}
    found: dict[str, RestAuthorizer] = {}
    for name, scheme in schemes.items():
        settings = (scheme or {}).get("x-amazon-apigateway-authorizer")
        if not isinstance(settings, dict):
            continue  # an API key or IAM scheme: not an authorizer
        kind = str(settings.get("type", "")).lower()
        context = f"{logical_id}: authorizer {name}"
        if kind == "cognito_user_pools":
            arns = [str(arn) for arn in settings.get("providerARNs") or [] if arn]
            if not arns:
                raise ProvisionError(f"{context}: providerARNs names no user pool")
            sources = [f"method.request.header.{scheme.get('name') or 'Authorization'}"]
            found[name] = RestAuthorizer(name=name, kind=kind, provider_arns=arns, identity_sources=sources)
        elif kind in ("token", "request"):
            match = LAMBDA_INVOCATION_URI.search(str(settings.get("authorizerUri", "")))
            if match is None:
                raise ProvisionError(f"{context}: authorizerUri must name a Lambda function")
            default_source = f"method.request.header.{scheme.get('name') or 'Authorization'}" if kind == "token" else ""
            sources = [part.strip() for part in str(settings.get("identitySource") or default_source).split(",")]
            found[name] = RestAuthorizer(
                name=name, kind=kind,
                function=ctx.function_by_arn(match.group("arn"), context),
                identity_sources=[source for source in sources if source],
                identity_validation=settings.get("identityValidationExpression") or None,
                ttl_s=int(settings.get("authorizerResultTtlInSeconds", 300)),
            )  # fmt: skip
        else:
            raise ProvisionError(f"{context}: authorizer type {kind!r} is not supported by the local cloud")
    return found


def _security(
    requirements: Any, authorizers: dict[str, RestAuthorizer], context: str
) -> tuple[RestAuthorizer | None, list[str]]:
    for requirement in requirements or []:
        for name, scopes in (requirement or {}).items():
            if name in authorizers:
                return authorizers[name], [str(scope) for scope in scopes or []]
    return None, []


def _mock_headers(integration: dict[str, Any]) -> dict[str, str]:
    """The static headers a mock integration's default response maps (SAM's CORS answer)."""
    response = ((integration.get("responses") or {}).get("default")) or {}
    headers = {}
    for name, value in (response.get("responseParameters") or {}).items():
        if str(name).startswith("method.response.header."):
            headers[str(name).removeprefix("method.response.header.")] = str(value).strip("'")
    return headers


def _gateway_responses(body: dict[str, Any]) -> dict[str, dict[str, str]]:
    responses: dict[str, dict[str, str]] = {}
    for response_type, settings in (body.get("x-amazon-apigateway-gateway-responses") or {}).items():
        headers = {}
        for name, value in ((settings or {}).get("responseParameters") or {}).items():
            if str(name).startswith("gatewayresponse.header."):
                headers[str(name).removeprefix("gatewayresponse.header.")] = str(value).strip("'")
        responses[str(response_type)] = headers
    return responses


def stage(ctx: ProvisionContext, logical_id: str, resource: dict[str, Any], props: dict[str, Any]) -> ProvisionedResource:
    api = ctx.api_by_id(str(props.get("RestApiId")), "AWS::ApiGateway::RestApi", logical_id)
    stage = str(props.get("StageName", "Prod"))
    ctx.rest_stages[api.logical_id] = stage
    return provisioned(logical_id, resource, stage)


def finish(ctx: ProvisionContext) -> None:
    for route in ctx.model.rest_routes:
        route.stage = ctx.rest_stages.get(route.api_logical_id, route.stage)
