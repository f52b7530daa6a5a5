"""The code that runs inside one warm function worker (a `multiprocessing` spawn child).

Kept free of imports from the rest of busline so a worker starts with nothing but the standard
library before the handler's own imports. Protocol on the pipe (parent -> worker):
  ("invoke", request: dict)  ->  ("result", result: dict)
and once at start, worker -> parent: ("ready", None) or ("init_error", result: dict).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from typing import Any, TextIO

# The AWS shared config file of every function. A Lambda has none: the developer's ~/.aws (profiles, regions,
# credentials) must not reach the function. And S3 is reached over https on AWS, where botocore sends uploads
# with a checksum and no SHA-256 of the body; over the local cloud's plain http it would hash every body it
# uploads (a second pass over each chunk, on the function's CPU) unless told, as here, that AWS would not.
FUNCTION_AWS_CONFIG = """[default]
s3 =
    payload_signing_enabled = false
"""

# Variables of the parent kept in the function's environment: what a process needs to run at all.
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ", "USER", "LOGNAME",
                 "SSL_CERT_FILE", "SSL_CERT_DIR", "XDG_RUNTIME_DIR", "VIRTUAL_ENV")


@dataclass
class WorkerSetup:
    """Everything a worker needs to become the function; picklable for the spawn start."""

    logical_id: str
    function_name: str
    function_arn: str
    handler: str
    code_dir: str
    layer_dirs: list[str]
    environment: dict[str, str]
    memory_mb: int
    log_path: str
    echo_to_console: bool
    aws_config_file: str  # the only AWS shared config the function sees (FUNCTION_AWS_CONFIG)


class LambdaContext:
    """The attributes of Lambda's Python context object that libraries (Powertools) read."""

    def __init__(self, setup: WorkerSetup, request_id: str, deadline_epoch_ms: int, log_stream: str) -> None:
        self.aws_request_id = request_id
        self.function_name = setup.function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = setup.memory_mb
        self.invoked_function_arn = setup.function_arn
        self.log_group_name = f"/aws/lambda/{setup.function_name}"
        self.log_stream_name = log_stream
        self.identity = None
        self.client_context = None
        self._deadline_epoch_ms = deadline_epoch_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self._deadline_epoch_ms - time.time() * 1000))


class _Tee:
    """Writes to the log file, and to the console with the function's name before each line, so
    `--verbose` shows handler output as it happens and says whose it is."""

    def __init__(self, log: TextIO, console: TextIO, prefix: str) -> None:
        self._log = log
        self._console = console
        self._prefix = prefix
        self._partial = ""

    def write(self, text: str) -> int:
        self._log.write(text)
        self._log.flush()
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            self._console.write(f"{self._prefix}{line}\n")
        self._console.flush()
        return len(text)

    def flush(self) -> None:
        self._log.flush()
        self._console.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._log.fileno()


def main(conn: Any, setup: WorkerSetup) -> None:
    """Entry point of the worker process."""
    # Ctrl+C reaches the whole process group; the runtime decides when workers end, not the terminal.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    _redirect_output(setup)
    try:
        handler = _load_handler(setup)
    except BaseException as exc:  # an import error is the function's error, reported like Lambda does
        traceback.print_exc()
        sys.stdout.flush()
        conn.send(("init_error", _error_result(exc, "Runtime.ImportModuleError")))
        return
    conn.send(("ready", None))
    log_stream = time.strftime("%Y/%m/%d/[$LATEST]", time.gmtime()) + uuid.uuid4().hex
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return  # the parent closed the pipe: the runtime is shutting down
        kind, request = message
        if kind != "invoke":
            return
        conn.send(("result", _invoke(handler, setup, request, log_stream)))


class _FailingCall:
    """Chaos `fail`: the next AWS call the handler makes fails, as a dependency's 503 does once boto3's own
    retries are spent. The function handles it like any error of its work (a step retries the record
    after its backoff); a handler that makes no call fails after it returns instead."""

    armed = False
    installed = False

    @classmethod
    def arm(cls) -> None:
        if not cls.installed:
            cls._install()
        cls.armed = True

    @classmethod
    def disarm(cls) -> bool:
        """True when the armed failure was never used."""
        unused, cls.armed = cls.armed, False
        return unused

    @classmethod
    def _install(cls) -> None:
        # Imported only when chaos asks: a function that never uses boto3 never pays for it.
        from botocore.client import BaseClient
        from botocore.exceptions import ClientError

        original = BaseClient._make_api_call  # type: ignore[attr-defined]

        def make_api_call(client: Any, operation_name: str, api_params: Any) -> Any:
            if cls.armed:
                cls.armed = False
                service = client.meta.service_model.service_name
                raise ClientError(
                    {"Error": {"Code": "ServiceUnavailable", "Message": f"chaos: {service} {operation_name} failed"},
                     "ResponseMetadata": {"HTTPStatusCode": 503}},  # type: ignore[typeddict-item]
                    operation_name,
                )
            return original(client, operation_name, api_params)

        BaseClient._make_api_call = make_api_call  # type: ignore[attr-defined]
        cls.installed = True


