"""A real PostgreSQL for the local cloud: pgserver's bundled binaries, or the one DATABASE_URL names.

The load function does not get the superuser: it connects as LOAD_ROLE, which has only what Busline
needs (the README's "Database role" section lists the same GRANTs for RDS), so the local cloud finds a
missing grant before a deployment does.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote, urlsplit, urlunsplit

from busline.localcloud.model import LocalCloudError

PG_SUBDIR = "pg"
LOAD_ROLE = "busline_load"


class LocalPostgres(NamedTuple):
    url: str  # the administrator's: tests and operators (endpoints.json "postgres")
    load_url: str  # LOAD_ROLE's: what the template's DatabaseUrl gets
    stop: Callable[[], None]


def start_postgres(data_dir: Path, load_password: str | None = None) -> LocalPostgres:
    """Start pgserver in `data_dir` and provision LOAD_ROLE in it (with `load_password`, else a new one).

    With DATABASE_URL set nothing is started, stop does nothing and that URL is used as given for both:
    the local cloud does not create roles or revoke privileges on a server it does not own (point
    DATABASE_URL at a role with the README's grants to run the functions with least privilege there).
    """
    external = os.environ.get("DATABASE_URL")
    if external:
        return LocalPostgres(external, external, lambda: None)
    # pgserver logs every step at INFO and warns about XDG_RUNTIME_DIR; neither helps the user.
    logging.getLogger("pgserver").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    import pgserver  # imported late: it is heavy and not needed when DATABASE_URL is set

    pg_dir = data_dir.resolve() / PG_SUBDIR
    pg_dir.parent.mkdir(parents=True, exist_ok=True)
    _check_reachable_by_pgserver_user(pg_dir)
    _forget_dead_handles(pg_dir)
    try:
        # "stop" keeps the data between runs (delete the folder for a fresh database).
        server = pgserver.get_server(pg_dir, cleanup_mode="stop")
    except Exception as exc:  # initdb/pg_ctl failures surface as several unrelated types
        raise LocalCloudError(f"could not start PostgreSQL in {pg_dir}: {exc} (see {pg_dir / 'log'})") from exc
    stopped = False

    def stop() -> None:
        nonlocal stopped
        if not stopped:
            stopped = True
            server.cleanup()

    url = server.get_uri()
    try:
        load_url = provision_load_role(url, load_password)
    except Exception as exc:  # psycopg's errors, or a URL pgserver shaped differently
        stop()
        raise LocalCloudError(f"could not create the load function's role {LOAD_ROLE}: {exc}") from exc
    return LocalPostgres(url, load_url, stop)


def new_load_password() -> str:
    return secrets.token_urlsafe(24)  # URL- and JSON-safe: it goes into a URL inside the secret's JSON


def provision_load_role(admin_url: str, password: str | None = None) -> str:
    """Create (or refresh) LOAD_ROLE on the server `admin_url` reaches, and return its URL.

    The role may connect to this database, create schemas in it (the `busline` catalog and one per
    owner, which it then owns) and use temporary tables (the COPY staging table); it has nothing on
    `public` and no other grant. Its password is only ever sent as a SCRAM verifier, so it appears in
    no server log; it is new on every start unless the caller keeps one (a restored stack's secret holds
    the URL it was provisioned with: see state.py).
    """
    import psycopg  # imported late: only the local cloud's start needs it here
    from psycopg import sql

    password = password or new_load_password()
    role = sql.Identifier(LOAD_ROLE)
    with psycopg.connect(admin_url, autocommit=True) as connection:
        verifier = connection.pgconn.encrypt_password(password.encode(), LOAD_ROLE.encode(), b"scram-sha-256")
        with connection.transaction():
            exists = connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (LOAD_ROLE,)).fetchone()
            if exists is None:
                connection.execute(sql.SQL("CREATE ROLE {} LOGIN").format(role))
            connection.execute(
                sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(role, sql.Literal(verifier.decode()))
            )
            connection.execute(
                sql.SQL("GRANT CONNECT, CREATE, TEMPORARY ON DATABASE {} TO {}").format(
                    sql.Identifier(connection.info.dbname), role
                )
            )
            # PUBLIC's USAGE on public is the default; without it the role sees nothing there either.
            connection.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
            connection.execute(sql.SQL("REVOKE ALL ON SCHEMA public FROM {}").format(role))
    return _with_user(admin_url, LOAD_ROLE, password)


def _with_user(url: str, user: str, password: str) -> str:
    """`url` with another user and password (pgserver's URLs carry the socket folder in the query)."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError("not a postgresql:// URL")
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"))


def _check_reachable_by_pgserver_user(pg_dir: Path) -> None:
    """Run as root, pgserver runs postgres as its own `pgserver` user, which must reach the data dir.

    initdb would otherwise fail with a bare "Permission denied"; name the folder that blocks it.
    """
    if os.geteuid() != 0:
        return
    for folder in [*reversed(pg_dir.parent.resolve().parents), pg_dir.parent.resolve()]:
        if not os.stat(folder).st_mode & 0o001:
            raise LocalCloudError(
                f"PostgreSQL runs as the 'pgserver' user, which cannot enter {folder} (mode "
                f"{oct(os.stat(folder).st_mode & 0o777)}); pick a --data-dir under a folder others may "
                "enter, or set DATABASE_URL"
            )


def _forget_dead_handles(pg_dir: Path) -> None:
    """Drop pids of processes that no longer exist from pgserver's list of server users.

    pgserver stops the server only when the last process in that list lets go; a `local up` that
    was SIGKILLed never removes itself, and the next run would then leave postgres running forever.
    """
    handles = pg_dir / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and _process_exists(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True
