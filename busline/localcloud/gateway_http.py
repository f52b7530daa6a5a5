"""HTTP APIs (API Gateway v2, ProtocolType HTTP): requests -> payload format 2.0 events -> the function ->
HTTP responses, with JWT authorizers and CORS as API Gateway applies them.

AWS tells APIs apart by host name (`https://{api-id}.execute-api.{region}.amazonaws.com/{stage}/…`); the
local cloud by the first path segment, on the REST gateway's port: `http://127.0.0.1:3000/{api-id}/{stage}/…`
(no stage segment for the `$default` stage, as on AWS). The REST gateway hands such requests over here.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from busline.localcloud.authorizers import (
    Forbidden,
    JwtGrant,
    TokenVerifier,
    Unauthorized,
    bearer_value,
    jwt_authorizer_claims,
)
from busline.localcloud.http_io import (
    Invoker,
    JsonResponder,
    api_gateway_request_time,
    epoch_ms,
    invoke_safely,
    now_utc,
    random_token,
)
from busline.localcloud.model import CloudModel, HttpApi, HttpCors, HttpRoute
from busline.localcloud.proxy_integration import (
    RESPONSE_HEADERS_WE_OWN,
    BadProxyResponse,
    encode_body,
    match_template,
    media_type,
    status_and_body,
)

MAX_REQUEST_BODY_BYTES = 10 * 1024 * 1024  # API Gateway HTTP API payload quota
# Payload format 2.0 carries these request bodies as text; every other one, a missing Content-Type and
# application/x-www-form-urlencoded included, travels base64-encoded (observed on AWS).
_TEXT_MEDIA_TYPES = ("application/json", "application/xml", "application/javascript")
_PREFLIGHT_STATUS = 204


@dataclass(frozen=True)
class HttpRequest:
    """One request to an HTTP API, as much of it as the event needs."""

    method: str
    raw_path: str  # below the API id, as sent: the stage segment (if any) and the route's path
    raw_query: str
    headers: list[tuple[str, str]]
    body: bytes
    source_ip: str
    protocol: str  # "HTTP/1.1"
    domain_name: str  # the Host the client called
    port: int


@dataclass(frozen=True)
class HttpRouteMatch:
    route: HttpRoute
    path_parameters: dict[str, str]


class _Refusal(Exception):
    """API Gateway answers the request itself; the function never runs."""

    def __init__(self, status: int, message: str, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message
        self.headers = headers or []


_NOT_FOUND = (404, "Not Found")
_TOO_LARGE = (413, "Request Entity Too Large")
_INTEGRATION_FAILURE = (500, "Internal Server Error")
_INTEGRATION_TIMEOUT = (503, "Service Unavailable")


# --------------------------------------------------------------------------------------------------
# Routes, events and responses (pure: the unit tests call these directly)


def find_http_route(api: HttpApi, method: str, path: str) -> HttpRouteMatch | None:
    """The most specific route (literal > {param} > {proxy+}, the method itself > ANY), else `$default`."""
    best: tuple[tuple[int, ...], HttpRouteMatch] | None = None
    for route in api.routes:
        if route.path is None or route.method not in (method, "ANY"):
            continue
        matched = match_template(route.path, path)
        if matched is None:
            continue
        parameters, specificity = matched
        key = (*specificity, 1 if route.method == method else 0)
        if best is None or key > best[0]:
            best = (key, HttpRouteMatch(route, parameters))
    if best is not None:
        return best[1]
    default = next((route for route in api.routes if route.route_key == "$default"), None)
    return HttpRouteMatch(default, {}) if default else None


def request_body_is_text(content_type: str | None) -> bool:
    kind = media_type(content_type)
    return kind.startswith("text/") or kind in _TEXT_MEDIA_TYPES


def _joined(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Payload 2.0 has no multi-value maps: repeated names become one comma-separated value."""
    joined: dict[str, str] = {}
    for name, value in pairs:
        joined[name] = f"{joined[name]},{value}" if name in joined else value
    return joined


