"""Run the template's functions with Lambda's semantics, in warm worker processes.

Each function has a pool of spawn-started workers, one invocation at a time per worker, reused so
module state (clients, connections, caches) survives between invocations as it does on Lambda.
The pool grows on demand up to the function's concurrency cap. The parent enforces `Timeout` by
killing the worker, exactly where Lambda would freeze and discard the execution environment.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from busline.localcloud import worker as worker_module
from busline.localcloud.chaos import ChaosConfig
from busline.localcloud.model import CloudModel, FunctionSpec, LocalCloudError

DEFAULT_CONCURRENCY = 4
BATCH_NICENESS = 10  # of a queue-fed function's workers (FunctionRuntime.__init__ says why)
# Lambda gives an execution environment 10 s to initialise; imports on a busy machine can be slower.
INIT_TIMEOUT_S = 30.0

_spawn = multiprocessing.get_context("spawn")
_console_lock = threading.Lock()


@dataclass
class InvocationResult:
    ok: bool
    payload: Any
    error: str | None
    error_type: str | None
    duration_ms: float
    timed_out: bool = False
    killed: bool = False


def console_line(text: str) -> None:
    """Print one whole line to the console; lines from concurrent threads never interleave."""
    with _console_lock:
        print(text, file=sys.stdout, flush=True)


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Start a spawn child without re-running the parent's __main__ in it.

    Spawn normally re-imports the main script (the CLI, pytest) in every child: about a second of
    useless imports per worker, and endless recursion for a script without a __main__ guard.
    Workers need nothing from it; their target lives in busline.localcloud.worker.
    """
    main = sys.modules["__main__"]
    saved: dict[str, Any] = {name: main.__dict__[name] for name in ("__spec__", "__file__") if name in main.__dict__}
    main.__dict__["__spec__"] = None
    main.__dict__.pop("__file__", None)
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


class _Worker:
    """One warm execution environment: a process and the parent's end of its pipe."""

    def __init__(
        self, spec: FunctionSpec, log_path: Path, verbose: bool, aws_config_file: Path, niceness: int = 0
    ) -> None:
        setup = worker_module.WorkerSetup(
            logical_id=spec.logical_id,
            function_name=spec.name,
            function_arn=spec.arn,
            handler=spec.handler,
            code_dir=str(spec.code_dir),
            layer_dirs=[str(path) for path in spec.layer_dirs],
            environment=dict(spec.environment),
            memory_mb=spec.memory_mb,
            log_path=str(log_path),
            echo_to_console=verbose,
            aws_config_file=str(aws_config_file),
        )
        parent_end, child_end = _spawn.Pipe(duplex=True)
        self.conn: Connection = parent_end
        self.process: BaseProcess = _spawn.Process(
            target=worker_module.main, args=(child_end, setup), name=f"busline-{spec.logical_id}", daemon=True
        )
        with _main_module_hidden():
            self.process.start()
        child_end.close()  # so the parent sees EOF when the worker dies
        if niceness and self.process.pid is not None:
            pid = self.process.pid
            os.setpriority(os.PRIO_PROCESS, pid, os.getpriority(os.PRIO_PROCESS, pid) + niceness)
        self.fresh = True  # not yet used by any invocation: its first one reports the cold start

    def wait_ready(self, timeout_s: float) -> InvocationResult | None:
        """None when the handler module imported; otherwise the failed result to report."""
        if not self.conn.poll(timeout_s):
            self.kill()
            return InvocationResult(False, None, f"Init timed out after {timeout_s:g} seconds",
                                    "Runtime.InitTimeout", 0.0, timed_out=True)
        try:
            kind, body = self.conn.recv()
        except (EOFError, OSError):
            self.kill()
            return InvocationResult(False, None, "Runtime exited during init", "Runtime.ExitError", 0.0, killed=True)
        if kind == "ready":
            return None
        self.kill()
        return InvocationResult(False, body["payload"], body["error"], body["error_type"], 0.0)

    def alive(self) -> bool:
        return self.process.is_alive()

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()


class _Pool:
    """The warm workers of one function, capped at its concurrency."""

    def __init__(self, spec: FunctionSpec, cap: int) -> None:
        self.spec = spec
        self.cap = cap
        self.idle: list[_Worker] = []
        self.running: set[_Worker] = set()  # every started worker, idle or busy
        self.total = 0  # idle + busy + starting
        self.cond = threading.Condition()
        self.closed = False


