"""REST gateway: HTTP requests -> API Gateway REST proxy events (v1) -> the function -> HTTP responses."""

from __future__ import annotations

import re
import sys
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote, urlsplit

from busline.localcloud.authorizers import (
    AuthorizerCache,
    AuthorizerResult,
    TokenVerifier,
    Unauthorized,
    authorizer_claims,
    bearer_value,
    policy_effect,
)
from busline.localcloud.gateway_http import HttpApiGateway
from busline.localcloud.http_io import (
    HttpServerThread,
    Invoker,
    JsonResponder,
    api_gateway_request_time,
    epoch_ms,
    invoke_safely,
    now_utc,
    random_token,
    split_headers,
    split_query,
)
from busline.localcloud.model import CloudModel, RestAuthorizer, RestRoute
from busline.localcloud.proxy_integration import (
    RESPONSE_HEADERS_WE_OWN,
    BadProxyResponse,
    encode_body,
    match_template,
    matches_media_types,
    status_and_body,
)

MAX_REQUEST_BODY_BYTES = 10 * 1024 * 1024  # API Gateway REST payload quota
_TEXT_CONTENT_TYPES = ("text/", "application/json", "application/xml", "application/javascript",
                       "application/x-www-form-urlencoded", "+json", "+xml")


# --------------------------------------------------------------------------------------------------
# Route matching


@dataclass(frozen=True)
class RouteMatch:
    route: RestRoute
    path: str  # the request path without the stage prefix
    path_parameters: dict[str, str]
    specificity: tuple[int, ...]


def find_route(routes: list[RestRoute], method: str, raw_path: str) -> RouteMatch | None:
    best: tuple[tuple[int, ...], RouteMatch] | None = None
    for route in routes:
        if route.method.upper() not in (method, "ANY"):
            continue
        for path in _candidate_paths(raw_path, route.stage):
            matched = match_template(route.path, path)
            if matched is None:
                continue
            parameters, specificity = matched
            method_rank = 1 if route.method.upper() == method else 0
            key = (*specificity, method_rank)
            if best is None or key > best[0]:
                best = (key, RouteMatch(route, path, parameters, specificity))
            break
    return best[1] if best else None


def _candidate_paths(raw_path: str, stage: str) -> list[str]:
    """The path with its `/<stage>` prefix stripped first (the usual URL), then as given."""
    path = raw_path or "/"
    prefix = f"/{stage}"
    if stage and (path == prefix or path.startswith(prefix + "/")):
        return [path[len(prefix):] or "/", path]
    return [path]


# --------------------------------------------------------------------------------------------------
# The gateway


def _is_text(content_type: str, body: bytes) -> bool:
    lowered = content_type.lower()
    if lowered and not any(marker in lowered for marker in _TEXT_CONTENT_TYPES):
        return False
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def request_body_is_text(route: RestRoute, content_type: str, body: bytes) -> bool:
    """Whether the function gets the body as text (else base64, isBase64Encoded true).

    AWS: a Content-Type among the API's binaryMediaTypes makes it binary, any other is text. A route no
    template declared has no such list; then the bytes decide, so binary content still arrives whole.
    """
    if route.binary_media_types is None:
        return _is_text(content_type, body)
    return not matches_media_types(content_type, route.binary_media_types)


def response_body_is_binary(route: RestRoute, accept: str | None) -> bool:
    """Whether a base64 result (isBase64Encoded true) is decoded to bytes for the client.

    AWS decodes it when the request's first Accept media type is among the binaryMediaTypes, and returns
    the base64 text unchanged otherwise; a route no template declared always decodes it.
    """
    return route.binary_media_types is None or matches_media_types(accept, route.binary_media_types)


class _GatewayRefusal(Exception):
    """API Gateway answers the request itself (the function never runs)."""

    def __init__(self, status: int, document: Any, response_type: str) -> None:
        super().__init__(f"{status} {document}")
        self.status = status
        self.document = document
        self.response_type = response_type  # the gateway response type whose headers apply


_UNAUTHORIZED = (401, {"message": "Unauthorized"}, "UNAUTHORIZED")
_AUTHORIZER_FAILURE = (500, {"message": None}, "AUTHORIZER_CONFIGURATION_ERROR")
_EXPLICIT_DENY = (403, {"Message": "User is not authorized to access this resource with an explicit deny"},
                  "ACCESS_DENIED")
_NOT_ALLOWED = (403, {"Message": "User is not authorized to access this resource"}, "ACCESS_DENIED")


