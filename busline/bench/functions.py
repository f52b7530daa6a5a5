"""What the functions did in a measured run: invocations and billed time, CPU seconds, peak memory.

- Invocations and durations come from the lines the local cloud's runtime already prints to its console
  for every invocation (runtime.FunctionRuntime._report), which `running_cloud` sends to console.log:
  `invoke <LogicalId> <trigger> <N> ms <outcome>[ [cold start <M> ms]]`. N is the invocation, timed by
  the runtime from request to answer (a timed-out or killed one included, as Lambda bills it); M is the
  worker's start (spawn + imports), Lambda's INIT, which AWS bills too for on-demand functions.
- Memory sizes come from template.yaml (Globals.Function.MemorySize, the function's own, or Lambda's 128).
- Peak RSS and CPU come from the workers' /proc entries. A worker's name (`busline-<LogicalId>`) lives in
  Python only (multiprocessing sets no process title; its cmdline is spawn's), so a worker is told by
  what the local cloud does to it at start: fd 1 (and 2) point at `<data dir>/logs/<LogicalId>.log`.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_INVOKE_LINE = re.compile(
    r"^invoke (?P<function>\S+) (?P<trigger>.+?) (?P<ms>\d+) ms (?P<outcome>.*?)"
    r"(?: \[cold start (?P<cold>\d+) ms\])?$"
)
LAMBDA_DEFAULT_MEMORY_MB = 128


@dataclass
class FunctionUsage:
    invocations: int = 0
    duration_ms: int = 0  # billed duration: the sum of the invocations' milliseconds
    init_ms: int = 0  # cold starts' milliseconds
    cold_starts: int = 0
    failed: int = 0  # errors, timeouts, killed workers (billed all the same)

    @property
    def billed_ms(self) -> int:
        return self.duration_ms + self.init_ms


def parse_invocations(lines: Iterable[str]) -> dict[str, FunctionUsage]:
    """Per function logical id, its invocations among the console `lines` (other lines are ignored)."""
    usage: dict[str, FunctionUsage] = {}
    for line in lines:
        match = _INVOKE_LINE.match(line.rstrip("\n"))
        if match is None:
            continue
        function = usage.setdefault(match["function"], FunctionUsage())
        function.invocations += 1
        function.duration_ms += int(match["ms"])
        if match["cold"] is not None:
            function.cold_starts += 1
            function.init_ms += int(match["cold"])
        if not match["outcome"].startswith(("ok", "partial")):
            function.failed += 1
    return usage


class ConsoleWindow:
    """The console lines written between `open()` and `close()`: the measured run's invocations."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._start = 0

    def open(self) -> None:
        self._start = self.path.stat().st_size if self.path.exists() else 0

    def close(self) -> dict[str, FunctionUsage]:
        with self.path.open("rb") as stream:
            stream.seek(self._start)
            text = stream.read().decode(errors="replace")
        return parse_invocations(text.splitlines())


def memory_sizes(template: Path, parameters: Mapping[str, str]) -> dict[str, int]:
    """MemorySize (MB) of each AWS::Serverless::Function of `template`, with `!Ref Param` resolved from
    `parameters` (the bench's --param overrides) or the parameter's default."""
    from busline.localcloud.template import load_template

    sam = load_template(template)
    declared = sam.get("Parameters") or {}

    def resolve(value: Any) -> int | None:
        if isinstance(value, dict) and set(value) == {"Ref"}:
            name = value["Ref"]
            value = parameters.get(name, (declared.get(name) or {}).get("Default"))
        try:
            return int(value) if value is not None else None
        except (TypeError, ValueError):
            return None

    default = resolve(((sam.get("Globals") or {}).get("Function") or {}).get("MemorySize"))
    sizes: dict[str, int] = {}
    for logical_id, resource in sam["Resources"].items():
        if isinstance(resource, dict) and resource.get("Type") == "AWS::Serverless::Function":
            own = resolve((resource.get("Properties") or {}).get("MemorySize"))
            sizes[logical_id] = own or default or LAMBDA_DEFAULT_MEMORY_MB
    return sizes


