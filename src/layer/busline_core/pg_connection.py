"""One Postgres connection per warm Lambda container: opened on first use, replaced once it breaks, and
used by one caller at a time (Lambda runs one invocation per container, but the local cloud and tests
may share an instance between threads, and transactions must not interleave on one connection)."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import psycopg


class LazyConnection:
    def __init__(self, database_url: str, *, application_name: str, connect_timeout: int) -> None:
        self._database_url = database_url
        self._application_name = application_name
        self._connect_timeout = connect_timeout
        self._connection: psycopg.Connection[Any] | None = None
        self.lock = threading.Lock()  # held by the caller around each use of `get()`'s connection

    def get(self) -> psycopg.Connection[Any]:
        """The open connection, or a new one (psycopg.Error when it cannot be opened)."""
        if self._connection is not None and not self._connection.closed and not self._connection.broken:
            return self._connection
        self.discard()
        self._connection = psycopg.connect(
            self._database_url,
            autocommit=True,  # transactions are explicit (connection.transaction())
            connect_timeout=self._connect_timeout,
            application_name=self._application_name,
            # Server-side prepared statements break behind transaction poolers (RDS Proxy, PgBouncer).
            prepare_threshold=None,
        )
        return self._connection

    def discard(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(psycopg.Error):
                self._connection.close()
            self._connection = None

    def close(self) -> None:
        with self.lock:
            self.discard()
