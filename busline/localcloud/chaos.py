"""Fault injection for the local cloud: the failures AWS produces rarely, produced on purpose.

Rates are probabilities per invocation. `duplicate` is applied by the event sources (a second delivery
of the same records); `fail`, `timeout` and `kill` by the function runtime. `fail` makes the next AWS call
of the invocation fail (a dependency's 503, which the function handles like any error of its work; a
handler that makes no call loses its answer instead); `timeout` and `kill` end the invocation without
an answer, so only they wait out a queue's visibility timeout. Every injection is counted so a run can
report what it survived.
"""

from __future__ import annotations

import json
import random
import threading
from dataclasses import dataclass, field
from pathlib import Path

from busline.keyvalue import split_pairs

CHAOS_KINDS = ("duplicate", "fail", "timeout", "kill")


@dataclass
class ChaosConfig:
    duplicate: float = 0.0
    fail: float = 0.0
    timeout: float = 0.0
    kill: float = 0.0
    seed: int | None = None
    _rngs: dict[str, random.Random] = field(init=False, repr=False, compare=False)
    _lock: threading.Lock = field(init=False, repr=False, compare=False)
    _counts: dict[str, int] = field(init=False, repr=False, compare=False)
    _stats_path: Path | None = field(init=False, default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        for kind in CHAOS_KINDS:
            _check_rate(kind, getattr(self, kind))
        # One generator per kind: the n-th roll of a kind then has the same outcome whatever order the
        # threads roll in, so a seed fixes each kind's sequence of hits (which message gets hit still
        # depends on timing, as it does on AWS).
        self._rngs = {
            name: random.Random(None if self.seed is None else f"{self.seed}:{name}")
            for name in (*CHAOS_KINDS, "uniform")
        }
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(CHAOS_KINDS, 0)

    @classmethod
    def parse(cls, spec: str, seed: int | None = None) -> ChaosConfig:
        """`"duplicate=0.3,fail=0.2"` -> rates; an empty spec turns chaos off."""
        pairs = split_pairs((item for item in spec.split(",") if item.strip()), example="kind=rate, e.g. fail=0.1", noun="chaos")
        rates: dict[str, float] = {}
        for key, raw_rate in pairs.items():
            if key not in CHAOS_KINDS:
                raise ValueError(f"unknown chaos kind {key!r}; expected one of {', '.join(CHAOS_KINDS)}")
            try:
                rate = float(raw_rate.strip())
            except ValueError:
                raise ValueError(f"chaos rate for {key!r} must be a number between 0 and 1, got {raw_rate.strip()!r}") from None
            _check_rate(key, rate)
            rates[key] = rate
        return cls(seed=seed, **rates)

    def enabled(self) -> bool:
        return any(getattr(self, kind) > 0 for kind in CHAOS_KINDS)

    def describe(self) -> str:
        if not self.enabled():
            return "chaos: off"
        parts = [f"{kind}={getattr(self, kind):g}" for kind in CHAOS_KINDS if getattr(self, kind) > 0]
        seed = f" (seed {self.seed})" if self.seed is not None else ""
        return f"chaos: {' '.join(parts)}{seed}"

    def roll(self, kind: str) -> bool:
        """True when this invocation should suffer `kind`."""
        rate = self._rate(kind)
        if rate <= 0:
            return False
        with self._lock:
            return self._rngs[kind].random() < rate

    def uniform(self, low: float, high: float) -> float:
        """A seeded random number, for choices inside an injection (when to kill, before or after)."""
        with self._lock:
            return self._rngs["uniform"].uniform(low, high)

    def record(self, kind: str) -> None:
        self._rate(kind)
        with self._lock:
            self._counts[kind] += 1
            snapshot = dict(self._counts)
            path = self._stats_path
        if path is not None:
            _write_json(path, snapshot)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def write_stats(self, path: Path) -> None:
        _write_json(path, self.stats())

    def attach_stats_file(self, path: Path) -> None:
        """From now on every `record` rewrites `path` with the counts."""
        with self._lock:
            self._stats_path = path
        self.write_stats(path)

    def _rate(self, kind: str) -> float:
        if kind not in CHAOS_KINDS:
            raise ValueError(f"unknown chaos kind {kind!r}; expected one of {', '.join(CHAOS_KINDS)}")
        rate: float = getattr(self, kind)
        return rate


def _check_rate(kind: str, rate: float) -> None:
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"chaos rate for {kind!r} must be between 0 and 1, got {rate}")


_write_lock = threading.Lock()


def _write_json(path: Path, data: dict[str, int]) -> None:
    # Write-then-rename so a reader never sees half a file.
    with _write_lock:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        tmp.replace(path)
