"""HTTP API (SAM AWS::Serverless::HttpApi): payload format 2.0 events and responses, the JWT authorizer on
the fixture's Cognito pool, CORS, binary bodies and AWS's own answers, each checked against AWS's rules.

AWS's rules: "Create AWS Lambda proxy integrations for HTTP APIs"
(https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html),
"Control access to HTTP APIs with JWT authorizers"
(https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-jwt-authorizer.html),
"Configuring CORS for an HTTP API" (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-cors.html).
"""

from __future__ import annotations

import base64
from typing import Any

import boto3
import pytest
from conformance_support import Aws, http

from busline.auth import Tokens, UserPool, create_user, new_password, sign_in
from busline.localcloud.testing import RunningCloud

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

BINARY_PAYLOAD = b"\x00\x01http-api\xfe\xff"  # what functions/http_api.py returns base64-encoded
ORIGIN = "http://fixture.example"  # the HttpApi's CorsConfiguration allows this origin only


@pytest.fixture(scope="module")
def api_url(cloud: RunningCloud) -> str:
    return str(cloud.endpoints["httpApis"]["FixtureHttpApi"])


@pytest.fixture(scope="module")
def user(cloud: RunningCloud, aws: Aws) -> tuple[str, Tokens]:
    """A user of the HttpApi's Cognito pool, signed in as any client would: (sub, tokens)."""
    pool = UserPool(aws.outputs["HttpUserPoolId"], aws.outputs["HttpUserPoolClientId"], cloud.endpoints["region"],
                    cloud.endpoints["aws"])
    cognito = boto3.client("cognito-idp", endpoint_url=cloud.endpoints["aws"], region_name=cloud.endpoints["region"],
                           aws_access_key_id="testing", aws_secret_access_key="testing")
    password = new_password()
    sub = create_user(cognito, pool.user_pool_id, "http-api-user", password)
    return sub, sign_in(pool, "http-api-user", password)


def test_event_is_payload_format_2_0_with_the_jwt_claims(cloud: RunningCloud, aws: Aws, api_url: str,
                                                          user: tuple[str, Tokens], run_id: str) -> None:
    """AWS: the 2.0 event has rawPath, rawQueryString, cookies, lower-case headers with duplicates joined by
    commas, queryStringParameters (joined likewise), pathParameters, requestContext.http and, behind a
    JWT authorizer, requestContext.authorizer.jwt {claims, scopes}; a result without statusCode is a 200
    application/json body."""
    # Given a signed-in user's access token and GET /items/{id}, which needs the scope it carries
    sub, tokens = user
    headers = {"Authorization": f"Bearer {tokens.access_token}", "Cookie": "session=abc; theme=dark",
               "X-Run-Id": run_id, "User-Agent": "conformance/1"}

    # When it is called with a repeated query parameter (the function returns its event as the result)
    response = http("GET", f"{api_url}/items/42?tag=a&tag=b", headers=headers)

    # Then the answer is a 200 JSON body: the event, shaped as AWS shapes it
    assert (response.status, response.headers["Content-Type"]) == (200, "application/json")
    event: dict[str, Any] = response.json()
    assert {key: event[key] for key in ("version", "routeKey", "rawPath", "rawQueryString", "cookies",
                                        "queryStringParameters", "pathParameters", "isBase64Encoded")} == {
        "version": "2.0", "routeKey": "GET /items/{id}", "rawPath": "/items/42", "rawQueryString": "tag=a&tag=b",
        "cookies": ["session=abc", "theme=dark"], "queryStringParameters": {"tag": "a,b"},
        "pathParameters": {"id": "42"}, "isBase64Encoded": False,
    }
    assert "body" not in event
    assert (event["headers"]["x-run-id"], event["headers"]["user-agent"], "cookie" in event["headers"]) == (
        run_id, "conformance/1", False)
    context = event["requestContext"]
    assert context["http"] == {"method": "GET", "path": "/items/42", "protocol": "HTTP/1.1",
                               "sourceIp": "127.0.0.1", "userAgent": "conformance/1"}
    assert (context["apiId"], context["stage"], context["routeKey"]) == (
        aws.outputs["FixtureHttpApiId"], "$default", "GET /items/{id}")
    assert context["requestId"] == response.headers["apigw-requestid"]
    # And the authorizer's claims are the access token's, as strings, with the token's scopes
    claims = context["authorizer"]["jwt"]["claims"]
    assert (claims["sub"], claims["client_id"], claims["token_use"]) == (
        sub, aws.outputs["HttpUserPoolClientId"], "access")
    assert claims["exp"].isdigit()
    assert context["authorizer"]["jwt"]["scopes"] == ["aws.cognito.signin.user.admin"]


