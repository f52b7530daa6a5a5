"""Who is calling: the owner of a request, and the check of a Cognito access token.

The REST API's Cognito authorizer verifies tokens before the API function runs; the function only
reads the verified `sub`. WebSocket APIs take no Cognito authorizer, so the $connect authorizer
verifies the same access token here, against the pool's JWKS, before a connection is accepted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import boto3
import jwt

from .errors import NotSignedIn

# The scopes the REST authorizer accepts (template.yaml, RestApi Auth): a person signed in through the
# user pool's own API, or a machine client of the resource server `busline`.
ACCEPTED_SCOPES = frozenset({"aws.cognito.signin.user.admin", "busline/tasks"})
# A verified access token's `sub` owns everything its caller creates; a person's sub is theirs, a
# machine client's sub is its client id.
OWNER_CLAIM = "sub"


class InvalidToken(Exception):
    """Why a token was refused; logged, never shown to the caller (who only learns "Unauthorized")."""


def owner_from_claims(claims: Mapping[str, Any] | None) -> str:
    owner = (claims or {}).get(OWNER_CLAIM)
    if not isinstance(owner, str) or not owner:
        raise NotSignedIn()
    return owner


def issuer_of(user_pool_id: str, region: str) -> str:
    return f"https://cognito-idp.{region}.amazonaws.com/{user_pool_id}"


@dataclass(frozen=True)
class VerifiedToken:
    owner: str
    client_id: str
    username: str
    scopes: frozenset[str]


class AccessTokens:
    """Verify Cognito access tokens of one pool; the signing keys are fetched once per container."""

    def __init__(
        self,
        user_pool_id: str,
        client_ids: Iterable[str],
        keys: jwt.PyJWKClient,
        region: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = issuer_of(user_pool_id, region)
        self._client_ids = frozenset(client for client in client_ids if client)
        self._keys = keys
        self._clock = clock

    @classmethod
    def for_pool(cls, user_pool_id: str, client_ids: Iterable[str]) -> AccessTokens:
        # The JWKS lives beside the Cognito API: wherever boto3 reaches cognito-idp, the keys are there.
        cognito = boto3.client("cognito-idp")
        jwks_url = f"{cognito.meta.endpoint_url.rstrip('/')}/{user_pool_id}/.well-known/jwks.json"
        return cls(user_pool_id, client_ids, jwt.PyJWKClient(jwks_url, cache_keys=True, timeout=5),
                   cognito.meta.region_name)

    def verify(self, token: str) -> VerifiedToken:
        try:
            signing_key = self._keys.get_signing_key_from_jwt(token)
            claims: dict[str, Any] = jwt.decode(
                token, signing_key.key, algorithms=["RS256"], issuer=self.issuer,
                # expiry is checked against self._clock below, so tests and AWS read the same time
                options={"verify_aud": False, "verify_exp": False, "verify_iat": False,
                         "require": ["exp", "iat", "sub", "token_use", "client_id"]},
            )  # fmt: skip
        except jwt.PyJWTError as error:
            raise InvalidToken(str(error)) from None
        if claims["exp"] <= self._clock():
            raise InvalidToken("the token has expired")
        if claims["token_use"] != "access":
            raise InvalidToken(f"an access token is required, got token_use={claims['token_use']!r}")
        if self._client_ids and claims["client_id"] not in self._client_ids:
            raise InvalidToken(f"client {claims['client_id']!r} is not an app client of this stack")
        scopes = frozenset(str(claims.get("scope", "")).split())
        if not scopes & ACCEPTED_SCOPES:
            raise InvalidToken(f"none of the scopes {sorted(ACCEPTED_SCOPES)} was granted")
        return VerifiedToken(
            owner=owner_from_claims(claims),
            client_id=str(claims["client_id"]),
            username=str(claims.get("username", claims["client_id"])),
            scopes=scopes,
        )


def allow_policy(token: VerifiedToken, method_arn: str) -> dict[str, Any]:
    """A Lambda authorizer's answer: allow this connection, and tell every route who it is."""
    return {
        "principalId": token.owner,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": method_arn}],
        },
        "context": {"owner": token.owner, "username": token.username},
    }
