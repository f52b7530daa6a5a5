"""Signing in to a Busline stack's Cognito User Pool, as any AWS client would.

Tokens come from Cognito's own API (InitiateAuth with USER_PASSWORD_AUTH; the app client has no
secret), on AWS or against the local cloud's AWS endpoint, so code written here works unchanged on
both. The CLI, the bench and the tests all sign in through this module.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

# A token this close to its expiry is refreshed first: a request must not fail halfway through.
REFRESH_MARGIN_S = 60


class SignInError(Exception):
    """Wrong username or password, an unknown client, or a refresh token that no longer works."""


@dataclass(frozen=True)
class Tokens:
    access_token: str
    id_token: str
    refresh_token: str
    expires_at: float  # epoch seconds

    @property
    def fresh(self) -> bool:
        return time.time() < self.expires_at - REFRESH_MARGIN_S

    @property
    def authorization(self) -> str:
        """The Authorization header value (REST) and the `token` query parameter (WebSocket)."""
        return self.access_token

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Tokens:
        return cls(str(data["access_token"]), str(data.get("id_token", "")), str(data.get("refresh_token", "")),
                   float(data["expires_at"]))


@dataclass(frozen=True)
class UserPool:
    """Where to sign in: the pool, its app client without a secret, and the Cognito endpoint."""

    user_pool_id: str
    client_id: str
    region: str
    endpoint: str | None = None  # None: the real AWS endpoint

    def client(self) -> Any:
        kwargs: dict[str, Any] = {"region_name": self.region, "config": Config(retries={"max_attempts": 2})}
        if self.endpoint:
            # the local cloud's moto accepts any key; fixed dummies also spare a credential-chain lookup
            kwargs |= {"endpoint_url": self.endpoint, "aws_access_key_id": "testing",
                       "aws_secret_access_key": "testing"}
        return boto3.client("cognito-idp", **kwargs)

    @classmethod
    def from_endpoints(cls, endpoints: dict[str, Any]) -> UserPool:
        """The `auth` section `busline local up` writes into endpoints.json."""
        auth = endpoints.get("auth") or {}
        if not auth.get("userPoolId") or not auth.get("clientId"):
            raise SignInError("endpoints.json has no 'auth' section: the template creates no user pool")
        return cls(str(auth["userPoolId"]), str(auth["clientId"]), str(auth.get("region") or endpoints["region"]),
                   str(auth.get("cognitoEndpoint") or endpoints.get("aws") or "") or None)


def sign_in(pool: UserPool, username: str, password: str) -> Tokens:
    try:
        result = pool.client().initiate_auth(
            AuthFlow="USER_PASSWORD_AUTH", ClientId=pool.client_id,
            AuthParameters={"USERNAME": username, "PASSWORD": password},
        )  # fmt: skip
    except ClientError as error:
        raise SignInError(f"sign-in as {username} refused: {error.response['Error'].get('Message', error)}") from None
    if "AuthenticationResult" not in result:
        raise SignInError(f"sign-in as {username} needs the challenge {result.get('ChallengeName')}: "
                          "set a permanent password first (admin-set-user-password --permanent)")
    return _tokens(result["AuthenticationResult"])


def refresh(pool: UserPool, tokens: Tokens) -> Tokens:
    try:
        result = pool.client().initiate_auth(
            AuthFlow="REFRESH_TOKEN_AUTH", ClientId=pool.client_id,
            AuthParameters={"REFRESH_TOKEN": tokens.refresh_token},
        )  # fmt: skip
    except ClientError as error:
        raise SignInError(f"refresh refused: {error.response['Error'].get('Message', error)}") from None
    # Cognito does not return a new refresh token on refresh: keep the one we have.
    return _tokens({**result["AuthenticationResult"], "RefreshToken": tokens.refresh_token})


def _tokens(result: dict[str, Any]) -> Tokens:
    return Tokens(
        access_token=str(result["AccessToken"]),
        id_token=str(result.get("IdToken", "")),
        refresh_token=str(result.get("RefreshToken", "")),
        expires_at=time.time() + int(result.get("ExpiresIn", 3600)),
    )


def new_password() -> str:
    """Random and meeting the template's password policy (upper, lower, digit, 12+)."""
    return "Bl1-" + secrets.token_urlsafe(18)


def create_user(cognito: Any, user_pool_id: str, username: str, password: str) -> str:
    """An operator's two calls (admin-create-user, admin-set-user-password --permanent); returns the sub."""
    try:
        created = cognito.admin_create_user(UserPoolId=user_pool_id, Username=username, MessageAction="SUPPRESS")
        attributes = created["User"].get("Attributes", [])
    except cognito.exceptions.UsernameExistsException:
        attributes = cognito.admin_get_user(UserPoolId=user_pool_id, Username=username)["UserAttributes"]
    cognito.admin_set_user_password(UserPoolId=user_pool_id, Username=username, Password=password, Permanent=True)
    return next(str(attribute["Value"]) for attribute in attributes if attribute["Name"] == "sub")


def client_credentials(token_url: str, client_id: str, client_secret: str, scope: str) -> Tokens:
    """A machine client's access token from the pool's OAuth2 token endpoint."""
    basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
    request = urllib.request.Request(
        token_url, method="POST",
        data=urllib.parse.urlencode({"grant_type": "client_credentials", "scope": scope}).encode(),
        headers={"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            result = json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise SignInError(f"token endpoint refused: HTTP {error.code} {error.read().decode(errors='replace')}") from None
    return Tokens(str(result["access_token"]), "", "", time.time() + int(result.get("expires_in", 3600)))
