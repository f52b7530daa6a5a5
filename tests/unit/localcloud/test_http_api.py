"""HTTP APIs (API Gateway v2, ProtocolType HTTP): payload format 2.0 events and responses, route selection,
JWT authorizers and CORS, and the provisioning of SAM's AWS::Serverless::HttpApi.

AWS's rules quoted in the docstrings come from "Create AWS Lambda proxy integrations for HTTP APIs"
(https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html),
"Control access to HTTP APIs with JWT authorizers"
(https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-jwt-authorizer.html) and
"Configuring CORS for an HTTP API" (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-cors.html).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from gateway_fakes import HOST, Functions, free_port
from moto import mock_aws

from busline.localcloud.authorizers import Forbidden, JwtGrant, TokenVerifier, Unauthorized
from busline.localcloud.gateway_http import (
    HttpRequest,
    build_event,
    find_http_route,
    http_api_urls,
    request_body_is_text,
    response_from_payload,
)
from busline.localcloud.gateways import RestGateway
from busline.localcloud.in_process import provision_in_process
from busline.localcloud.model import (
    CloudModel,
    Endpoints,
    HttpApi,
    HttpAuthorizer,
    HttpCors,
    HttpRoute,
    ProvisionError,
)
from busline.localcloud.proxy_integration import BadProxyResponse

pytestmark = pytest.mark.timeout(60)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
ACCOUNT = "123456789012"
MOMENT = datetime(2026, 3, 12, 19, 3, 58, 390000, tzinfo=UTC)


def items_api(stage: str = "$default", routes: list[HttpRoute] | None = None,
              cors: HttpCors | None = None) -> HttpApi:
    return HttpApi(logical_id="ItemsApi", api_id="abc123defg", name="items", stage=stage,
                   routes=routes if routes is not None else [HttpRoute("GET /items/{id}", "Items")], cors=cors)


def incoming(method: str = "GET", raw_path: str = "/items/42", raw_query: str = "",
             headers: list[tuple[str, str]] | None = None, body: bytes = b"") -> HttpRequest:
    return HttpRequest(method=method, raw_path=raw_path, raw_query=raw_query, headers=headers or [], body=body,
                       source_ip="192.0.2.7", protocol="HTTP/1.1", domain_name="127.0.0.1:3000", port=3000)


# ==================================================================================================
# The event


def test_event_is_payload_format_2_0_with_joined_headers_cookies_and_query() -> None:
    """AWS: "Format 2.0 doesn't have multiValueHeaders or multiValueQueryStringParameters fields. Duplicate
    headers are combined with commas ... Format 2.0 includes a new cookies field"; header names are lower
    case; a named stage is part of rawPath."""
    # Given an API on stage "dev" and a request with repeated headers, two Cookie headers and a repeated
    # query parameter, whose caller passed a JWT authorizer with route scopes
    api = items_api(stage="dev")
    match = find_http_route(api, "GET", "/items/a%20b")
    assert match is not None
    request = incoming(
        raw_path="/dev/items/a%20b", raw_query="color=red&color=blue&size=",
        headers=[("Host", "127.0.0.1:3000"), ("User-Agent", "curl/8"), ("X-Tag", "one"), ("x-tag", "two"),
                 ("Cookie", "session=abc; theme=dark"), ("Cookie", "lang=en")],
    )
    grant = JwtGrant({"sub": "user-1", "exp": 1773342238, "cognito:groups": ["admins", "ops"]},
                     ["aws.cognito.signin.user.admin"])

    # When the gateway builds the event
    event = build_event(api, match, request, ACCOUNT, grant, MOMENT, "JKJaXmPLvHcESHA=")

    # Then it is AWS's 2.0 event to the field
    assert event == {
        "version": "2.0",
        "routeKey": "GET /items/{id}",
        "rawPath": "/dev/items/a%20b",
        "rawQueryString": "color=red&color=blue&size=",
        "cookies": ["session=abc", "theme=dark", "lang=en"],
        "headers": {
            "host": "127.0.0.1:3000",
            "user-agent": "curl/8",
            "x-tag": "one,two",
            "x-forwarded-for": "192.0.2.7",
            "x-forwarded-port": "3000",
            "x-forwarded-proto": "http",
        },
        "queryStringParameters": {"color": "red,blue", "size": ""},
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": "abc123defg",
            "domainName": "127.0.0.1:3000",
            "domainPrefix": "abc123defg",
            "http": {"method": "GET", "path": "/dev/items/a b", "protocol": "HTTP/1.1", "sourceIp": "192.0.2.7",
                     "userAgent": "curl/8"},
            "requestId": "JKJaXmPLvHcESHA=",
            "routeKey": "GET /items/{id}",
            "stage": "dev",
            "time": "12/Mar/2026:19:03:58 +0000",
            "timeEpoch": 1773342238390,
            "authorizer": {"jwt": {
                "claims": {"sub": "user-1", "exp": "1773342238", "cognito:groups": "[admins ops]"},
                "scopes": ["aws.cognito.signin.user.admin"],
            }},
        },
        "pathParameters": {"id": "a b"},
        "isBase64Encoded": False,
    }


def test_event_leaves_out_empty_parts() -> None:
    # Given a bare GET with no cookie, query, body or path parameter
    api = items_api(routes=[HttpRoute("$default", "Fallback")])
    match = find_http_route(api, "GET", "/")
    assert match is not None

    # When the gateway builds the event
    event = build_event(api, match, incoming(raw_path="/"), ACCOUNT, None, MOMENT, "r-1")

    # Then those keys are absent (not null) and rawQueryString is empty, as AWS sends it
    assert sorted(event) == ["headers", "isBase64Encoded", "rawPath", "rawQueryString", "requestContext",
                             "routeKey", "version"]
    assert (event["rawQueryString"], event["routeKey"], event["isBase64Encoded"]) == ("", "$default", False)
    assert "authorizer" not in event["requestContext"]


@pytest.mark.parametrize(("content_type", "as_text"), [
    ("application/json", True),
    ("application/json; charset=utf-8", True),
    ("text/csv", True),
    ("application/xml", True),
    ("application/javascript", True),
    ("application/x-www-form-urlencoded", False),
    ("application/octet-stream", False),
    ("image/png", False),
    ("application/vnd.api+json", False),
    (None, False),
])
def test_request_bodies_are_text_only_for_text_media_types(content_type: str | None, as_text: bool) -> None:
    """AWS (payload 2.0): "If the content type of the request is binary, the body is base64-encoded"; as
    observed on AWS only text/*, application/json, application/xml and application/javascript are text."""
    # Given a request body of that Content-Type
    headers = [("Content-Type", content_type)] if content_type else []
    api = items_api(routes=[HttpRoute("$default", "Fallback")])
    match = find_http_route(api, "POST", "/upload")
    assert match is not None

    # When the event is built
    event = build_event(api, match, incoming("POST", "/upload", headers=headers, body=b"a=1&b=2"), ACCOUNT)

    # Then the body is the text itself, or base64 with isBase64Encoded true
    assert request_body_is_text(content_type) is as_text
    expected = "a=1&b=2" if as_text else base64.b64encode(b"a=1&b=2").decode()
    assert (event["body"], event["isBase64Encoded"]) == (expected, not as_text)


# ==================================================================================================
# The response


@pytest.mark.parametrize(("result", "body"), [
    ("Hello from Lambda!", b"Hello from Lambda!"),
    ({"message": "Hello from Lambda!"}, b'{"message": "Hello from Lambda!"}'),
    ([1, 2], b"[1, 2]"),
])
def test_a_result_without_status_code_is_a_200_json_body(result: Any, body: bytes) -> None:
    """AWS: if the function "returns valid JSON and doesn't return a statusCode": statusCode 200,
    content-type application/json, body is the function's response."""
    # Given a function result without statusCode / When it is read / Then it is the body of a 200
    assert response_from_payload(result) == (200, [("Content-Type", "application/json")], body)


def test_a_full_result_sets_status_headers_cookies_and_decodes_base64() -> None:
    """AWS: "In the response to the client, each cookie becomes a set-cookie header"; isBase64Encoded
    bodies are decoded (HTTP APIs have no binaryMediaTypes)."""
    # Given a result with status, headers, cookies and a base64 body
    result = {"statusCode": 201, "headers": {"X-Id": "7", "X-Flag": True, "Content-Length": "999"},
              "cookies": ["a=1; Path=/", "b=2"], "body": base64.b64encode(b"\x00\xff").decode(),
              "isBase64Encoded": True}

    # When it is read
    status, headers, body = response_from_payload(result)

    # Then the client gets them, the body as bytes; the framing header is the gateway's own
    assert (status, body) == (201, b"\x00\xff")
    assert headers == [("X-Id", "7"), ("X-Flag", "true"), ("Set-Cookie", "a=1; Path=/"), ("Set-Cookie", "b=2"),
                       ("Content-Type", "application/octet-stream")]


def test_an_untyped_text_body_is_plain_text_and_an_empty_one_untyped() -> None:
    # Given results with a statusCode but no content-type / When they are read
    text = response_from_payload({"statusCode": 200, "body": '{"a": 1}'})
    empty = response_from_payload({"statusCode": 204})
    # Then a text body is sniffed as plain text (as API Gateway does) and no body gets no type
    assert text == (200, [("Content-Type", "text/plain; charset=utf-8")], b'{"a": 1}')
    assert empty == (204, [], b"")


@pytest.mark.parametrize("result", [
    {"statusCode": "abc"},
    {"statusCode": 700},
    {"statusCode": 200, "body": {"not": "a string"}},
    {"statusCode": 200, "body": "%%%", "isBase64Encoded": True},
    {"statusCode": 200, "headers": ["x"]},
    {"statusCode": 200, "cookies": "a=1"},
])
def test_malformed_results_are_refused(result: dict[str, Any]) -> None:
    # Given a result API Gateway cannot turn into a response / When it is read / Then it is refused (a 500)
    with pytest.raises(BadProxyResponse):
        response_from_payload(result)


# ==================================================================================================
# Route selection


def test_route_selection_prefers_the_most_specific_route_then_default() -> None:
    """AWS: API Gateway selects the most-specific match: full match, then greedy path variable, then
    $default; a method's own route before ANY."""
    # Given overlapping routes
    api = items_api(routes=[
        HttpRoute("GET /items/{id}", "Param"), HttpRoute("GET /items/special", "Literal"),
        HttpRoute("ANY /items/{id}", "AnyParam"), HttpRoute("ANY /{proxy+}", "Proxy"), HttpRoute("$default", "Default"),
    ])

    # When requests of each kind are matched
    def chosen(method: str, path: str) -> tuple[str, dict[str, str]]:
        match = find_http_route(api, method, path)
        assert match is not None
        return match.route.function, match.path_parameters

    # Then literal > {param} > {proxy+} > $default, and the method beats ANY
    assert chosen("GET", "/items/special") == ("Literal", {})
    assert chosen("GET", "/items/7") == ("Param", {"id": "7"})
    assert chosen("DELETE", "/items/7") == ("AnyParam", {"id": "7"})
    assert chosen("GET", "/files/a/b") == ("Proxy", {"proxy": "files/a/b"})
    assert chosen("GET", "/") == ("Default", {})
    assert find_http_route(items_api(routes=[HttpRoute("GET /a", "A")]), "GET", "/b") is None


# ==================================================================================================
# JWT authorizers


class Issuer:
    """An OpenID provider on loopback: discovery document, JWKS, and tokens signed with its key."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        self.jwks = {"keys": [{**jwk, "kid": "fixture-key", "alg": "RS256", "use": "sig"}]}
        self.server = ThreadingHTTPServer((HOST, 0), self._handler())
        self.url = f"http://{HOST}:{self.server.server_address[1]}"
        self.requests: list[str] = []
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer.requests.append(self.path)
                documents = {
                    "/.well-known/openid-configuration": {"issuer": issuer.url, "jwks_uri": f"{issuer.url}/keys"},
                    "/keys": issuer.jwks,
                    "/us-east-1_Fixture1/.well-known/jwks.json": issuer.jwks,  # where moto serves a pool's
                }
                body = json.dumps(documents.get(self.path, {})).encode()
                self.send_response(200 if self.path in documents else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                pass

        return Handler

    def token(self, issuer: str | None = None, key: Any = None, **claims: Any) -> str:
        now = int(time.time())
        payload = {"iss": issuer or self.url, "sub": "user-1", "iat": now, "exp": now + 600, **claims}
        return jwt.encode(payload, key or self.key, algorithm="RS256", headers={"kid": "fixture-key"})


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    provider = Issuer()
    provider._thread.start()
    try:
        yield provider
    finally:
        provider.server.shutdown()
        provider.server.server_close()


def test_jwt_authorizer_accepts_aud_or_client_id_and_checks_scopes(issuer: Issuer) -> None:
    """AWS: the token's kid, iss, aud (or client_id when there is no aud), exp, nbf and iat are checked;
    with route scopes "the token must include at least one of the route's scopes"."""
    # Given an authorizer for audience "app-1" of an issuer found by OpenID discovery
    verifier = TokenVerifier(aws_endpoint="http://127.0.0.1:9")
    check = verifier.jwt_authorizer

    # When tokens are checked
    id_token = check(issuer.token(aud="app-1"), issuer.url, ["app-1"], [])
    access = check(issuer.token(client_id="app-1", scope="read write"), issuer.url, ["app-1"], ["write", "admin"])

    # Then an ID token passes on aud (no scopes asked: scopes null), an access token on client_id with the
    # token's scopes, and the keys were fetched once
    assert (id_token.claims["aud"], id_token.scopes) == ("app-1", None)
    assert (access.claims["client_id"], access.scopes) == ("app-1", ["read", "write"])
    assert issuer.requests == ["/.well-known/openid-configuration", "/keys"]


@pytest.mark.parametrize(("case", "claims"), [
    ("another audience", {"aud": "app-2"}),
    ("aud wins over client_id", {"aud": "app-2", "client_id": "app-1"}),
    ("expired", {"aud": "app-1", "exp": int(time.time()) - 5}),
    ("not yet valid", {"aud": "app-1", "nbf": int(time.time()) + 600}),
    ("another issuer", {"aud": "app-1", "iss": "https://issuer.example"}),
])
def test_jwt_authorizer_refuses_tokens_that_are_not_for_it(issuer: Issuer, case: str, claims: dict[str, Any]) -> None:
    # Given a token that fails one of API Gateway's checks
    token = issuer.token(**claims)
    # When it is checked / Then it is Unauthorized (a 401)
    with pytest.raises(Unauthorized):
        TokenVerifier("http://127.0.0.1:9").jwt_authorizer(token, issuer.url, ["app-1"], [])


def test_jwt_authorizer_refuses_a_forged_signature_and_lacking_scopes(issuer: Issuer) -> None:
    # Given a token signed with another key, and a valid one without the route's scope
    forged = issuer.token(key=rsa.generate_private_key(public_exponent=65537, key_size=2048), aud="app-1")
    unscoped = issuer.token(aud="app-1", scope="read")
    verifier = TokenVerifier("http://127.0.0.1:9")

    # When they are checked / Then the forged one is Unauthorized (401), the other Forbidden (403)
    with pytest.raises(Unauthorized):
        verifier.jwt_authorizer(forged, issuer.url, ["app-1"], [])
    with pytest.raises(Forbidden):
        verifier.jwt_authorizer(unscoped, issuer.url, ["app-1"], ["admin"])


def test_a_cognito_issuer_gets_its_keys_from_the_local_aws_endpoint(issuer: Issuer) -> None:
    # Given a token of a Cognito pool, whose JWKS the local AWS endpoint (moto) serves
    cognito = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Fixture1"
    token = issuer.token(issuer=cognito, client_id="app-1", token_use="access")

    # When an authorizer of that pool checks it
    grant = TokenVerifier(issuer.url).jwt_authorizer(token, cognito, ["app-1"], [])

    # Then the keys came from <aws>/<pool id>/.well-known/jwks.json, with no discovery
    assert grant.claims["iss"] == cognito
    assert issuer.requests == ["/us-east-1_Fixture1/.well-known/jwks.json"]


# ==================================================================================================
# Served on the REST gateway's port




@contextlib.contextmanager
def served(api: HttpApi, functions: Functions, aws_endpoint: str = "") -> Iterator[int]:
    port = free_port()
    endpoints = Endpoints(host=HOST, rest=f"http://{HOST}:{port}", websocket="", web="", aws=aws_endpoint,
                          management="", postgres="")
    model = CloudModel(region="us-east-1", account_id=ACCOUNT, endpoints=endpoints, http_apis=[api])
    gateway = RestGateway(model, functions, HOST, port)
    gateway.start()
    try:
        yield port
    finally:
        gateway.stop()


def call(port: int, method: str, path: str, headers: dict[str, str] | None = None,
         body: bytes | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def test_gateway_serves_an_http_api_under_its_id_with_aws_error_answers() -> None:
    """AWS's HTTP API answers: 404 {"message":"Not Found"}, a failing function 500 {"message":"Internal
    Server Error"}, a timed-out one 503 {"message":"Service Unavailable"}; every answer has apigw-requestid."""
    # Given an HTTP API on stage "v1" with a working, a failing and a timing-out route
    def broken(event: dict[str, Any]) -> Any:
        raise RuntimeError("secret detail")

    api = items_api(stage="v1", routes=[HttpRoute("GET /items/{id}", "Items"), HttpRoute("GET /broken", "Broken"),
                                        HttpRoute("GET /slow", "Slow")])
    functions = Functions({"Items": lambda event: {"id": event["pathParameters"]["id"]}, "Broken": broken})
    with served(api, functions) as port:
        # When each is called under /<api id>/<stage>, plus a path of no route and one without the stage
        answers = {path: call(port, "GET", f"/abc123defg{path}")
                   for path in ("/v1/items/9", "/v1/broken", "/v1/slow", "/v1/nothing", "/items/9")}

    # Then the function's result and API Gateway's own answers come back
    summary = {path: (status, body) for path, (status, _, body) in answers.items()}
    assert summary == {
        "/v1/items/9": (200, b'{"id": "9"}'),
        "/v1/broken": (500, b'{"message": "Internal Server Error"}'),
        "/v1/slow": (503, b'{"message": "Service Unavailable"}'),
        "/v1/nothing": (404, b'{"message": "Not Found"}'),
        "/items/9": (404, b'{"message": "Not Found"}'),
    }
    assert [len(headers["apigw-requestid"]) for _, headers, _ in answers.values()] == [16] * 5
    [(_, event)] = [(name, event) for name, event in functions.events if name == "Items"]
    assert (event["rawPath"], event["requestContext"]["stage"]) == ("/v1/items/9", "v1")
    assert event["requestContext"]["requestId"] == answers["/v1/items/9"][1]["apigw-requestid"]


def test_gateway_enforces_the_jwt_authorizer_before_the_function(issuer: Issuer) -> None:
    """AWS: a missing or invalid token is 401 {"message":"Unauthorized"}, a token without the route's
    scopes 403 {"message":"Forbidden"}; the function never runs for either."""
    # Given a route behind a JWT authorizer that wants the scope "write"
    authorizer = HttpAuthorizer(name="Jwt", issuer=issuer.url, audiences=["app-1"])
    api = items_api(routes=[HttpRoute("GET /items/{id}", "Items", authorizer, ["write"])])
    functions = Functions({"Items": lambda event: event["requestContext"]["authorizer"]})
    with served(api, functions) as port:
        # When it is called without a token, with a foreign-audience one, an unscoped one and a good one
        tokens = {"none": None, "foreign": issuer.token(aud="app-2", scope="write"),
                  "unscoped": issuer.token(aud="app-1", scope="read"),
                  "good": issuer.token(aud="app-1", scope="read write")}
        answers = {name: call(port, "GET", "/abc123defg/items/1",
                              {"Authorization": f"Bearer {token}"} if token else {})
                   for name, token in tokens.items()}

    # Then only the good token reached the function, which saw its claims and scopes
    assert {name: (status, json.loads(body)) for name, (status, _, body) in answers.items() if name != "good"} == {
        "none": (401, {"message": "Unauthorized"}),
        "foreign": (401, {"message": "Unauthorized"}),
        "unscoped": (403, {"message": "Forbidden"}),
    }
    assert answers["foreign"][1]["www-authenticate"].startswith('Bearer scope="" error="invalid_token"')
    assert answers["unscoped"][1]["www-authenticate"] == 'Bearer scope="write" error="insufficient_scope"'
    status, _, body = answers["good"]
    assert status == 200
    assert json.loads(body)["jwt"]["scopes"] == ["read", "write"]
    assert json.loads(body)["jwt"]["claims"]["aud"] == "app-1"
    assert len(functions.events) == 1


def test_gateway_answers_cors_preflights_and_replaces_the_functions_cors_headers() -> None:
    """AWS: with CORS configured, "API Gateway automatically sends a response to preflight OPTIONS
    requests" and "ignores CORS headers returned from your backend integration"."""
    # Given an API allowing one origin, whose function sets its own CORS header
    cors = HttpCors(allow_origins=["http://app.example"], allow_methods=["GET", "POST"],
                    allow_headers=["authorization"], expose_headers=["x-id"], max_age_s=600)
    api = items_api(routes=[HttpRoute("ANY /{proxy+}", "Items")], cors=cors)
    functions = Functions({"Items": lambda event: {"statusCode": 200, "body": "ok",
                                                   "headers": {"Access-Control-Allow-Origin": "*"}}})
    with served(api, functions) as port:
        # When a browser sends a preflight and then the request, and another origin does the same
        preflight = call(port, "OPTIONS", "/abc123defg/items", {
            "Origin": "http://app.example", "Access-Control-Request-Method": "POST"})
        actual = call(port, "GET", "/abc123defg/items", {"Origin": "http://app.example"})
        foreign = call(port, "OPTIONS", "/abc123defg/items", {
            "Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})

    # Then the gateway answered the preflights itself (the function ran once, for the GET)
    assert preflight[0] == 204
    assert {name.lower(): value for name, value in preflight[1].items() if name.lower().startswith("access-")} == {
        "access-control-allow-origin": "http://app.example",
        "access-control-allow-methods": "GET,POST",
        "access-control-allow-headers": "authorization",
        "access-control-max-age": "600",
    }
    assert (actual[0], actual[1].get_all("access-control-allow-origin"), actual[1]["access-control-expose-headers"]) \
        == (200, ["http://app.example"], "x-id")
    assert (foreign[0], foreign[1]["access-control-allow-origin"]) == (204, None)
    assert [name for name, _ in functions.events] == ["Items"]


def test_gateway_leaves_other_paths_to_the_rest_api() -> None:
    # Given an HTTP API and no REST route
    with served(items_api(), Functions({})) as port:
        # When a path that is not under the HTTP API's id is called
        status, _, body = call(port, "GET", "/items/1")
    # Then the REST gateway answers it (REST's answer to an undeclared route)
    assert (status, json.loads(body)) == (403, {"message": "Missing Authentication Token"})


# ==================================================================================================
# Provisioning


def test_sam_http_api_becomes_routes_with_jwt_authorizer_cors_and_stage() -> None:
    # Given the conformance fixture's AWS::Serverless::HttpApi (JWT authorizer on its Cognito pool, CORS)
    with mock_aws():
        stack = provision_in_process(FIXTURES / "localcloud" / "template.yaml", {"StageName": "fixture"})
    [api] = stack.model.http_apis

    # Then its routes, their authorizer and scopes, the $default stage and the CORS settings are the template's
    routes = sorted((route.route_key, route.function, route.authorizer.name if route.authorizer else None,
                     tuple(route.scopes)) for route in api.routes)
    assert routes == [
        ("$default", "HttpApiFunction", None, ()),
        ("ANY /files/{proxy+}", "HttpApiFunction", None, ()),
        ("GET /admin", "HttpApiFunction", "FixtureJwt", ("fixture/admin",)),
        ("GET /fail", "HttpApiFunction", None, ()),
        ("GET /items/{id}", "HttpApiFunction", "FixtureJwt", ("aws.cognito.signin.user.admin",)),
        ("POST /echo", "HttpApiFunction", None, ()),
    ]
    authorizer = next(route.authorizer for route in api.routes if route.authorizer)
    pool = stack.outputs["HttpUserPoolId"]
    assert (authorizer.issuer, authorizer.audiences, authorizer.identity_sources) == (
        f"https://cognito-idp.us-east-1.amazonaws.com/{pool}", [stack.outputs["HttpUserPoolClientId"]],
        ["$request.header.Authorization"])
    assert (api.api_id, api.stage) == (stack.outputs["FixtureHttpApiId"], "$default")
    assert api.cors == HttpCors(allow_origins=["http://fixture.example"], allow_methods=["GET", "POST"],
                                allow_headers=["authorization", "content-type"], expose_headers=["x-fixture-route"],
                                max_age_s=600)


def test_http_api_from_route_integration_and_authorizer_resources() -> None:
    # Given an HTTP API built from ApiGatewayV2 resources (no OpenAPI body), on stage "v2"
    with mock_aws():
        stack = provision_in_process(FIXTURES / "provision" / "http_api_resources.yaml")
    [api] = stack.model.http_apis

    # Then its routes, JWT authorizer and stage are the resources'
    assert api.stage == "v2"
    assert [(route.route_key, route.function, route.scopes) for route in api.routes] == [
        ("GET /orders/{id}", "OrdersFunction", ["orders/read"]), ("$default", "OrdersFunction", [])]
    assert api.routes[0].authorizer == HttpAuthorizer(
        name="orders-jwt", issuer="https://issuer.example", audiences=["orders-app"],
        identity_sources=["$request.header.Authorization"])
    assert api.routes[1].authorizer is None
    # And its URL mirrors AWS's invoke URL with the API id in the path
    stack.model.endpoints = Endpoints(host=HOST, rest="http://127.0.0.1:3000", websocket="", web="", aws="",
                                      management="", postgres="")
    assert http_api_urls(stack.model) == {"OrdersApi": f"http://127.0.0.1:3000/{api.api_id}/v2"}


def test_payload_format_1_0_is_refused_by_name() -> None:
    # Given an HTTP API whose integration asks for payload format 1.0
    # When it is provisioned / Then the local cloud refuses it, naming the route and the format
    with mock_aws(), pytest.raises(ProvisionError, match=r"OrdersApi: GET /orders: payloadFormatVersion 1.0"):
        provision_in_process(FIXTURES / "provision" / "http_api_payload_1.yaml")
