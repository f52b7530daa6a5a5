"""Configuration that lives outside the environment: the database secret and the fault switch.

Both go through Powertools parameters, which cache per warm container (max_age), so a chunk
does not pay a Secrets Manager or SSM call each time.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aws_lambda_powertools.utilities import parameters

from .errors import ConfigurationError

SECRET_MAX_AGE_SECONDS = 300


def database_url(secret_arn: str) -> str:
    """A postgresql:// URL from a secret holding `{"url": ...}` or RDS-style
    `{host, port, username, password, dbname}`."""
    if not secret_arn:
        raise ConfigurationError("DATABASE_SECRET_ARN is empty: no database secret to read")
    secret = parameters.get_secret(secret_arn, transform="json", max_age=SECRET_MAX_AGE_SECONDS)
    if not isinstance(secret, dict):
        raise ConfigurationError(f"secret {secret_arn} is not a JSON object")
    return url_from_secret(secret, secret_arn)


def url_from_secret(secret: dict[str, Any], secret_name: str = "database secret") -> str:
    if secret.get("url"):
        return str(secret["url"])
    missing = [name for name in ("host", "username", "password") if not secret.get(name)]
    if missing:
        raise ConfigurationError(
            f"{secret_name}: needs either 'url' or host/username/password; missing {', '.join(missing)}"
        )
    user = quote(str(secret["username"]), safe="")
    password = quote(str(secret["password"]), safe="")
    port = secret.get("port") or 5432
    dbname = quote(str(secret.get("dbname") or "postgres"), safe="")
    return f"postgresql://{user}:{password}@{secret['host']}:{port}/{dbname}"


def page_token_key(secret_arn: str) -> bytes:
    """The key that signs page tokens (paging.py): the whole value of a secret the stack generates."""
    key = parameters.get_secret(secret_arn, max_age=SECRET_MAX_AGE_SECONDS)
    if not key:
        raise ConfigurationError(f"secret {secret_arn} is empty: no key to sign page tokens with")
    return key.encode() if isinstance(key, str) else bytes(key)


def active_faults(parameter_name: str, *, max_age: int) -> frozenset[str]:
    """The fault switch: "none", or comma-separated "<phase>:fail" entries (e.g. "transform:fail"), as read
    at most once per `max_age` seconds by this container (an SSM read per chunk would be most of its calls)."""
    if not parameter_name:
        return frozenset()
    value = parameters.get_parameter(parameter_name, max_age=max_age) or ""
    entries = {entry.strip().lower() for entry in str(value).split(",")}
    return frozenset(entry for entry in entries if entry and entry != "none")
