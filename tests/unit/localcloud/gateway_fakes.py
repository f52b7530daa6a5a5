"""A stand-in for the function runtime under the gateways: plain Python handlers, every event recorded."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

HOST = "127.0.0.1"


@dataclass
class Outcome:
    """What runtime.FunctionRuntime.invoke returns, as far as a gateway reads it."""

    ok: bool
    payload: Any = None
    error: str | None = None
    error_type: str | None = None
    duration_ms: float = 1.0
    timed_out: bool = False
    killed: bool = False


class Functions:
    """The runtime's `invoke` signature over plain Python functions; a function named in `timing_out`
    plays one that ran past its timeout."""

    def __init__(self, handlers: dict[str, Callable[[dict[str, Any]], Any]],
                 timing_out: frozenset[str] = frozenset({"Slow"})) -> None:
        self.handlers = handlers
        self.timing_out = timing_out
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def invoke(self, function: str, event: dict[str, Any], *, trigger: str, allow_chaos: bool = True) -> Outcome:
        with self._lock:
            self.events.append((function, event))
        if function in self.timing_out:
            return Outcome(ok=False, error="Task timed out", timed_out=True)
        try:
            return Outcome(ok=True, payload=self.handlers[function](event))
        except Exception as exc:  # noqa: BLE001 - the runtime reports every handler error
            return Outcome(ok=False, error=str(exc), error_type=type(exc).__name__)

    def of(self, function: str) -> list[dict[str, Any]]:
        with self._lock:
            return [event for name, event in self.events if name == function]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])