def cloud_parameters(args: list[str]) -> dict[str, str]:
    """The `--param Key=Value` pairs of a `busline local up` argument list."""
    pairs = [value for flag, value in zip(args, args[1:], strict=False) if flag == "--param"]
    return dict(pair.split("=", 1) for pair in pairs if "=" in pair)


# --- the workers' processes -----------------------------------------------------------------------


@dataclass
class _Seen:
    function: str
    cpu_at_start: float  # CPU seconds when the window opened (0 for a worker started inside it)
    cpu_last: float = 0.0
    peak_kib: int = 0


@dataclass
class ProcessStats:
    peak_rss_mib: dict[str, float] = field(default_factory=dict)  # max VmHWM over the function's workers
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # user + system, summed over its workers
    workers: dict[str, int] = field(default_factory=dict)
    peak_reset: bool = True  # False: the kernel refused clear_refs, so peaks count from each worker's start
    method: str = ""


def _status_kib(pid: int, field_name: str) -> int | None:
    with contextlib.suppress(OSError, ValueError), open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return None


def _reset_peak(pid: int) -> bool:
    # "5" resets VmHWM to the current RSS (proc(5), /proc/pid/clear_refs), so each run has its own peak.
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


class WorkerMonitor:
    """Samples the local cloud's function workers while a run goes on (a worker that the run scales out
    to, or that dies, is caught too): peak RSS and CPU seconds per function."""

    def __init__(self, cloud_pid: int, logs_dir: Path, interval_s: float = 0.5) -> None:
        self.cloud_pid = cloud_pid
        self.logs_dir = logs_dir.resolve()
        self.interval_s = interval_s
        self._seen: dict[tuple[int, float], _Seen] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._peak_reset = True
        self._opening = False

    def start(self) -> None:
        self._seen.clear()
        self._stop.clear()
        self._opening = True
        self._sample()
        self._opening = False
        self._thread = threading.Thread(target=self._loop, name="bench-worker-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> ProcessStats:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._sample()
        stats = ProcessStats(
            peak_reset=self._peak_reset,
            method="workers found among the cloud process's descendants by their fd 1 (logs/<LogicalId>.log); "
            "VmHWM from /proc/<pid>/status (reset through clear_refs when the window opens), sampled every "
            f"{self.interval_s:g} s and at the end; CPU = utime + stime",
        )
        workers: Counter[str] = Counter()
        for seen in self._seen.values():
            workers[seen.function] += 1
            stats.peak_rss_mib[seen.function] = max(
                stats.peak_rss_mib.get(seen.function, 0.0), seen.peak_kib / 1024
            )
            cpu = max(0.0, seen.cpu_last - seen.cpu_at_start)
            stats.cpu_seconds[seen.function] = stats.cpu_seconds.get(seen.function, 0.0) + cpu
        stats.workers = dict(workers)
        stats.peak_rss_mib = {name: round(mib, 1) for name, mib in sorted(stats.peak_rss_mib.items())}
        stats.cpu_seconds = {name: round(cpu, 2) for name, cpu in sorted(stats.cpu_seconds.items())}
        return stats

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            with contextlib.suppress(Exception):  # a sample that races a dying process is skipped
                self._sample()

    def _function_of(self, pid: int) -> str | None:
        try:
            target = Path(os.readlink(f"/proc/{pid}/fd/1"))
        except OSError:
            return None
        if target.parent != self.logs_dir or target.suffix != ".log":
            return None
        return target.stem

    def _sample(self) -> None:
        import psutil

        try:
            processes = psutil.Process(self.cloud_pid).children(recursive=True)
        except psutil.Error:
            return
        for process in processes:
            try:
                identity = (process.pid, process.create_time())
                seen = self._seen.get(identity)
                if seen is None:
                    function = self._function_of(process.pid)
                    if function is None:
                        continue
                    cpu_now = sum(process.cpu_times()[:2])
                    if self._opening:
                        self._peak_reset = _reset_peak(process.pid) and self._peak_reset
                    seen = self._seen[identity] = _Seen(function, cpu_now if self._opening else 0.0)
                seen.cpu_last = sum(process.cpu_times()[:2])
                peak = _status_kib(process.pid, "VmHWM")
                if peak is not None:
                    seen.peak_kib = max(seen.peak_kib, peak)
            except psutil.Error:
                continue
