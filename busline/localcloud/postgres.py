"""A real PostgreSQL for the local cloud: pgserver's bundled binaries, or the one DATABASE_URL names."""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path

from busline.localcloud.model import LocalCloudError

PG_SUBDIR = "pg"


def start_postgres(data_dir: Path) -> tuple[str, Callable[[], None]]:
    """Return (psycopg URL, stop). With DATABASE_URL set nothing is started and stop does nothing."""
    external = os.environ.get("DATABASE_URL")
    if external:
        return external, lambda: None
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

    return server.get_uri(), stop


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
