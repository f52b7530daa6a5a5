"""`busline login`, `busline logout`, `busline token`, and the tokens every other command sends.

Tokens are kept per user pool and app client in one file readable only by the user
($BUSLINE_TOKENS, else ~/.config/busline/tokens.json). A command refreshes an access token that is
about to expire with the stored refresh token; on the local cloud, a command run before any login
signs in as the cloud's demo user, the only identity ever assumed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from busline.auth import SignInError, Tokens, UserPool, refresh, sign_in
from busline.cli.endpoints import (
    Deployment,
    EndpointsError,
    EndpointsOption,
    RegionOption,
    StackOption,
    resolve,
)

err_console = Console(stderr=True)
EXIT_FAILED = 1


class NotSignedIn(Exception):
    """No stored tokens for this deployment and none can be obtained without the user."""


def tokens_file() -> Path:
    configured = os.environ.get("BUSLINE_TOKENS")
    if configured:
        return Path(configured)
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "busline" / "tokens.json"


def _key(pool: UserPool) -> str:
    return f"{pool.region}/{pool.user_pool_id}/{pool.client_id}"


def _read_store() -> dict[str, Any]:
    try:
        data = json.loads(tokens_file().read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_store(data: dict[str, Any]) -> None:
    path = tokens_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as stream:
        json.dump(data, stream, indent=2)
    os.replace(temporary, path)


def save(pool: UserPool, tokens: Tokens) -> None:
    store = _read_store()
    store[_key(pool)] = tokens.to_json()
    _write_store(store)


def forget(pool: UserPool) -> bool:
    store = _read_store()
    if store.pop(_key(pool), None) is None:
        return False
    _write_store(store)
    return True


def access_token(deployment: Deployment) -> str | None:
    """A fresh access token for the deployment; None when it has no user pool (an open API)."""
    pool = deployment.user_pool
    if pool is None:
        return None
    stored = _read_store().get(_key(pool))
    if stored:
        tokens = Tokens.from_json(stored)
        if tokens.fresh:
            return tokens.access_token
        if tokens.refresh_token:
            try:
                tokens = refresh(pool, tokens)
            except SignInError:
                pass
            else:
                save(pool, tokens)
                return tokens.access_token
    if deployment.is_local and deployment.demo_user:
        tokens = sign_in(pool, *deployment.demo_user)
        save(pool, tokens)
        return tokens.access_token
    where = f" --stack {deployment.origin.removeprefix('stack ')}" if deployment.origin.startswith("stack ") else ""
    raise NotSignedIn(f"not signed in to {deployment.origin}: run `busline login{where}`")


def _deployment(endpoints: Path | None, stack: str | None, region: str | None) -> Deployment:
    try:
        deployment = resolve(endpoints_file=endpoints, stack=stack, region=region)
    except EndpointsError as error:
        err_console.print(str(error), style="red", markup=False)
        raise typer.Exit(EXIT_FAILED) from None
    if deployment.user_pool is None:
        err_console.print(f"{deployment.origin} has no user pool (no UserPoolId/UserPoolClientId): nothing to sign in to",
                          style="red", markup=False)
        raise typer.Exit(EXIT_FAILED)
    return deployment


def login(
    username: Annotated[str | None, typer.Option("--username", "-u", help="Default: the local cloud's demo user.")] = None,
    password: Annotated[str | None, typer.Option("--password", envvar="BUSLINE_PASSWORD",
                                                 help="Asked for when not given.")] = None,
    endpoints: EndpointsOption = None,
    stack: StackOption = None,
    region: RegionOption = None,
) -> None:
    """Sign in (Cognito USER_PASSWORD_AUTH) and keep the tokens for every other command."""
    deployment = _deployment(endpoints, stack, region)
    assert deployment.user_pool is not None
    if username is None and deployment.demo_user:
        username, demo_password = deployment.demo_user
        password = password or demo_password
    if username is None:
        username = typer.prompt("username")
    if password is None:
        password = typer.prompt("password", hide_input=True)
    try:
        tokens = sign_in(deployment.user_pool, username, password)
    except SignInError as error:
        err_console.print(str(error), style="red", markup=False)
        raise typer.Exit(EXIT_FAILED) from None
    save(deployment.user_pool, tokens)
    typer.echo(f"signed in to {deployment.origin} as {username}; tokens in {tokens_file()}")


def logout(endpoints: EndpointsOption = None, stack: StackOption = None, region: RegionOption = None) -> None:
    """Forget the stored tokens of this deployment."""
    deployment = _deployment(endpoints, stack, region)
    assert deployment.user_pool is not None
    forgotten = forget(deployment.user_pool)
    typer.echo(f"signed out of {deployment.origin}" if forgotten else f"not signed in to {deployment.origin}")


def token(endpoints: EndpointsOption = None, stack: StackOption = None, region: RegionOption = None) -> None:
    """Print a fresh access token (for curl's Authorization header or the WebSocket's ?token=)."""
    deployment = _deployment(endpoints, stack, region)
    try:
        value = access_token(deployment)
    except (NotSignedIn, SignInError) as error:
        err_console.print(str(error), style="red", markup=False)
        raise typer.Exit(EXIT_FAILED) from None
    typer.echo(value)


def register(app: typer.Typer) -> None:
    app.command("login")(login)
    app.command("logout")(logout)
    app.command("token")(token)
