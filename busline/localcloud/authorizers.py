"""What API Gateway does before a request reaches a function: JWT checks (a REST API's Cognito user pool
authorizers and an HTTP API's JWT authorizers, both against the issuer's JWKS, which moto serves for a
Cognito pool) and the IAM-policy answer of Lambda authorizers.

The gateways all use this module, so a token or a policy means the same thing on REST, HTTP and WebSocket.
"""

from __future__ import annotations

import fnmatch
import json
import re
import threading
import time
import urllib.request
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt

_COGNITO_POOL_ARN_SEPARATOR = ":userpool/"
_COGNITO_ISSUER = re.compile(r"^https://cognito-idp\.[a-z0-9-]+\.amazonaws\.com/(?P<pool>[\w-]+_[0-9A-Za-z]+)$")
# API Gateway writes a Cognito authorizer's time claims like Java's Date.toString().
_CLAIM_TIME_FORMAT = "%a %b %d %H:%M:%S UTC %Y"
_TIME_CLAIMS = ("exp", "iat", "auth_time")
# API Gateway verifies RSA signatures only (JWT authorizers: "RSA-based algorithms"; Cognito signs RS256).
_SIGNING_ALGORITHMS = ["RS256", "RS384", "RS512"]
_DISCOVERY_TIMEOUT_S = 10


class Unauthorized(Exception):
    """API Gateway answers 401 {"message": "Unauthorized"}; the reason is only for the local console
    (and, on an HTTP API, the WWW-Authenticate header)."""


class Forbidden(Exception):
    """A valid token without any of the route's scopes: an HTTP API answers 403 {"message": "Forbidden"}."""


def bearer_value(header: str) -> str:
    """The token in an Authorization header: raw, or after a `Bearer ` prefix."""
    value = header.strip()
    if value[:7].lower() == "bearer ":
        return value[7:].strip()
    return value


def pool_id_of(arn: str) -> str:
    if _COGNITO_POOL_ARN_SEPARATOR not in arn:
        raise ValueError(f"{arn!r} is not a Cognito user pool ARN")
    return arn.split(_COGNITO_POOL_ARN_SEPARATOR, 1)[1]


def issuer_of(pool_id: str) -> str:
    region = pool_id.split("_", 1)[0]
    return f"https://cognito-idp.{region}.amazonaws.com/{pool_id}"


@dataclass(frozen=True)
class JwtGrant:
    """What an HTTP API's JWT authorizer hands the function: the claims, and the token's scopes when the
    route asks for scopes (None otherwise, as on AWS)."""

    claims: dict[str, Any]
    scopes: list[str] | None