def _response_from_payload(payload: Any, decode_base64: bool) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body from a proxy integration result, validated as API Gateway does."""
    if not isinstance(payload, dict) or "statusCode" not in payload:
        raise BadProxyResponse(f"the result must be an object with statusCode, got {type(payload).__name__}")
    status, raw = status_and_body(payload, decode_base64)
    single = payload.get("headers") or {}
    multi = payload.get("multiValueHeaders") or {}
    if not isinstance(single, dict) or not isinstance(multi, dict):
        raise BadProxyResponse("headers and multiValueHeaders must be objects")
    # API Gateway merges both; a name/value pair given in both appears once (from multiValueHeaders).
    headers: list[tuple[str, str]] = []
    for name, values in multi.items():
        for value in values if isinstance(values, list) else [values]:
            headers.append((name, str(value)))
    present = {(name.lower(), value) for name, value in headers}
    for name, value in single.items():
        if (name.lower(), str(value)) not in present:
            headers.append((name, str(value)))
    headers = [(name, value) for name, value in headers if name.lower() not in RESPONSE_HEADERS_WE_OWN]
    if not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("Content-Type", "application/json"))
    return status, headers, raw


class RestGateway:
    """Serves `model.rest_routes` like an API Gateway REST API with Lambda proxy integrations, and hands
    requests for an HTTP API (`/{api-id}/…`) to `HttpApiGateway`."""

    WHAT = "REST gateway"

    def __init__(self, model: CloudModel, runtime: Invoker, host: str, port: int) -> None:
        self.model = model
        self.runtime = runtime
        self.host = host
        self.port = port
        self._server = HttpServerThread(host, port, self._handler_class(), self.WHAT)
        self._tokens = TokenVerifier(model.endpoints.aws)
        self._authorizer_cache = AuthorizerCache()
        # HTTP APIs share this port: their requests start with the API's id (see gateway_http).
        self.http_apis = HttpApiGateway(model, runtime, self._tokens, port)

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop()

    def _api_id(self, route: RestRoute) -> str:
        resource = self.model.resources.get(route.api_logical_id)
        return resource.physical_id if resource else (route.api_logical_id or "local").lower()[:10]

    def build_event(self, request: BaseHTTPRequestHandler, match: RouteMatch, body: bytes,
                    authorizer: dict[str, Any] | None = None) -> dict[str, Any]:
        route = match.route
        url = urlsplit(request.path)
        headers, multi_headers = split_headers(list(request.headers.items()))
        query, multi_query = split_query(url.query)
        event_body, is_base64 = encode_body(
            body, request_body_is_text(route, request.headers.get("Content-Type", ""), body))
        moment = now_utc()
        source_ip = request.client_address[0]
        user_agent = request.headers.get("User-Agent")
        request_id = str(uuid.uuid4())
        event: dict[str, Any] = {
            "resource": route.path,
            "path": unquote(match.path),
            "httpMethod": request.command,
            "headers": headers or None,
            "multiValueHeaders": multi_headers or None,
            "queryStringParameters": query,
            "multiValueQueryStringParameters": multi_query,
            "pathParameters": match.path_parameters or None,
            "stageVariables": None,
            "requestContext": {
                "accountId": self.model.account_id,
                "apiId": self._api_id(route),
                "resourceId": random_token(6).lower(),
                "resourcePath": route.path,
                "httpMethod": request.command,
                "requestId": request_id,
                "extendedRequestId": random_token(15, "="),
                "requestTime": api_gateway_request_time(moment),
                "requestTimeEpoch": epoch_ms(moment),
                "path": unquote(f"/{route.stage}{match.path}" if route.stage else match.path),
                "protocol": request.request_version,
                "stage": route.stage,
                "domainPrefix": self.host,
                "domainName": request.headers.get("Host") or f"{self.host}:{self.port}",
                "identity": {
                    "cognitoIdentityPoolId": None,
                    "accountId": None,
                    "cognitoIdentityId": None,
                    "caller": None,
                    "apiKey": None,
                    "principalOrgId": None,
                    "sourceIp": source_ip,
                    "cognitoAuthenticationType": None,
                    "cognitoAuthenticationProvider": None,
                    "userArn": None,
                    "userAgent": user_agent,
                    "user": None,
                    "accessKey": None,
                },
            },
            "body": event_body,
            "isBase64Encoded": is_base64,
        }
        if authorizer is not None:
            event["requestContext"]["authorizer"] = authorizer
        return event

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        gateway = self

        class RestRequestHandler(JsonResponder):
            def _handle(self) -> None:
                gateway.handle(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

        return RestRequestHandler

    def handle(self, request: JsonResponder) -> None:
        if self.http_apis.handle(request):
            return
        method = request.command.upper()
        raw_path = urlsplit(request.path).path or "/"
        match = find_route(self.model.rest_routes, method, raw_path)
        if match is None:
            if method == "OPTIONS" and self._answer_preflight(request, raw_path):
                return
            # API Gateway's MISSING_AUTHENTICATION_TOKEN response: a REST API answers an undeclared path or
            # method so, authorizer or not (docs: supported-gateway-response-types). An unread body would be
            # parsed as the next request on this keep-alive connection.
            self._refuse(request, None,
                         _GatewayRefusal(403, {"message": "Missing Authentication Token"}, "MISSING_AUTHENTICATION_TOKEN"),
                         close=request.has_body())
            return
        route = match.route
        if route.mock_headers is not None:
            request.read_body(MAX_REQUEST_BODY_BYTES)
            request.send_body(200, b"{}", [("Content-Type", "application/json"), *route.mock_headers.items()])
            return
        body = request.read_body(MAX_REQUEST_BODY_BYTES)
        if body is None:
            self._refuse(request, route, _GatewayRefusal(413, {"message": "Request Too Long"}, "REQUEST_TOO_LARGE"),
                         close=True)
            return
        try:
            authorizer = self._authorize(request, match, body)
        except _GatewayRefusal as refusal:
            self._refuse(request, route, refusal)
            return
        event = self.build_event(request, match, body, authorizer)
        outcome = invoke_safely(self.runtime, route.function, event, f"api {method} {route.path}")
        if outcome.timed_out:
            self._refuse(request, route, _GatewayRefusal(504, {"message": "Endpoint request timed out"},
                                                         "INTEGRATION_TIMEOUT"))
            return
        if not outcome.ok:
            self._refuse(request, route, _GatewayRefusal(502, {"message": "Internal server error"},
                                                         "INTEGRATION_FAILURE"))
            return
        try:
            status, headers, raw = _response_from_payload(
                outcome.payload, response_body_is_binary(route, request.headers.get("Accept")))
        except BadProxyResponse as exc:
            # API Gateway answers a malformed proxy response with 502; say why on the console.
            print(f"[{self.WHAT}] {route.function}: malformed Lambda proxy response: {exc}",
                  file=sys.stderr)
            self._refuse(request, route, _GatewayRefusal(502, {"message": "Internal server error"},
                                                         "INTEGRATION_FAILURE"))
            return
        request.send_body(status, raw, headers)

    def _refuse(self, request: JsonResponder, route: RestRoute | None, refusal: _GatewayRefusal,
                *, close: bool = False) -> None:
        request.send_json(refusal.status, refusal.document, self._gateway_headers(route, refusal), close=close)

    def _gateway_headers(self, route: RestRoute | None, refusal: _GatewayRefusal) -> list[tuple[str, str]]:
        """The template's gateway responses: the specific type's headers, else DEFAULT_4XX / DEFAULT_5XX."""
        apis = [route.api_logical_id] if route else list(self.model.rest_gateway_responses)
        for api in apis:
            responses = self.model.rest_gateway_responses.get(api) or {}
            default = "DEFAULT_5XX" if refusal.status >= 500 else "DEFAULT_4XX"
            headers = responses.get(refusal.response_type, responses.get(default))
            if headers:
                return list(headers.items())
        return []

    # ---------------------------------------------------------------------------------------- authorizers

    def _method_arn(self, match: RouteMatch, method: str) -> str:
        route = match.route
        return (f"arn:aws:execute-api:{self.model.region}:{self.model.account_id}:{self._api_id(route)}/"
                f"{route.stage}/{method}{match.path}")

    def _authorize(self, request: BaseHTTPRequestHandler, match: RouteMatch, body: bytes) -> dict[str, Any] | None:
        """`requestContext.authorizer` for the function, None without an authorizer; raises _GatewayRefusal."""
        authorizer = match.route.authorizer
        if authorizer is None:
            return None
        if authorizer.kind == "cognito_user_pools":
            return self._cognito_claims(request, authorizer, match.route.scopes)
        return self._lambda_authorizer(request, match, body, authorizer)

    def _cognito_claims(self, request: BaseHTTPRequestHandler, authorizer: RestAuthorizer,
                        scopes: list[str]) -> dict[str, Any]:
        header = authorizer.identity_sources[0].removeprefix("method.request.header.")
        token = bearer_value(request.headers.get(header) or "")
        if not token:
            raise _GatewayRefusal(*_UNAUTHORIZED)
        try:
            claims = self._tokens.cognito(token, authorizer.provider_arns, scopes)
        except Unauthorized:
            raise _GatewayRefusal(*_UNAUTHORIZED) from None
        return {"claims": authorizer_claims(claims)}

    def _identity_values(self, request: BaseHTTPRequestHandler, match: RouteMatch,
                         authorizer: RestAuthorizer) -> tuple[str, ...]:
        query, _ = split_query(urlsplit(request.path).query)
        values = []
        for source in authorizer.identity_sources:
            value: str | None = None
            if source.startswith("method.request.header."):
                value = request.headers.get(source.removeprefix("method.request.header."))
            elif source.startswith("method.request.querystring."):
                value = (query or {}).get(source.removeprefix("method.request.querystring."))
            elif source.startswith("context."):
                value = {"httpMethod": request.command, "resourcePath": match.route.path}.get(
                    source.removeprefix("context."))
            if not value:
                # API Gateway answers without calling the authorizer
                raise _GatewayRefusal(*_UNAUTHORIZED)
            values.append(value)
        return tuple(values)

    def _lambda_authorizer(self, request: BaseHTTPRequestHandler, match: RouteMatch, body: bytes,
                           authorizer: RestAuthorizer) -> dict[str, Any]:
        assert authorizer.function is not None
        method_arn = self._method_arn(match, request.command.upper())
        values = self._identity_values(request, match, authorizer)
        if authorizer.kind == "token" and authorizer.identity_validation and not re.fullmatch(
                authorizer.identity_validation, values[0]):
            raise _GatewayRefusal(*_UNAUTHORIZED)
        key = (authorizer.name, *values)
        started = time.monotonic()
        result = self._authorizer_cache.get(key)
        if result is None:
            if authorizer.kind == "token":
                event: dict[str, Any] = {"type": "TOKEN", "authorizationToken": values[0], "methodArn": method_arn}
            else:
                event = {"type": "REQUEST", "methodArn": method_arn, **self.build_event(request, match, body)}
                event.pop("body", None)
                event.pop("isBase64Encoded", None)
            outcome = invoke_safely(self.runtime, authorizer.function, event, f"authorizer {authorizer.name}")
            if not outcome.ok:
                if (outcome.error or "").strip() == "Unauthorized":
                    raise _GatewayRefusal(*_UNAUTHORIZED)
                print(f"[{self.WHAT}] authorizer {authorizer.name} failed: {outcome.error_type}: {outcome.error}",
                      file=sys.stderr)
                raise _GatewayRefusal(*_AUTHORIZER_FAILURE)
            payload = outcome.payload
            if not isinstance(payload, dict) or "principalId" not in payload or "policyDocument" not in payload:
                print(f"[{self.WHAT}] authorizer {authorizer.name} returned no principalId/policyDocument",
                      file=sys.stderr)
                raise _GatewayRefusal(*_AUTHORIZER_FAILURE)
            context = payload.get("context")
            result = AuthorizerResult(payload["principalId"], payload["policyDocument"],
                                      context if isinstance(context, dict) else {})
            self._authorizer_cache.put(key, result, authorizer.ttl_s)
        effect = policy_effect(result.policy, method_arn)
        if effect == "Deny":
            raise _GatewayRefusal(*_EXPLICIT_DENY)
        if effect != "Allow":
            raise _GatewayRefusal(*_NOT_ALLOWED)
        latency_ms = int((time.monotonic() - started) * 1000)
        return {"principalId": result.principal_id, **result.context, "integrationLatency": latency_ms}

    def _answer_preflight(self, request: JsonResponder, raw_path: str) -> bool:
        """CORS preflight for a path that has routes but no OPTIONS route.

        SAM's `Cors` setting makes API Gateway answer OPTIONS itself (a mock integration the local model
        does not carry), so a browser page on the web port would otherwise be refused by its preflight.
        """
        methods = sorted({
            route.method.upper()
            for route in self.model.rest_routes
            if any(match_template(route.path, path) is not None
                   for path in _candidate_paths(raw_path, route.stage))
        })
        if not methods:
            return False
        allowed = "GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS" if "ANY" in methods else ",".join([*methods, "OPTIONS"])
        headers = [
            ("Access-Control-Allow-Origin", request.headers.get("Origin") or "*"),
            ("Access-Control-Allow-Methods", allowed),
            ("Access-Control-Allow-Headers",
             request.headers.get("Access-Control-Request-Headers") or "Content-Type,Authorization"),
            ("Access-Control-Max-Age", "600"),
            ("Vary", "Origin"),
        ]
        request.send_body(204, b"", headers)
        return True

