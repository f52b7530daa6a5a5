"""The WebSocket $connect authorizer's token check (busline_core.identity), with tokens signed by a test
key and served through a real PyJWKClient from a JWKS of that key."""

from __future__ import annotations

import json
from typing import Any

import jwt
import pytest
from busline_core.errors import NotSignedIn
from busline_core.identity import AccessTokens, InvalidToken, allow_policy, owner_from_claims
from cryptography.hazmat.primitives.asymmetric import rsa

POOL = "us-east-1_TestPool1"
ISSUER = f"https://cognito-idp.us-east-1.amazonaws.com/{POOL}"
WEB_CLIENT, MACHINE_CLIENT = "webclient123", "machineclient456"
NOW = 1_800_000_000
METHOD_ARN = "arn:aws:execute-api:us-east-1:123456789012:abc123/dev/$connect"


def _key() -> Any:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


POOL_KEY, STRANGER_KEY = _key(), _key()


class StaticJwks(jwt.PyJWKClient):
    """PyJWKClient's own key selection, fed the pool's JWKS instead of fetching it."""

    def __init__(self, public_key: Any) -> None:
        super().__init__("https://cognito-idp.us-east-1.amazonaws.com/unused/.well-known/jwks.json")
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(public_key))
        self._jwks = {"keys": [{**jwk, "kid": "pool-key", "alg": "RS256", "use": "sig"}]}

    def fetch_data(self) -> Any:
        return self._jwks


def token(key: Any = POOL_KEY, **overrides: Any) -> str:
    claims = {
        "sub": "alice-sub", "iss": ISSUER, "client_id": WEB_CLIENT, "token_use": "access",
        "scope": "aws.cognito.signin.user.admin", "iat": NOW - 60, "exp": NOW + 3600, "username": "alice",
    }  # fmt: skip
    claims.update(overrides)
    claims = {name: value for name, value in claims.items() if value is not None}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "pool-key"})


@pytest.fixture
def tokens() -> AccessTokens:
    return AccessTokens(POOL, [WEB_CLIENT, MACHINE_CLIENT], StaticJwks(POOL_KEY.public_key()), "us-east-1",
                        clock=lambda: NOW)


def test_a_users_and_a_machines_access_tokens_are_accepted(tokens: AccessTokens) -> None:
    # Given a person's access token and a machine client's (client credentials: sub is the client id)
    person = token()
    machine = token(sub=MACHINE_CLIENT, client_id=MACHINE_CLIENT, scope="busline/tasks", username=None)
    # When each is verified / Then each owner is its sub
    assert tokens.verify(person).owner == "alice-sub"
    assert tokens.verify(machine).owner == MACHINE_CLIENT
    # And the authorizer's answer allows exactly this connection and names the owner for every route
    assert allow_policy(tokens.verify(person), METHOD_ARN) == {
        "principalId": "alice-sub",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": METHOD_ARN}],
        },
        "context": {"owner": "alice-sub", "username": "alice"},
    }


@pytest.mark.parametrize(
    ("case", "forged"),
    [
        ("signed by another key", token(STRANGER_KEY)),
        ("tampered payload", token()[:-10] + "AAAAAAAAAA"),
        ("expired", token(exp=NOW)),
        ("another pool", token(iss="https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Other")),
        ("an ID token", token(token_use="id")),
        ("another app client", token(client_id="someone-elses-client")),
        ("no accepted scope", token(scope="openid email")),
        ("no sub", token(sub=None)),
        ("not a JWT", "not-a-token"),
        ("empty", ""),
    ],
)
def test_every_bad_token_is_refused(tokens: AccessTokens, case: str, forged: str) -> None:
    # Given a token that is wrong in one way / When it is verified / Then it is refused
    with pytest.raises(InvalidToken):
        tokens.verify(forged)


def test_the_owner_is_the_verified_sub_and_never_a_default() -> None:
    # Given the claims a Cognito authorizer hands the API / Then the owner is their sub
    assert owner_from_claims({"sub": "alice-sub", "username": "alice"}) == "alice-sub"
    # And without claims (no authorizer in front of the API) nobody is assumed
    for missing in (None, {}, {"sub": ""}, {"username": "alice"}):
        with pytest.raises(NotSignedIn):
            owner_from_claims(missing)


def test_the_handler_answers_unauthorized_for_a_refused_token(
    monkeypatch: pytest.MonkeyPatch, tokens: AccessTokens
) -> None:
    # Given the authorizer function with the test pool's keys
    import importlib
    import sys
    from pathlib import Path

    monkeypatch.setenv("USER_POOL_ID", POOL)
    monkeypatch.setenv("USER_POOL_CLIENT_IDS", f"{WEB_CLIENT},{MACHINE_CLIENT}")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[3] / "src" / "progress"))
    sys.modules.pop("authorizer", None)
    authorizer = importlib.import_module("authorizer")
    monkeypatch.setattr(authorizer, "tokens", tokens)
    event = json.loads((Path(__file__).resolve().parents[3] / "events" / "ws_authorizer.json").read_text())
    context = _Context()
    # When the sample event (a forged token) comes in / Then API Gateway's "Unauthorized" is raised
    with pytest.raises(Exception, match="^Unauthorized$"):
        authorizer.lambda_handler(event, context)
    # When a valid token comes in / Then the connection is allowed for its owner
    event["queryStringParameters"]["token"] = token()
    assert authorizer.lambda_handler(event, context)["principalId"] == "alice-sub"
    sys.modules.pop("authorizer", None)


class _Context:
    function_name = "busline-WebSocketAuthorizerFunction"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:busline-WebSocketAuthorizerFunction"
    aws_request_id = "0f0c2a44-6a1b-4d3e-8f2a-1c3b5d7e9f01"
