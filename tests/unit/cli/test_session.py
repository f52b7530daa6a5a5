"""`busline login`, `logout`, `token`: Cognito sign-in against a real moto server, tokens kept per pool in a
file only the user can read, refreshed when near expiry, and the local cloud's demo user as the only
identity ever assumed."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import jwt
import pytest
import typer
from typer.testing import CliRunner

from busline.auth import create_user, new_password
from busline.cli import session
from busline.localcloud.testing import moto_server


@pytest.fixture
def pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A user pool like the template's (app client without a secret) in a moto server on loopback, a demo
    user and alice, and an endpoints.json naming them as `busline local up` writes it."""
    for name in ("BUSLINE_ENDPOINTS", "BUSLINE_API_URL", "AWS_ENDPOINT_URL", "AWS_PROFILE", "BUSLINE_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BUSLINE_TOKENS", str(tmp_path / "config" / "tokens.json"))
    with moto_server() as endpoint:
        cognito = boto3.client("cognito-idp", endpoint_url=endpoint, region_name="us-east-1",
                               aws_access_key_id="testing", aws_secret_access_key="testing")
        pool_id = cognito.create_user_pool(PoolName="busline")["UserPool"]["Id"]
        client_id = cognito.create_user_pool_client(
            UserPoolId=pool_id, ClientName="web", GenerateSecret=False,
            ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
        )["UserPoolClient"]["ClientId"]  # fmt: skip
        demo_password, alice_password = new_password(), new_password()
        demo_sub = create_user(cognito, pool_id, "demo", demo_password)
        alice_sub = create_user(cognito, pool_id, "alice", alice_password)
        endpoints = {
            "rest": "http://127.0.0.1:1", "aws": endpoint, "region": "us-east-1", "outputs": {},
            "auth": {"region": "us-east-1", "cognitoEndpoint": endpoint, "userPoolId": pool_id, "clientId": client_id,
                     "demoUser": {"username": "demo", "password": demo_password, "sub": demo_sub}},
        }  # fmt: skip
        endpoints_file = tmp_path / "endpoints.json"
        endpoints_file.write_text(json.dumps(endpoints))
        yield {"file": endpoints_file, "demo_sub": demo_sub, "alice_sub": alice_sub, "alice_password": alice_password,
               "tokens": tmp_path / "config" / "tokens.json"}


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    session.register(app)
    return app


def sub_of(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["sub"])


def test_on_the_local_cloud_token_signs_in_as_the_demo_user_and_keeps_the_tokens_private(
    cli: typer.Typer, pool: dict[str, Any]
) -> None:
    runner = CliRunner()
    # Given no stored tokens / When a token is asked for twice
    first = runner.invoke(cli, ["token", "--endpoints", str(pool["file"])])
    second = runner.invoke(cli, ["token", "--endpoints", str(pool["file"])])
    # Then it is the demo user's, the same both times (kept, not signed in again), in a 0600 file
    assert first.exit_code == 0, first.output
    assert sub_of(first.stdout.strip()) == pool["demo_sub"]
    assert second.stdout == first.stdout
    assert stat.S_IMODE(pool["tokens"].stat().st_mode) == 0o600


def test_login_as_another_user_then_logout(cli: typer.Typer, pool: dict[str, Any]) -> None:
    runner = CliRunner()
    # When alice signs in
    login = runner.invoke(cli, ["login", "--endpoints", str(pool["file"]), "--username", "alice",
                                "--password", pool["alice_password"]])
    # Then every later command acts as alice
    assert login.exit_code == 0, login.output
    token = runner.invoke(cli, ["token", "--endpoints", str(pool["file"])]).stdout.strip()
    assert sub_of(token) == pool["alice_sub"]
    # When she signs out / Then the next command is the demo user's again (local cloud only)
    assert runner.invoke(cli, ["logout", "--endpoints", str(pool["file"])]).stdout.startswith("signed out")
    token = runner.invoke(cli, ["token", "--endpoints", str(pool["file"])]).stdout.strip()
    assert sub_of(token) == pool["demo_sub"]


def test_a_wrong_password_is_refused_and_nothing_is_stored(cli: typer.Typer, pool: dict[str, Any]) -> None:
    # When alice signs in with a wrong password
    result = CliRunner().invoke(cli, ["login", "--endpoints", str(pool["file"]), "--username", "alice",
                                      "--password", "Not-her-password-1"])
    # Then the CLI says so and exits 1, storing nothing
    assert result.exit_code == 1
    assert "sign-in as alice refused" in result.output
    assert not pool["tokens"].exists()


def test_a_token_near_expiry_is_refreshed(cli: typer.Typer, pool: dict[str, Any]) -> None:
    runner = CliRunner()
    # Given alice's stored tokens, aged to expire in 30 s (inside the refresh margin)
    runner.invoke(cli, ["login", "--endpoints", str(pool["file"]), "-u", "alice", "--password", pool["alice_password"]])
    store = json.loads(pool["tokens"].read_text())
    [(key, tokens)] = store.items()
    old_access = tokens["access_token"]
    tokens["expires_at"] = tokens["expires_at"] - 3600 + 30
    pool["tokens"].write_text(json.dumps(store))
    # When a token is asked for
    token = runner.invoke(cli, ["token", "--endpoints", str(pool["file"])]).stdout.strip()
    # Then a new access token of alice's came from the refresh token, and was stored with it
    assert token != old_access
    assert sub_of(token) == pool["alice_sub"]
    refreshed = json.loads(pool["tokens"].read_text())[key]
    assert (refreshed["access_token"], refreshed["refresh_token"]) == (token, tokens["refresh_token"])


def test_a_deployed_stack_never_assumes_anyone(cli: typer.Typer, pool: dict[str, Any], tmp_path: Path) -> None:
    # Given the same pool described as a remote deployment (its AWS endpoint is not on loopback)
    endpoints = json.loads(pool["file"].read_text())
    endpoints["aws"] = "https://aws.example.invalid"
    remote = tmp_path / "remote.json"
    remote.write_text(json.dumps(endpoints))
    # When a token is asked for without a login / Then the CLI asks the user to sign in
    result = CliRunner().invoke(cli, ["token", "--endpoints", str(remote)])
    assert result.exit_code == 1
    message = " ".join(result.output.split())  # rich wraps long lines
    assert message == f"not signed in to endpoints file {remote}: run `busline login`"