def build_event(api: HttpApi, match: HttpRouteMatch, request: HttpRequest, account_id: str,
                grant: JwtGrant | None = None, moment: datetime | None = None,
                request_id: str | None = None) -> dict[str, Any]:
    """The payload format 2.0 event API Gateway sends a Lambda proxy integration of an HTTP API."""
    moment = moment or now_utc()
    cookies: list[str] = []
    header_pairs: list[tuple[str, str]] = []
    for name, value in request.headers:
        if name.lower() == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
        else:
            header_pairs.append((name.lower(), value))
    headers = _joined(header_pairs)
    forwarded = headers.get("x-forwarded-for")
    headers["x-forwarded-for"] = f"{forwarded}, {request.source_ip}" if forwarded else request.source_ip
    headers["x-forwarded-port"] = str(request.port)
    headers["x-forwarded-proto"] = "http"  # the local gateway speaks plain HTTP; AWS's https here
    body, is_base64 = encode_body(request.body, request_body_is_text(headers.get("content-type")))
    context: dict[str, Any] = {
        "accountId": account_id,
        "apiId": api.api_id,
        "domainName": request.domain_name,
        "domainPrefix": api.api_id,
        "http": {
            "method": request.method,
            "path": unquote(request.raw_path),
            "protocol": request.protocol,
            "sourceIp": request.source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": request_id or random_token(15, "="),
        "routeKey": match.route.route_key,
        "stage": api.stage,
        "time": api_gateway_request_time(moment),
        "timeEpoch": epoch_ms(moment),
    }
    if grant is not None:
        context["authorizer"] = {"jwt": {"claims": jwt_authorizer_claims(grant.claims), "scopes": grant.scopes}}
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": match.route.route_key,
        "rawPath": request.raw_path,
        "rawQueryString": request.raw_query,
    }
    # Absent, not null, when empty: what AWS sends.
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    query = _joined(parse_qsl(request.raw_query, keep_blank_values=True))
    if query:
        event["queryStringParameters"] = query
    event["requestContext"] = context
    if body is not None:
        event["body"] = body
    if match.path_parameters:
        event["pathParameters"] = match.path_parameters
    event["isBase64Encoded"] = is_base64
    return event