def test_jwt_authorizer_answers_401_and_403_before_the_function(cloud: RunningCloud, aws: Aws, api_url: str,
                                                                 user: tuple[str, Tokens], run_id: str) -> None:
    """AWS: no token, or one that fails a check (signature, issuer, audience, expiry) is 401
    {"message":"Unauthorized"}; a valid token with none of the route's authorizationScopes is 403
    {"message":"Forbidden"} (an ID token carries no scope); the function never runs."""
    # Given the user's tokens, and a token whose signature is not the pool's
    _, tokens = user
    header, claims, _ = tokens.access_token.split(".")
    forged = f"{header}.{claims}.{base64.urlsafe_b64encode(b'not the signature').decode().rstrip('=')}"
    run = {"X-Run-Id": run_id}

    # When protected routes are called with each
    answers = [
        http("GET", f"{api_url}/items/1", headers=run),
        http("GET", f"{api_url}/items/1", headers={**run, "Authorization": "Bearer not-a-jwt"}),
        http("GET", f"{api_url}/items/1", headers={**run, "Authorization": f"Bearer {forged}"}),
        http("GET", f"{api_url}/items/1", headers={**run, "Authorization": f"Bearer {tokens.id_token}"}),
        http("GET", f"{api_url}/admin", headers={**run, "Authorization": f"Bearer {tokens.access_token}"}),
    ]

    # Then API Gateway's answers come back, and no invocation was recorded for this run
    assert [(answer.status, answer.json()) for answer in answers] == [
        (401, {"message": "Unauthorized"}),
        (401, {"message": "Unauthorized"}),
        (401, {"message": "Unauthorized"}),
        (403, {"message": "Forbidden"}),
        (403, {"message": "Forbidden"}),
    ]
    assert answers[4].headers["www-authenticate"] == 'Bearer scope="fixture/admin" error="insufficient_scope"'
    assert aws.records(f"http-api#{run_id}") == []


def test_response_rules_cookies_cors_and_binary_bodies(api_url: str, run_id: str) -> None:
    """AWS: the function's cookies each become a set-cookie header; with a CorsConfiguration API Gateway
    answers preflights itself and its CORS headers replace the function's; binary request bodies arrive
    base64-encoded; isBase64Encoded results are decoded (HTTP APIs have no binaryMediaTypes)."""
    # Given the open POST /echo route (whose function also sets its own CORS header) and ANY /files/{proxy+}
    run = {"X-Run-Id": run_id}

    # When a browser sends a preflight, then a binary and a JSON body, and a file is fetched
    preflight = http("OPTIONS", f"{api_url}/echo", headers={
        **run, "Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
    binary = http("POST", f"{api_url}/echo", b"\x00\xff",
                  {**run, "Origin": ORIGIN, "Content-Type": "application/octet-stream"})
    text = http("POST", f"{api_url}/echo", b'{"n": 1}', {**run, "Content-Type": "application/json"})
    file = http("GET", f"{api_url}/files/a/b.bin", headers=run)

    # Then the preflight is API Gateway's own 204 with the configured CORS settings
    assert preflight.status == 204
    assert {name.lower(): value for name, value in preflight.headers.items()
            if name.lower().startswith("access-control-")} == {
        "access-control-allow-origin": ORIGIN, "access-control-allow-methods": "GET,POST",
        "access-control-allow-headers": "authorization,content-type", "access-control-max-age": "600",
    }
    # And the function's answer came back with its status, header and two cookies, the API's CORS headers
    assert (binary.status, binary.headers["x-fixture-route"]) == (201, "POST /echo")
    assert binary.headers.get_all("Set-Cookie") == ["session=abc; Path=/", "theme=dark"]
    assert binary.headers.get_all("access-control-allow-origin") == [ORIGIN]
    assert binary.headers["access-control-expose-headers"] == "x-fixture-route"
    # And the binary body reached it base64-encoded, the JSON one as text
    assert binary.json() == {"body": base64.b64encode(b"\x00\xff").decode(), "isBase64Encoded": True}
    assert text.json() == {"body": '{"n": 1}', "isBase64Encoded": False}
    # And the base64 result reached the client as its bytes
    assert (file.status, file.headers["Content-Type"], file.body) == (200, "application/octet-stream",
                                                                      BINARY_PAYLOAD)


def test_default_route_bare_string_results_and_failures(api_url: str) -> None:
    """AWS: $default takes what no route matches; a bare string result is the body of a 200
    application/json; a failing function is 500 {"message":"Internal Server Error"}."""
    # Given the $default route (returns a string) and GET /fail (raises)
    # When a path of no route and the failing route are called
    unrouted = http("GET", f"{api_url}/no/such/route")
    failed = http("GET", f"{api_url}/fail")

    # Then $default answered with the string as it is, and the failure is API Gateway's generic 500
    assert (unrouted.status, unrouted.headers["Content-Type"], unrouted.body) == (
        200, "application/json", b"no route for /no/such/route")
    assert (failed.status, failed.json()) == (500, {"message": "Internal Server Error"})
    assert b"secret" not in failed.body
