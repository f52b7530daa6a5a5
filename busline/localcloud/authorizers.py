"""What API Gateway does before a request reaches a function: Cognito user pool authorizers (the JWT is
checked against the pool's JWKS, which moto serves) and the IAM-policy answer of Lambda authorizers.

Both gateways use this module, so a token or a policy means the same thing on REST and WebSocket.
"""

from __future__ import annotations

import fnmatch
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt

_COGNITO_POOL_ARN_SEPARATOR = ":userpool/"
# API Gateway writes a Cognito authorizer's time claims like Java's Date.toString().
_CLAIM_TIME_FORMAT = "%a %b %d %H:%M:%S UTC %Y"
_TIME_CLAIMS = ("exp", "iat", "auth_time")


class Unauthorized(Exception):
    """API Gateway answers 401 {"message": "Unauthorized"}; the reason is only for the local console."""


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


class CognitoTokens:
    """Verify Cognito JWTs the way a REST API's COGNITO_USER_POOLS authorizer does.

    The signing keys come from the pool's JWKS on the local AWS endpoint (moto), fetched once per pool.
    """

    def __init__(self, aws_endpoint: str, clock: Callable[[], float] = time.time) -> None:
        self._aws_endpoint = aws_endpoint.rstrip("/")
        self._clock = clock
        self._keys: dict[str, jwt.PyJWKClient] = {}
        self._lock = threading.Lock()

    def _key_client(self, pool_id: str) -> jwt.PyJWKClient:
        with self._lock:
            client = self._keys.get(pool_id)
            if client is None:
                url = f"{self._aws_endpoint}/{pool_id}/.well-known/jwks.json"
                client = self._keys[pool_id] = jwt.PyJWKClient(url, cache_keys=True, timeout=10)
            return client

    def verify(self, token: str, provider_arns: list[str], scopes: list[str]) -> dict[str, Any]:
        """The token's claims; Unauthorized if it is not a live token of one of the pools.

        With scopes, API Gateway wants an access token carrying at least one of them; without, an ID token.
        """
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as error:
            raise Unauthorized(f"not a JWT: {error}") from None
        pools = {issuer_of(pool_id_of(arn)): pool_id_of(arn) for arn in provider_arns}
        issuer = unverified.get("iss")
        if issuer not in pools:
            raise Unauthorized(f"issuer {issuer!r} is not a user pool of this authorizer")
        try:
            signing_key = self._key_client(pools[issuer]).get_signing_key_from_jwt(token)
            claims: dict[str, Any] = jwt.decode(
                token, signing_key.key, algorithms=["RS256"], issuer=issuer,
                options={"verify_aud": False, "require": ["exp", "iat", "sub", "token_use"]},
            )  # fmt: skip
        except jwt.PyJWTError as error:
            raise Unauthorized(str(error)) from None
        if claims["exp"] <= self._clock():
            raise Unauthorized("the token has expired")
        if scopes:
            granted = set(str(claims.get("scope", "")).split())
            if claims["token_use"] != "access" or not granted & set(scopes):
                raise Unauthorized(f"an access token with one of the scopes {scopes} is required")
        elif claims["token_use"] != "id":
            raise Unauthorized("an ID token is required (the method has no authorization scopes)")
        return claims


def authorizer_claims(claims: dict[str, Any]) -> dict[str, str]:
    """`requestContext.authorizer.claims` as a REST API hands them to the function: every value a string."""
    shown: dict[str, str] = {}
    for name, value in claims.items():
        if name in _TIME_CLAIMS and isinstance(value, int | float):
            shown[name] = datetime.fromtimestamp(value, UTC).strftime(_CLAIM_TIME_FORMAT)
        elif isinstance(value, list):
            shown[name] = "[" + " ".join(str(item) for item in value) + "]"
        else:
            shown[name] = str(value)
    return shown


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