def _header_text(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise BadProxyResponse(f"header {name!r} must be a string, got {type(value).__name__}")


def response_from_payload(payload: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body from a payload format 2.0 result, read as API Gateway reads it.

    A result without `statusCode` is the body itself: 200, application/json, a string as it is and
    anything else as JSON.
    """
    if not isinstance(payload, dict) or "statusCode" not in payload:
        text = payload if isinstance(payload, str) else json.dumps(payload)
        return 200, [("Content-Type", "application/json")], text.encode("utf-8")
    status, raw = status_and_body(payload)
    given = payload.get("headers") or {}
    cookies = payload.get("cookies") or []
    if not isinstance(given, dict):
        raise BadProxyResponse("headers must be an object")
    if not isinstance(cookies, list) or not all(isinstance(cookie, str) for cookie in cookies):
        raise BadProxyResponse("cookies must be a list of strings")
    headers = [(str(name), _header_text(name, value)) for name, value in given.items()
               if str(name).lower() not in RESPONSE_HEADERS_WE_OWN]
    headers += [("Set-Cookie", cookie) for cookie in cookies]
    if raw and not any(name.lower() == "content-type" for name, _ in headers):
        # API Gateway sniffs a type for a body the function left untyped; JSON sniffs as plain text.
        try:
            raw.decode("utf-8")
            headers.append(("Content-Type", "text/plain; charset=utf-8"))
        except UnicodeDecodeError:
            headers.append(("Content-Type", "application/octet-stream"))
    return status, headers, raw


# --------------------------------------------------------------------------------------------------
# CORS (an API's CorsConfiguration): API Gateway answers preflights and sets the response headers itself


def _allowed_origin(cors: HttpCors, origin: str) -> str | None:
    if origin in cors.allow_origins:
        return origin
    if "*" in cors.allow_origins:
        return origin if cors.allow_credentials else "*"
    return None


def preflight_headers(cors: HttpCors, origin: str) -> list[tuple[str, str]]:
    allowed = _allowed_origin(cors, origin)
    if allowed is None:
        return []
    headers = [("access-control-allow-origin", allowed)]
    if cors.allow_methods:
        headers.append(("access-control-allow-methods", ",".join(cors.allow_methods)))
    if cors.allow_headers:
        headers.append(("access-control-allow-headers", ",".join(cors.allow_headers)))
    if cors.max_age_s is not None:
        headers.append(("access-control-max-age", str(cors.max_age_s)))
    if cors.allow_credentials:
        headers.append(("access-control-allow-credentials", "true"))
    return headers


def cors_response_headers(cors: HttpCors, origin: str) -> list[tuple[str, str]]:
    allowed = _allowed_origin(cors, origin)
    if allowed is None:
        return []
    headers = [("access-control-allow-origin", allowed)]
    if cors.allow_credentials:
        headers.append(("access-control-allow-credentials", "true"))
    if cors.expose_headers:
        headers.append(("access-control-expose-headers", ",".join(cors.expose_headers)))
    return headers


# --------------------------------------------------------------------------------------------------
# The gateway


class HttpApiGateway:
    """Serves `model.http_apis`; has no socket of its own (the REST gateway's server hands requests over)."""

    WHAT = "HTTP API gateway"

    def __init__(self, model: CloudModel, runtime: Invoker, tokens: TokenVerifier, port: int) -> None:
        self.model = model
        self.runtime = runtime
        self.port = port
        self._tokens = tokens
        self._apis = {api.api_id: api for api in model.http_apis}

    def handle(self, request: JsonResponder) -> bool:
        """Serve the request if its first path segment names an HTTP API; False to leave it to REST."""
        path = urlsplit(request.path).path or "/"
        api_id, _, below = path.lstrip("/").partition("/")
        api = self._apis.get(api_id)
        if api is None:
            return False
        self._serve(request, api, "/" + below)
        return True

    def _serve(self, request: JsonResponder, api: HttpApi, raw_path: str) -> None:
        request_id = random_token(15, "=")
        origin = request.headers.get("Origin") or ""
        cors = api.cors
        cors_headers = cors_response_headers(cors, origin) if cors and origin else []
        try:
            if (cors and origin and request.command.upper() == "OPTIONS"
                    and request.headers.get("Access-Control-Request-Method")):
                request.read_body(MAX_REQUEST_BODY_BYTES)
                request.send_body(_PREFLIGHT_STATUS, b"",
                                  [*preflight_headers(cors, origin), ("apigw-requestid", request_id)])
                return
            body = request.read_body(MAX_REQUEST_BODY_BYTES)
            if body is None:
                raise _Refusal(*_TOO_LARGE)
            stage_path = api.stage_path
            if stage_path and not (raw_path == stage_path or raw_path.startswith(stage_path + "/")):
                raise _Refusal(*_NOT_FOUND)
            match = find_http_route(api, request.command.upper(), raw_path[len(stage_path):] or "/")
            if match is None:
                raise _Refusal(*_NOT_FOUND)
            status, headers, raw = self._invoke(api, match, request, raw_path, body, request_id)
        except _Refusal as refusal:
            document = json.dumps({"message": refusal.message}).encode()
            request.send_body(refusal.status, document,
                              [("Content-Type", "application/json"), *refusal.headers, *cors_headers,
                               ("apigw-requestid", request_id)],
                              close=refusal.status == _TOO_LARGE[0])
            return
        if cors_headers:
            # With a CorsConfiguration, API Gateway's CORS headers replace the function's.
            headers = [(name, value) for name, value in headers if not name.lower().startswith("access-control-")]
        request.send_body(status, raw, [*headers, *cors_headers, ("apigw-requestid", request_id)])

    def _invoke(self, api: HttpApi, match: HttpRouteMatch, request: JsonResponder, raw_path: str, body: bytes,
                request_id: str) -> tuple[int, list[tuple[str, str]], bytes]:
        url = urlsplit(request.path)
        grant = self._authorize(match.route, request, url.query)
        incoming = HttpRequest(
            method=request.command.upper(), raw_path=raw_path, raw_query=url.query,
            headers=list(request.headers.items()), body=body, source_ip=request.client_address[0],
            protocol=request.request_version, domain_name=request.headers.get("Host") or "",
            port=self.port,
        )  # fmt: skip
        event = build_event(api, match, incoming, self.model.account_id, grant, request_id=request_id)
        route = match.route
        outcome = invoke_safely(self.runtime, route.function, event, f"http api {route.route_key}")
        if outcome.timed_out:
            raise _Refusal(*_INTEGRATION_TIMEOUT)
        if not outcome.ok:
            raise _Refusal(*_INTEGRATION_FAILURE)
        try:
            return response_from_payload(outcome.payload)
        except BadProxyResponse as exc:
            print(f"[{self.WHAT}] {route.function}: malformed Lambda response: {exc}", file=sys.stderr)
            raise _Refusal(*_INTEGRATION_FAILURE) from None

    def _authorize(self, route: HttpRoute, request: JsonResponder, query: str) -> JwtGrant | None:
        authorizer = route.authorizer
        if authorizer is None:
            return None
        parameters = dict(parse_qsl(query, keep_blank_values=True))
        token = ""
        for source in authorizer.identity_sources:
            if source.startswith("$request.header."):
                token = request.headers.get(source.removeprefix("$request.header.")) or ""
            elif source.startswith("$request.querystring."):
                token = parameters.get(source.removeprefix("$request.querystring."), "")
        token = bearer_value(token)
        if not token:
            raise _Refusal(401, "Unauthorized")
        try:
            return self._tokens.jwt_authorizer(token, authorizer.issuer, authorizer.audiences, route.scopes)
        except Unauthorized as reason:
            description = str(reason).replace('"', "'")
            raise _Refusal(401, "Unauthorized", [
                ("www-authenticate", f'Bearer scope="" error="invalid_token" error_description="{description}"'),
            ]) from None
        except Forbidden:
            scopes = " ".join(route.scopes)
            raise _Refusal(403, "Forbidden", [
                ("www-authenticate", f'Bearer scope="{scopes}" error="insufficient_scope"'),
            ]) from None


def http_api_urls(model: CloudModel) -> dict[str, str]:
    """Each HTTP API's invoke URL (logical id -> URL), as its stage's invoke URL on AWS."""
    return {api.logical_id: HttpApi.local_endpoint(model.endpoints.rest, api.api_id) + api.stage_path
            for api in model.http_apis}