def _invoke(handler: Any, setup: WorkerSetup, request: dict[str, Any], log_stream: str) -> dict[str, Any]:
    context = LambdaContext(setup, request["request_id"], request["deadline_epoch_ms"], log_stream)
    chaos = request.get("chaos")  # None, or one of the injections the parent decided on
    print(f"START RequestId: {context.aws_request_id} Version: $LATEST", flush=True)
    started = time.monotonic()
    try:
        if chaos == "kill":
            _kill_self_after(request["kill_after_s"])
        if chaos == "timeout_before":
            _hang_past(context)
        if chaos == "fail":
            _FailingCall.arm()
        payload = handler(request["event"], context)
        payload = json.loads(json.dumps(payload)) if payload is not None else None
        if chaos == "timeout_after":
            _hang_past(context)
        if chaos == "fail" and _FailingCall.disarm():
            raise ChaosInjectedError("chaos: the handler made no AWS call to fail; its answer was lost instead")
        if chaos == "kill":
            os.kill(os.getpid(), signal.SIGKILL)  # the handler beat the timer; die before answering
        result: dict[str, Any] = {"ok": True, "payload": payload, "error": None, "error_type": None}
    except TypeError as exc:
        traceback.print_exc()
        error_type = "Runtime.MarshalError" if "JSON serializable" in str(exc) else None
        result = _error_result(exc, error_type)
    except Exception as exc:
        traceback.print_exc()
        result = _error_result(exc)
    finally:
        _FailingCall.disarm()
        elapsed_ms = (time.monotonic() - started) * 1000
        print(f"END RequestId: {context.aws_request_id}", flush=True)
        print(f"REPORT RequestId: {context.aws_request_id}\tDuration: {elapsed_ms:.2f} ms", flush=True)
    return result


class ChaosInjectedError(RuntimeError):
    pass


def _error_result(exc: BaseException, error_type: str | None = None) -> dict[str, Any]:
    return {
        "ok": False,
        "payload": {
            "errorMessage": str(exc),
            "errorType": error_type or type(exc).__name__,
            "stackTrace": traceback.format_tb(exc.__traceback__),
        },
        "error": str(exc) or type(exc).__name__,
        "error_type": error_type or type(exc).__name__,
    }


def _load_handler(setup: WorkerSetup) -> Any:
    module_name, _, attribute = setup.handler.rpartition(".")
    if not module_name:
        raise ValueError(f"handler {setup.handler!r} must look like module.function")
    inherited = {name: os.environ[name] for name in INHERITED_ENV if name in os.environ}
    os.environ.clear()
    os.environ.update(inherited)
    os.environ.update(setup.environment)
    # (a template that names its own, in the function's package, keeps it, as it would on AWS)
    os.environ.setdefault("AWS_CONFIG_FILE", setup.aws_config_file)
    os.environ.setdefault("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    os.environ.setdefault("LAMBDA_TASK_ROOT", setup.code_dir)
    os.environ.setdefault("AWS_LAMBDA_FUNCTION_NAME", setup.function_name)
    os.environ.setdefault("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
    os.environ.setdefault("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", str(setup.memory_mb))
    os.environ.setdefault("AWS_LAMBDA_LOG_GROUP_NAME", f"/aws/lambda/{setup.function_name}")
    os.environ.setdefault("AWS_EXECUTION_ENV", "AWS_Lambda_python3.11")
    os.environ.setdefault("_HANDLER", setup.handler)
    # The parent's working directory must not shadow the function's own modules.
    rest = [entry for entry in sys.path if entry not in ("", os.getcwd())]
    sys.path[:] = [setup.code_dir, *setup.layer_dirs, *rest]
    os.chdir(setup.code_dir)
    importlib.invalidate_caches()
    module = importlib.import_module(module_name.replace("/", "."))
    handler = getattr(module, attribute, None)
    if not callable(handler):
        raise AttributeError(f"handler {setup.handler!r}: module {module_name!r} has no function {attribute!r}")
    return handler


def _redirect_output(setup: WorkerSetup) -> None:
    # fd-level redirection catches everything (print, logging, C extensions); the Tee adds the console.
    console = os.fdopen(os.dup(1), "w", buffering=1) if setup.echo_to_console else None
    log_fd = os.open(setup.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    log_stream = os.fdopen(1, "w", buffering=1, closefd=False)
    if console is not None:
        sys.stdout = sys.stderr = _Tee(log_stream, console, f"  {setup.logical_id} | ")  # type: ignore[assignment]
    else:
        sys.stdout = sys.stderr = log_stream


def _die_with_parent() -> None:
    # If the runtime process is killed outright, its workers must not linger (Linux only).
    with contextlib.suppress(Exception):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _hang_past(context: LambdaContext) -> None:
    # Sleep well beyond the deadline; the parent kills the worker when the Timeout is reached.
    time.sleep(context.get_remaining_time_in_millis() / 1000 + 60)


def _kill_self_after(delay_s: float) -> None:
    timer = threading.Timer(delay_s, os.kill, args=(os.getpid(), signal.SIGKILL))
    timer.daemon = True
    timer.start()