class FunctionRuntime:
    def __init__(self, model: CloudModel, data_dir: Path, chaos: ChaosConfig | None = None,
                 verbose: bool = False) -> None:
        self.model = model
        self.data_dir = data_dir
        self.chaos = chaos if chaos is not None and chaos.enabled() else None
        self.verbose = verbose
        self.logs_dir = data_dir / "logs"
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.aws_config_file = data_dir / "function-aws-config"
        self.aws_config_file.write_text(worker_module.FUNCTION_AWS_CONFIG)
        if self.chaos is not None:
            self.chaos.attach_stats_file(data_dir / "chaos.json")
        # On AWS no function takes another's CPU. Here a few cores serve every worker, so the workers of
        # queue-fed functions (batch work: extract, transform, load) yield to the rest (the API, the
        # WebSocket pushes, the stream consumers), whose caller is a person waiting.
        self._batch_functions = frozenset(mapping.function for mapping in model.sqs_mappings)
        self._pools: dict[str, _Pool] = {}
        self._pools_lock = threading.Lock()
        self._closed = False
        # Workers die with the thread that started them (PR_SET_PDEATHSIG follows the creating thread),
        # so they are started from this one long-lived thread, never from short-lived invoker threads.
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="busline-spawner")

    # -- public ---------------------------------------------------------------------------------

    def invoke(self, function: str, event: dict[str, Any], *, trigger: str,
               allow_chaos: bool = True) -> InvocationResult:
        """Run one invocation and block until it ends; safe to call from many threads at once."""
        pool = self._pool(function)
        started = time.monotonic()
        worker, init_failure = self._acquire(pool)
        cold_start_ms = (time.monotonic() - started) * 1000 if worker is None or worker.fresh else None
        if init_failure is not None:
            init_failure.duration_ms = (time.monotonic() - started) * 1000
            self._report(pool.spec, trigger, event, init_failure, None, None)
            return init_failure
        assert worker is not None
        injection = self._choose_injection(pool.spec) if allow_chaos else None
        worker.fresh = False  # before _run: once released, another caller may pick it
        result = self._run(pool, worker, event, injection)
        self._report(pool.spec, trigger, event, result, injection, cold_start_ms)
        return result

    def close(self) -> None:
        """Kill every worker; invocations still waiting for one fail."""
        self._closed = True
        with self._pools_lock:
            pools = list(self._pools.values())
        for pool in pools:
            with pool.cond:
                pool.closed = True
                pool.idle = []
                pool.cond.notify_all()
                everyone = list(pool.running)
            # Busy workers too: their invokers see the pipe close and report a killed invocation.
            for worker in everyone:
                worker.kill()
        self._spawner.shutdown(wait=True, cancel_futures=True)

    def worker_pids(self) -> list[int]:
        """Process ids of every started worker (for tests and diagnostics)."""
        with self._pools_lock:
            pools = list(self._pools.values())
        pids: list[int] = []
        for pool in pools:
            with pool.cond:
                pids.extend(w.process.pid for w in pool.running if w.process.pid is not None)
        return pids

    # -- pool management ------------------------------------------------------------------------

    def _pool(self, function: str) -> _Pool:
        with self._pools_lock:
            pool = self._pools.get(function)
            if pool is None:
                spec = self.model.functions.get(function)
                if spec is None:
                    known = ", ".join(sorted(self.model.functions)) or "none"
                    raise LocalCloudError(f"no function {function!r} in the template (known: {known})")
                cap = spec.reserved_concurrency if spec.reserved_concurrency else DEFAULT_CONCURRENCY
                pool = self._pools[function] = _Pool(spec, max(1, cap))
            return pool

    def _acquire(self, pool: _Pool) -> tuple[_Worker | None, InvocationResult | None]:
        with pool.cond:
            while True:
                if pool.closed or self._closed:
                    raise LocalCloudError(f"the function runtime is closed; cannot invoke {pool.spec.logical_id}")
                while pool.idle:
                    candidate = pool.idle.pop()
                    if candidate.alive():
                        return candidate, None
                    pool.total -= 1  # died while idle (killed from outside): forget it
                    pool.running.discard(candidate)
                    candidate.kill()
                if pool.total < pool.cap:
                    pool.total += 1
                    break
                pool.cond.wait()
        # Start outside the lock: a cold start takes about a second and must not block the warm path.
        try:
            niceness = BATCH_NICENESS if pool.spec.logical_id in self._batch_functions else 0
            fresh = self._spawner.submit(
                _Worker,
                pool.spec,
                self.logs_dir / f"{pool.spec.logical_id}.log",
                self.verbose,
                self.aws_config_file,
                niceness,
            ).result()
        except RuntimeError as exc:  # the spawner was shut down by close()
            self._forget(pool)
            raise LocalCloudError(f"the function runtime is closed; cannot invoke {pool.spec.logical_id}") from exc
        except BaseException:
            self._forget(pool)
            raise
        with pool.cond:
            pool.running.add(fresh)  # from now on close() kills it, even while it is still importing
            closed = pool.closed
        failure = fresh.wait_ready(INIT_TIMEOUT_S) if not closed else InvocationResult(
            False, None, "the function runtime is closed", "Runtime.Closed", 0.0, killed=True)
        if failure is not None:
            fresh.kill()
            self._forget(pool, fresh)
            return None, failure
        return fresh, None

    def _release(self, pool: _Pool, worker: _Worker) -> None:
        with pool.cond:
            if pool.closed:
                pool.total -= 1
                pool.running.discard(worker)
                worker.kill()
            else:
                pool.idle.append(worker)
            pool.cond.notify()

    def _forget(self, pool: _Pool, worker: _Worker | None = None) -> None:
        with pool.cond:
            pool.total -= 1
            if worker is not None:
                pool.running.discard(worker)
            pool.cond.notify()

    # -- one invocation -------------------------------------------------------------------------

    def _run(self, pool: _Pool, worker: _Worker, event: dict[str, Any], injection: str | None) -> InvocationResult:
        spec = pool.spec
        started = time.monotonic()
        request = {
            "request_id": str(uuid.uuid4()),
            "event": event,
            "deadline_epoch_ms": int(time.time() * 1000 + spec.timeout_s * 1000),
            "chaos": injection,
            "kill_after_s": self._kill_delay(spec) if injection == "kill" else 0.0,
        }
        try:
            worker.conn.send(("invoke", request))
            answered = worker.conn.poll(spec.timeout_s)
            if answered:
                _kind, body = worker.conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            answered, body = True, None
        duration_ms = (time.monotonic() - started) * 1000
        if not answered:
            worker.kill()
            self._forget(pool, worker)
            return InvocationResult(False, None, f"Task timed out after {spec.timeout_s:.2f} seconds",
                                    "Sandbox.Timedout", duration_ms, timed_out=True)
        if body is None:
            worker.kill()
            self._forget(pool, worker)
            return InvocationResult(False, None, "Runtime exited without providing a reason",
                                    "Runtime.ExitError", duration_ms, killed=True)
        self._release(pool, worker)
        return InvocationResult(body["ok"], body["payload"], body["error"], body["error_type"], duration_ms)

    def _choose_injection(self, spec: FunctionSpec) -> str | None:
        chaos = self.chaos
        if chaos is None:
            return None
        if chaos.roll("kill"):
            chaos.record("kill")
            return "kill"
        if chaos.roll("timeout"):
            chaos.record("timeout")
            return "timeout_before" if chaos.uniform(0, 1) < 0.5 else "timeout_after"
        if chaos.roll("fail"):
            chaos.record("fail")
            return "fail"
        return None

    def _kill_delay(self, spec: FunctionSpec) -> float:
        # Somewhere inside a typical handler run; if the handler is quicker the worker dies right after it.
        assert self.chaos is not None
        return self.chaos.uniform(0.0, min(1.0, spec.timeout_s / 2))

    # -- console --------------------------------------------------------------------------------

    def _report(self, spec: FunctionSpec, trigger: str, event: dict[str, Any], result: InvocationResult,
                injection: str | None, cold_start_ms: float | None) -> None:
        records = event.get("Records") if isinstance(event, dict) else None
        size = f" ({len(records)} record{'s' if len(records) != 1 else ''})" if isinstance(records, list) else ""
        if result.ok:
            failures = result.payload.get("batchItemFailures") if isinstance(result.payload, dict) else None
            outcome = f"ok{size}"
            if failures:
                outcome = f"partial: {len(failures)} failed{size}"
        elif result.timed_out:
            outcome = f"TIMEOUT {result.error}"
        elif result.killed:
            outcome = "KILLED worker died mid-invocation"
        else:
            message = (result.error or "").splitlines()[0][:160] if result.error else ""
            outcome = f"ERROR {result.error_type}: {message}"
        tag = f" [chaos {injection.replace('_', '-')}]" if injection else ""
        if cold_start_ms is not None:
            tag += f" [cold start {cold_start_ms:.0f} ms]"
        console_line(f"invoke {spec.logical_id} {trigger} {result.duration_ms:.0f} ms {outcome}{tag}")
