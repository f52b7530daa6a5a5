"""The user pool domain's OAuth2 token endpoint, for machine clients (client-credentials grant).

moto implements Cognito's API (users, InitiateAuth, JWKS) but not the hosted domain's
`/oauth2/token`. This endpoint answers it as Cognito does: it checks the app client and its secret in
moto, grants only scopes the client is allowed, and signs the access token with the key whose public
half moto serves as the pool's JWKS, so every verifier (the REST gateway, the WebSocket authorizer)
accepts it exactly like a token from AWS.
"""

from __future__ import annotations

import base64
import binascii
import functools
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from botocore.exceptions import ClientError

from busline.localcloud.http_io import HttpServerThread, JsonResponder

TOKEN_PATH = "/oauth2/token"
MAX_FORM_BYTES = 16 * 1024
# moto signs every pool's tokens with this key (kid "dummy"); its public half is the JWKS it serves
_MOTO_PRIVATE_JWKS = "cognitoidp/resources/jwks-private.json"


@functools.cache
def _signing_key() -> tuple[Any, str]:
    from moto.utilities.utils import load_resource  # the local cloud's moto, never deployed code

    private = load_resource(_MOTO_PRIVATE_JWKS)
    jwk = private["keys"][0] if "keys" in private else private
    return jwt.PyJWK(jwk).key, str(jwk.get("kid", "dummy"))


def sign_as_the_pool(claims: dict[str, Any]) -> str:
    """A JWT signed exactly as the local pools sign theirs; tests forge expired or foreign tokens with it."""
    key, kid = _signing_key()
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


class TokenEndpoint:
    WHAT = "Cognito OAuth2 token endpoint"

    def __init__(self, cognito: Any, region: str, host: str, port: int) -> None:
        self._cognito = cognito
        self._region = region
        self._server = HttpServerThread(host, port, self._handler_class(), self.WHAT)

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop()

    def _client(self, client_id: str) -> dict[str, Any] | None:
        for pool in self._cognito.list_user_pools(MaxResults=60)["UserPools"]:
            try:
                return dict(self._cognito.describe_user_pool_client(
                    UserPoolId=pool["Id"], ClientId=client_id)["UserPoolClient"])
            except ClientError:
                continue
        return None

    def issue(self, client_id: str, client_secret: str, grant_type: str, scope: str) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body) exactly as Cognito's token endpoint words its errors."""
        if grant_type != "client_credentials":
            return 400, {"error": "unsupported_grant_type"}
        client = self._client(client_id) if client_id else None
        if client is None or not client.get("ClientSecret") or client["ClientSecret"] != client_secret:
            return 400, {"error": "invalid_client"}
        if "client_credentials" not in (client.get("AllowedOAuthFlows") or []):
            return 400, {"error": "unauthorized_client"}
        allowed = list(client.get("AllowedOAuthScopes") or [])
        requested = scope.split() if scope else allowed
        if not requested or any(item not in allowed for item in requested):
            return 400, {"error": "invalid_scope"}
        lifetime = _access_token_seconds(client)
        now = int(time.time())
        pool_id = str(client["UserPoolId"])
        claims = {
            "sub": client_id,
            "token_use": "access",
            "scope": " ".join(requested),
            "auth_time": now,
            "iss": f"https://cognito-idp.{pool_id.split('_', 1)[0]}.amazonaws.com/{pool_id}",
            "exp": now + lifetime,
            "iat": now,
            "version": 2,
            "jti": str(uuid.uuid4()),
            "client_id": client_id,
        }
        token = sign_as_the_pool(claims)
        return 200, {"access_token": token, "expires_in": lifetime, "token_type": "Bearer"}

    def _handler_class(self) -> type[JsonResponder]:
        endpoint = self

        class TokenHandler(JsonResponder):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                if urlsplit(self.path).path != TOKEN_PATH:
                    self.send_json(404, {"error": "not_found"}, close=self.has_body())
                    return
                raw = self.read_body(MAX_FORM_BYTES)
                if raw is None:
                    self.send_json(413, {"error": "invalid_request"}, close=True)
                    return
                form = {name: values[0] for name, values in parse_qs(raw.decode(errors="replace")).items()}
                client_id, client_secret = _basic_credentials(self.headers.get("Authorization", ""))
                client_id = client_id or form.get("client_id", "")
                client_secret = client_secret or form.get("client_secret", "")
                status, body = endpoint.issue(client_id, client_secret, form.get("grant_type", ""),
                                              form.get("scope", ""))
                self.send_json(status, body, [("Cache-Control", "no-store")])

        return TokenHandler


def _basic_credentials(header: str) -> tuple[str, str]:
    if not header.lower().startswith("basic "):
        return "", ""
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    client_id, _, secret = decoded.partition(":")
    return client_id, secret


def _access_token_seconds(client: dict[str, Any]) -> int:
    validity = int(client.get("AccessTokenValidity") or 60)
    unit = (client.get("TokenValidityUnits") or {}).get("AccessToken", "hours")
    return validity * {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}.get(unit, 3600)