class TokenVerifier:
    """Verify JWTs as API Gateway's authorizers do: signature against the issuer's JWKS, issuer, time claims.

    A Cognito pool's JWKS comes from the local AWS endpoint (moto); any other issuer's from the
    `jwks_uri` of its OpenID discovery document, as API Gateway finds it. Keys are fetched once per issuer.
    """

    def __init__(self, aws_endpoint: str, clock: Callable[[], float] = time.time) -> None:
        self._aws_endpoint = aws_endpoint.rstrip("/")
        self._clock = clock
        self._keys: dict[str, jwt.PyJWKClient] = {}
        self._lock = threading.Lock()

    def _jwks_url(self, issuer: str) -> str:
        cognito = _COGNITO_ISSUER.match(issuer)
        if cognito:
            if not self._aws_endpoint:
                raise Unauthorized("no AWS endpoint serves the user pool's keys")
            return f"{self._aws_endpoint}/{cognito.group('pool')}/.well-known/jwks.json"
        discovery = f"{issuer.rstrip('/')}/.well-known/openid-configuration"
        try:
            with urllib.request.urlopen(discovery, timeout=_DISCOVERY_TIMEOUT_S) as response:  # noqa: S310 - the template's issuer
                return str(json.loads(response.read())["jwks_uri"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise Unauthorized(f"no JWKS for issuer {issuer!r}: {error}") from None

    def _key_client(self, issuer: str) -> jwt.PyJWKClient:
        with self._lock:
            client = self._keys.get(issuer)
        if client is None:
            client = jwt.PyJWKClient(self._jwks_url(issuer), cache_keys=True, timeout=_DISCOVERY_TIMEOUT_S)
            with self._lock:
                client = self._keys.setdefault(issuer, client)
        return client

    def _decode(self, token: str, issuers: Collection[str], required: list[str]) -> dict[str, Any]:
        """The claims of a token signed by one of `issuers` and live now; Unauthorized otherwise."""
        try:
            issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
        except jwt.PyJWTError as error:
            raise Unauthorized(f"not a JWT: {error}") from None
        if issuer not in issuers:
            raise Unauthorized(f"issuer {issuer!r} is not an issuer of this authorizer")
        try:
            signing_key = self._key_client(str(issuer)).get_signing_key_from_jwt(token)
            claims: dict[str, Any] = jwt.decode(
                token, signing_key.key, algorithms=_SIGNING_ALGORITHMS, issuer=issuer,
                options={"verify_aud": False, "require": ["exp", *required]},
            )  # fmt: skip
        except jwt.PyJWTError as error:
            raise Unauthorized(str(error)) from None
        if claims["exp"] <= self._clock():
            raise Unauthorized("the token has expired")
        return claims

    def cognito(self, token: str, provider_arns: list[str], scopes: list[str]) -> dict[str, Any]:
        """A REST API's COGNITO_USER_POOLS authorizer: the claims of a live token of one of the pools.

        With scopes, API Gateway wants an access token carrying at least one of them; without, an ID token.
        """
        issuers = {issuer_of(pool_id_of(arn)) for arn in provider_arns}
        claims = self._decode(token, issuers, ["iat", "sub", "token_use"])
        if scopes:
            if claims["token_use"] != "access" or not set(token_scopes(claims)) & set(scopes):
                raise Unauthorized(f"an access token with one of the scopes {scopes} is required")
        elif claims["token_use"] != "id":
            raise Unauthorized("an ID token is required (the method has no authorization scopes)")
        return claims

    def jwt_authorizer(self, token: str, issuer: str, audiences: list[str], scopes: list[str]) -> JwtGrant:
        """An HTTP API's JWT authorizer: issuer, signature, exp/nbf/iat, then `aud` (or, without one,
        `client_id`) among the audiences; Forbidden if the route has scopes and the token none of them."""
        claims = self._decode(token, {issuer}, [])
        if "aud" in claims:
            audience = claims["aud"]
            presented = set(audience) if isinstance(audience, list) else {audience}
        else:
            presented = {claims.get("client_id")}
        if not presented & set(audiences):
            raise Unauthorized("the token is not meant for an audience of this authorizer")
        granted = token_scopes(claims)
        if scopes and not set(granted) & set(scopes):
            raise Forbidden(f"the token has none of the route's scopes {scopes}")
        return JwtGrant(claims, granted if scopes else None)


def token_scopes(claims: dict[str, Any]) -> list[str]:
    """The scopes a token grants: its `scope` (space-separated) or `scp` claim."""
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            return value.split()
        if isinstance(value, list):
            return [str(item) for item in value]
    return []


def _claim_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + " ".join(_claim_text(item) for item in value) + "]"
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def authorizer_claims(claims: dict[str, Any]) -> dict[str, str]:
    """`requestContext.authorizer.claims` as a REST API hands them to the function: every value a string."""
    shown: dict[str, str] = {}
    for name, value in claims.items():
        if name in _TIME_CLAIMS and isinstance(value, int | float):
            shown[name] = datetime.fromtimestamp(value, UTC).strftime(_CLAIM_TIME_FORMAT)
        else:
            shown[name] = _claim_text(value)
    return shown


def jwt_authorizer_claims(claims: dict[str, Any]) -> dict[str, str]:
    """`requestContext.authorizer.jwt.claims` as an HTTP API hands them over: strings, times as epoch
    seconds ("1612061676"), lists as "[a b]"."""
    return {name: _claim_text(value) for name, value in claims.items()}


# ------------------------------------------------------------------------------------------------------
# Lambda authorizers: the IAM policy they return


def _resource_matches(pattern: str, arn: str) -> bool:
    return pattern == "*" or fnmatch.fnmatchcase(arn, pattern)


def policy_effect(policy: Any, method_arn: str) -> str:
    """"Allow" when an Allow statement matches and no Deny does (IAM's rule), "Deny" on an explicit
    deny, "" when nothing matches (API Gateway refuses that too, with another message)."""
    statements = policy.get("Statement", []) if isinstance(policy, dict) else []
    if isinstance(statements, dict):
        statements = [statements]
    allowed = False
    for statement in statements:
        if not isinstance(statement, dict):
            continue
        resources = statement.get("Resource", [])
        resources = [resources] if isinstance(resources, str) else resources
        if not any(_resource_matches(str(resource), method_arn) for resource in resources):
            continue
        if str(statement.get("Effect", "")).lower() == "deny":
            return "Deny"
        if str(statement.get("Effect", "")).lower() == "allow":
            allowed = True
    return "Allow" if allowed else ""


@dataclass(frozen=True)
class AuthorizerResult:
    principal_id: Any
    policy: Any
    context: dict[str, Any]


class AuthorizerCache:
    """Lambda authorizer answers kept for authorizerResultTtlInSeconds, keyed by the identity sources."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[tuple[str, ...], tuple[float, AuthorizerResult]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[str, ...]) -> AuthorizerResult | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] <= self._clock():
                self._entries.pop(key, None)
                return None
            return entry[1]

    def put(self, key: tuple[str, ...], result: AuthorizerResult, ttl_s: float) -> None:
        if ttl_s <= 0:
            return
        with self._lock:
            self._entries[key] = (self._clock() + ttl_s, result)
