"""SIGTERM stops `busline local up` completely: no process left behind, every port free again.

This test starts its own cloud (the shared one must survive the other tests).
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import psutil
import pytest
from conformance_support import CLOUD_ARGS, START_TIMEOUT_S, TEMPLATE, Aws, cloud_data_dir, http, wait_until

from busline.localcloud.testing import PORTS_PER_CLOUD, port_is_free, running_cloud

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

# running_cloud gives a hung cloud the same 30 s before it kills the whole process group.
EXIT_TIMEOUT_S = 30.0


def is_gone(process: psutil.Process) -> bool:
    """Exited: no such process any more (is_running also guards against PID reuse) or an unreaped zombie."""
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def processes_mentioning(path: Path) -> list[str]:
    """Processes whose command line names `path`, e.g. a Postgres started with -D <data-dir>/pg."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if str(path) in cmdline and not is_gone(process):
            found.append(f"{process.info['pid']}: {cmdline}")
    return found


def test_sigterm_stops_every_process_and_frees_every_port() -> None:
    with cloud_data_dir("shutdown") as data_dir:
        stop_and_check_everything_is_gone(data_dir)


def stop_and_check_everything_is_gone(data_dir: Path) -> None:
    descendants: dict[int, psutil.Process] = {}
    with running_cloud(TEMPLATE, data_dir, extra_args=CLOUD_ARGS, timeout_s=START_TIMEOUT_S) as cloud:
        # Given a running cloud whose functions have warm workers (one REST call, schedule firings)
        parent = psutil.Process(cloud.process.pid)
        aws = Aws(cloud.endpoints)
        assert http("GET", f"{cloud.endpoints['rest']}/items/shutdown").status == 200
        wait_until(lambda: len(aws.records("schedule")) >= 2, 20, "2 schedule firings")
        for child in parent.children(recursive=True):
            descendants[child.pid] = child
        workers = [p for p in descendants.values() if "spawn_main" in " ".join(p.cmdline())]
        # Precondition, not the claim under test: ApiFunction and ScheduleFunction each have a worker.
        assert len(workers) >= 2, (
            f"expected worker processes, saw {[p.cmdline() for p in descendants.values()]}"
        )

        # When it gets SIGTERM
        cloud.process.send_signal(signal.SIGTERM)
        try:
            exit_code = cloud.process.wait(timeout=EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            console = cloud.log_path.read_text(errors="replace")[-2000:]
            pytest.fail(f"still running {EXIT_TIMEOUT_S:.0f} s after SIGTERM; console.log ends:\n{console}")

    # Then it exited cleanly and removed its endpoints.json
    assert exit_code == 0
    assert not (data_dir / "endpoints.json").exists()
    # And no process it started is left (a moment for SIGKILLed children to be reaped)
    psutil.wait_procs([p for p in descendants.values() if not is_gone(p)], timeout=3)
    assert [pid for pid, process in descendants.items() if not is_gone(process)] == []
    assert processes_mentioning(data_dir) == []
    # And every port of its block P..P+4 can be bound again
    base = cloud.base_port
    ports = range(base, base + PORTS_PER_CLOUD)
    assert [port for port in ports if not port_is_free("127.0.0.1", port)] == []
