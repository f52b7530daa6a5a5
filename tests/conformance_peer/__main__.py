"""`python -m tests.conformance_peer --ministack .venv-peer/bin/ministack --json conformance-peer.json`

Starts MiniStack and our local cloud on loopback, deploys the conformance fixture's functions to MiniStack,
runs every scenario on both (one thread per peer), prints the table and writes the JSON; stops both.
A difference is a finding, not a failure: the exit status is 0 once the table is out.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import sys
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from . import deliveries, gateway, identity, messaging, storage
from .fixture import deploy_fixture
from .model import Aws, Scenario
from .peers import local_cloud, ministack
from .report import OURS, PEER, Result, document, markdown, print_report

SCENARIOS: list[Scenario] = [*messaging.SCENARIOS, *storage.SCENARIOS, *identity.SCENARIOS, *deliveries.SCENARIOS,
                            *gateway.SCENARIOS]


def observe(aws: Aws, scenarios: list[Scenario], results: dict[str, Result], fixture_error: str | None) -> None:
    """Run `scenarios` one after the other against one peer, filling in its column of `results`."""
    for scenario in scenarios:
        result = results[scenario.key]
        if scenario.needs_fixture and fixture_error:
            result.not_compared[aws.peer] = fixture_error
            continue
        started = time.monotonic()
        try:
            observation = scenario.run(aws)
        except Exception as error:  # a scenario the peer cannot run at all is an observation too
            observation = {"error": f"{type(error).__name__}: {error}"[:500]}
        result.observations[aws.peer] = observation
        print(f"  {aws.peer:9} {scenario.key:34} {time.monotonic() - started:5.1f} s "
              f"{'as documented' if observation == scenario.aws else 'DIFFERS'}", flush=True)


def fixture_on(aws: Aws) -> str | None:
    """Deploy the fixture app to the peer; why not, if it cannot be."""
    try:
        aws.outputs = deploy_fixture(aws)
    except Exception as error:
        return f"the fixture app could not be deployed: {type(error).__name__}: {error}"[:300]
    return None


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.conformance_peer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ministack", type=Path, required=True, help="the ministack executable to start")
    parser.add_argument("--json", type=Path, help="write the results there")
    parser.add_argument("--markdown", type=Path, help="write the table as Markdown there (for docs/local-cloud.md)")
    parser.add_argument("--only", nargs="*", default=[], help="scenario keys or key prefixes (default: all)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    options = arguments(argv)
    scenarios = [s for s in SCENARIOS if not options.only or any(s.key.startswith(p) for p in options.only)]
    results = {scenario.key: Result(scenario) for scenario in scenarios}
    needs_fixture = any(scenario.needs_fixture for scenario in scenarios)
    with contextlib.ExitStack() as running:
        print("starting MiniStack and the local cloud (fixture template)…", flush=True)
        peer = running.enter_context(ministack(options.ministack))
        ours, _ = running.enter_context(local_cloud())
        fixture_error = fixture_on(peer) if needs_fixture else None
        workers = [threading.Thread(target=observe, args=(aws, scenarios, results, error), name=aws.peer)
                   for aws, error in ((ours, None), (peer, fixture_error))]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        print("stopping both…", flush=True)
    ordered = [results[scenario.key] for scenario in scenarios]
    print_report(ordered, deliveries.NOT_COMPARED)
    if options.json:
        about: dict[str, Any] = {
            "generated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "peers": {OURS: f"busline local up (moto {metadata.version('moto')} + busline.localcloud)",
                      PEER: f"ministack {_version_of(options.ministack)}"},
        }
        options.json.write_text(json.dumps(document(ordered, deliveries.NOT_COMPARED, about), indent=2) + "\n")
        print(f"results: {options.json}")
    if options.markdown:
        options.markdown.write_text(markdown(ordered))
    return 0


def _version_of(executable: Path) -> str:
    """The MiniStack version installed beside the executable (its own venv's metadata)."""
    for found in (executable.resolve().parent.parent / "lib").glob("python3*/site-packages/ministack-*.dist-info"):
        return found.name.removeprefix("ministack-").removesuffix(".dist-info")
    return "unknown"


if __name__ == "__main__":
    sys.exit(main())
