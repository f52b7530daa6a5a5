"""Verdicts, the table (scenario | ours | MiniStack | AWS documented | verdict) and the JSON document."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .model import Observation, Scenario

OURS, PEER = "ours", "MiniStack"
AS_DOCUMENTED = "as documented"
CELL_VALUE_CHARS = 90


@dataclass
class Result:
    scenario: Scenario
    observations: dict[str, Observation] = field(default_factory=dict)  # peer -> what it did
    not_compared: dict[str, str] = field(default_factory=dict)  # peer -> why it was not run there

    def matches(self, peer: str) -> bool:
        return peer in self.observations and self.observations[peer] == self.scenario.aws

    @property
    def verdict(self) -> str:
        """Where the difference lies, measured against AWS's documentation, never against each other."""
        if self.not_compared:
            ran = [peer for peer in (OURS, PEER) if peer in self.observations]
            alone = f"; {ran[0]} {'as AWS documents' if self.matches(ran[0]) else 'differs from AWS'}" if ran else ""
            return "not compared" + alone
        ours, peer = self.matches(OURS), self.matches(PEER)
        if ours and peer:
            return "agree (both as AWS documents)"
        if ours:
            return "MiniStack differs from AWS"
        known = " (known, docs/local-cloud.md)" if self.scenario.ours_known else ""
        if peer:
            return f"ours differs from AWS{known}"
        return f"both differ from AWS{known}"


def differing(observation: Observation, documented: Observation) -> dict[str, Any]:
    """The parts of an observation that are not what AWS documents (an error is all of it)."""
    if "error" in observation and "error" not in documented:
        return {"error": observation["error"]}
    keys = list(dict.fromkeys([*documented, *observation]))
    return {key: observation.get(key) for key in keys if observation.get(key) != documented.get(key)}


def compact(values: dict[str, Any]) -> str:
    lines = []
    for key, value in values.items():
        text = json.dumps(value, default=str)
        lines.append(f"{key}: {text if len(text) <= CELL_VALUE_CHARS else text[:CELL_VALUE_CHARS] + '…'}")
    return "\n".join(lines)


def cell(result: Result, peer: str) -> str:
    if peer in result.not_compared:
        return f"not run: {result.not_compared[peer]}"
    observation = result.observations.get(peer)
    if observation is None:
        return "not run"
    return AS_DOCUMENTED if observation == result.scenario.aws else compact(differing(observation, result.scenario.aws))


def documented_cell(result: Result) -> str:
    """What AWS documents for the parts where some peer differs, and the page that says so."""
    wanted: dict[str, Any] = {}
    for observation in result.observations.values():
        for key in differing(observation, result.scenario.aws):
            if key in result.scenario.aws:
                wanted[key] = result.scenario.aws[key]
    return (compact(wanted) + "\n" if wanted else "") + result.scenario.doc


def table(results: list[Result], not_compared: dict[str, str]) -> Table:
    grid = Table(title="Conformance scenarios: ours vs MiniStack vs AWS documentation", show_lines=True,
                 expand=True)
    for heading, ratio in (("scenario", 2), (OURS, 3), (PEER, 3), ("AWS documented", 3), ("verdict", 2)):
        grid.add_column(heading, ratio=ratio, overflow="fold")
    for result in results:
        scenario = result.scenario
        note = f"\n[dim]ours known: {escape(scenario.ours_known)}[/dim]" if scenario.ours_known and not result.matches(OURS) else ""
        # observations are JSON, whose [lists] rich would read as markup
        grid.add_row(f"[bold]{escape(scenario.key)}[/bold]\n{escape(scenario.title)}",
                     escape(cell(result, OURS)) + note, escape(cell(result, PEER)), escape(documented_cell(result)),
                     escape(result.verdict))
    for what, reason in not_compared.items():
        grid.add_row(f"[bold]{escape(what)}[/bold]", "—", "—", "—", escape(f"not compared: {reason}"))
    return grid


def summary(results: list[Result]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for result in results:
        head = result.verdict.split(" (", 1)[0].split(";", 1)[0]
        counts[head] = counts.get(head, 0) + 1
    return counts


def document(results: list[Result], not_compared: dict[str, str], about: dict[str, Any]) -> dict[str, Any]:
    return {
        **about,
        "summary": summary(results),
        "scenarios": [
            {
                "key": result.scenario.key, "title": result.scenario.title, "doc": result.scenario.doc,
                "aws": result.scenario.aws, "ours": result.observations.get(OURS),
                "ministack": result.observations.get(PEER), "notRun": result.not_compared,
                "oursKnown": result.scenario.ours_known or None, "verdict": result.verdict,
            }
            for result in results
        ],
        "notCompared": not_compared,
    }


def markdown(results: list[Result]) -> str:
    """The table for docs/local-cloud.md: one line per scenario, a mark per peer, the verdict."""
    def mark(result: Result, peer: str) -> str:
        if peer in result.not_compared or peer not in result.observations:
            return "not run"
        return "as documented" if result.matches(peer) else "differs"

    lines = ["| scenario | what it checks | ours | MiniStack | verdict |", "|---|---|---|---|---|"]
    for result in results:
        scenario = result.scenario
        lines.append(f"| [`{scenario.key}`]({scenario.doc}) | {scenario.title} | {mark(result, OURS)} | "
                     f"{mark(result, PEER)} | {result.verdict} |")
    return "\n".join(lines) + "\n"


def print_report(results: list[Result], not_compared: dict[str, str], console: Console | None = None) -> None:
    console = console or Console(width=220)
    console.print(table(results, not_compared))
    console.print("summary: " + ", ".join(f"{count} {verdict}" for verdict, count in summary(results).items()))
