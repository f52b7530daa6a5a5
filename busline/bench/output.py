"""What a person reads: the table `make bench` prints, and docs/performance.md."""

from __future__ import annotations

from typing import Any

from busline_core.pricing import LIST_PRICES


def _fmt(value: Any, suffix: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, int):
        return f"{value:,}{suffix}"
    if isinstance(value, float):
        return f"{value:,.2f}{suffix}" if abs(value) >= 0.01 or value == 0 else f"{value:.6f}{suffix}"
    return f"{value}{suffix}"


def _usd(value: float | None) -> str:
    return "–" if value is None else f"${value:.6f}" if value < 1 else f"${value:,.2f}"


def _met(met: bool | None) -> str:
    return "not measured" if met is None else "met" if met else "NOT met"


def _run_rows(run: dict[str, Any] | None) -> dict[str, str]:
    """One column of the summary: a run's figures, by row name (empty for a run that did not happen)."""
    if not run or "endToEndSeconds" not in run:
        return {}
    latency = run["progress"]["latencyMs"]
    rows = {
        "rows / chunks": f"{_fmt(run['rows'])} / {_fmt(run['chunks'])}",
        "end to end (s)": _fmt(run["endToEndSeconds"]),
        "rows/s": _fmt(run["rowsPerSecond"]),
        **{f"  {phase} (s)": _fmt(seconds) for phase, seconds in run["phaseSeconds"].items()},
        "progress latency p50 / p95 (ms)": f"{_fmt(latency['p50'])} / {_fmt(latency['p95'])}",
    }
    calls = run.get("apiCalls", {})
    if "total" in calls:
        rows["AWS calls total / per chunk"] = f"{_fmt(calls['total'])} / {_fmt(calls['perChunk'])}"
        for service, per_chunk in calls["perChunkByService"].items():
            rows[f"  {service}"] = f"{_fmt(calls['byService'][service])} / {_fmt(per_chunk)}"
        rows["  local-only calls (not on AWS)"] = _fmt(calls["byOrigin"].get("emulation", 0))
    else:
        rows["AWS calls total / per chunk"] = calls.get("error", "–")
    rows["Lambda invocations / GB-s"] = (
        f"{_fmt(run['lambda']['invocations'])} / {_fmt(run['lambda']['gbSeconds'])}"
    )
    cost = run["cost"]
    per_million = cost["perMillionRowsUsd"]
    rows["cost per task / per 1M rows"] = f"{_usd(cost['totalUsd'])} / {_usd(per_million.get('total'))}"
    for service, usd in cost["byServiceUsd"].items():
        rows[f"  {service} "] = f"{_usd(usd)} / {_usd(per_million.get(service))}"
    if cost["unpriced"]:
        rows["  not priced (no list price)"] = ", ".join(
            f"{k} {_fmt(v)}" for k, v in cost["unpriced"].items()
        )
    return rows


def print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    single, scaled = report["flights"], report["scale10x"]
    copies = scaled.get("copies") if scaled.get("copies") != 1 else "N"
    scaled_rows = _run_rows(scaled)
    summary = Table(title=f"Busline bench ({report['generatedAt']})")
    summary.add_column("measure")
    summary.add_column("flights 1x", justify="right")
    summary.add_column(f"flights {copies}x", justify="right")
    single_rows = _run_rows(single)
    for name in [*single_rows, *(name for name in scaled_rows if name not in single_rows)]:
        summary.add_row(name, single_rows.get(name, ""), scaled_rows.get(name, ""))
    summary.add_row("warm-up task (s)", _fmt(single.get("warmupTaskSeconds")), "")
    runs = single.get("runs")
    if runs:
        pooled = runs["progressLatencyMs"]
        summary.add_row(f"1x end to end, median of {len(runs['endToEndSeconds'])} (s)",
                        f"{_fmt(runs['medianSeconds'])} ({_seconds_list(runs['endToEndSeconds'])})", "")
        summary.add_row(f"  progress p50 / p95, {pooled['samples']} frames (ms)",
                        f"{_fmt(pooled['p50'])} / {_fmt(pooled['p95'])}", "")
        per_write = runs.get("progressWaitPerWriteMs")
        if per_write:
            summary.add_row(f"  wait per write p50 / p95, {per_write['samples']} writes (ms)",
                            f"{_fmt(per_write['p50'])} / {_fmt(per_write['p95'])}", "")
            summary.add_row(f"  writes late > {_fmt(per_write['withinMs'])} ms under any pacing",
                            _late_writes(per_write), "")
    if scaled_rows:
        summary.add_row(f"ratio to {copies}x the 1x time", "", _fmt(scaled["ratioToTenTimes1x"]))
        summary.add_row(f"counts = {copies} x the 1x counts", "", _fmt(scaled["countsMatchExpected"]))
    else:
        summary.add_row(
            f"{copies}x run",
            "",
            scaled.get("skipped") or f"[red]failed[/red]: {scaled.get('error', '')[:300]}",
        )
    summary.add_section()
    duckdb, copy = report["baselines"]["duckdb"], report["baselines"]["postgresCopy"]
    summary.add_row(
        "DuckDB script (s) / rows/s", f"{_fmt(duckdb['seconds'])} / {_fmt(duckdb['rowsPerSecond'])}", ""
    )
    if "runsSeconds" in duckdb:
        summary.add_row("  median of (s)", _seconds_list(duckdb["runsSeconds"]), "")
    summary.add_row(
        "  DuckDB part / Postgres part (s)",
        f"{_fmt(duckdb['duckdbSeconds'])} / {_fmt(duckdb['postgresSeconds'])}",
        "",
    )
    summary.add_row(
        "Postgres COPY (s) / rows/s", f"{_fmt(copy['seconds'])} / {_fmt(copy['rowsPerSecond'])}", ""
    )
    summary.add_row("pipeline / DuckDB script", _fmt(report["ratios"]["pipelineToDuckdb"], "x"), "")
    summary.add_row("pipeline / Postgres COPY", _fmt(report["ratios"]["pipelineToCopy"], "x"), "")
    summary.add_row(
        "counts match the DuckDB script", "yes" if report["countsMatchDuckdb"] else "[red]NO[/red]", ""
    )
    summary.add_section()
    for target in report["targets"].values():
        summary.add_row(target["target"], f"{_fmt(target['value'])}: {_met(target['met'])}", "")

    functions = Table(title="Functions: invocations, billed seconds (+ init), CPU seconds, peak RSS (MiB)")
    functions.add_column("function")
    functions.add_column("1x", justify="right")
    functions.add_column(f"{copies}x", justify="right")
    by_single = single["lambda"]["byFunction"]
    by_scaled = scaled.get("lambda", {}).get("byFunction", {})
    for name in sorted(set(by_single) | set(by_scaled)):
        functions.add_row(name, _function_cell(by_single.get(name)), _function_cell(by_scaled.get(name)))

    projection = report["projection"]
    console = Console(stderr=True)
    if not console.is_terminal:  # a log or CI: rich would wrap every row at 80 columns
        console = Console(stderr=True, width=160)
    console.print(summary)
    console.print(functions)
    latency = report.get("callLatency")
    if latency:
        calls = Table(title=f"AWS call latency through the local cloud, median of {latency['loops']} calls (ms); "
                      f"MiniStack: {latency['ministackSource']}")
        for column in ("call", "ours", "ours before (issue 14)", "MiniStack", "at or below MiniStack",
                       "MiniStack in issue 14", "at or below issue 14's"):
            calls.add_column(column, justify="left" if column == "call" else "right")
        for name, text in latency["calls"].items():
            calls.add_row(text, _fmt(latency["oursMs"][name]), _fmt(latency["oursBeforeMs"][name]),
                          _fmt(latency["ministackMs"][name]), _met(latency["atOrBelowMinistack"][name]),
                          _fmt(latency["issueMinistackMs"][name]), _met(latency["atOrBelowIssueFigures"][name]))
        console.print(calls)
    if "error" in projection:
        console.print(f"[red]no AWS projection[/red]: {projection['error']}")
        return
    aws = Table(
        title=f"AWS projection: {_fmt(projection['rows'])} rows (from {projection['measuredOn']}; "
        "assumptions in docs/performance.md)"
    )
    for column in ("approach", "concurrency", "wall (s)", "rows/s", "limited by", "cost", "per 1M rows"):
        aws.add_column(column, justify="left" if column in ("approach", "limited by") else "right")
    for result in projection["results"]:
        aws.add_row(
            result["approach"],
            _fmt(result["concurrency"]),
            _fmt(result["wallSeconds"]),
            _fmt(result["rowsPerSecond"]),
            result["bottleneck"],
            _usd(result["usd"]),
            _usd(result["usdPerMillionRows"]),
        )
    console.print(aws)


def _seconds_list(seconds: list[float]) -> str:
    return ", ".join(_fmt(value) for value in seconds)


def _function_cell(function: dict[str, Any] | None) -> str:
    if not function:
        return ""
    return (
        f"{function['invocations']} inv, {_fmt(function['durationSeconds'])} (+{_fmt(function['initSeconds'])}) s, "
        f"cpu {_fmt(function['cpuSeconds'])} s, {_fmt(function['peakRssMiB'])} MiB"
    )


# --- docs/performance.md --------------------------------------------------------------------------


def _calls_per_chunk(calls: dict[str, Any], chunks: int) -> str:
    """The per-chunk figure with who makes the calls: the functions' code, or Lambda's pollers and rules
    (the rule's send of each message, one SQS receive and one delete per batch of a queue-fed step, and
    the stream's reads), which a function's code cannot remove, only its mapping's BatchSize share."""
    by_origin = calls.get("byOrigin", {})
    if not chunks or not by_origin:
        return _fmt(calls["perChunk"])
    functions, pollers = by_origin.get("function", 0) / chunks, by_origin.get("eventSource", 0) / chunks
    return f"{_fmt(calls['perChunk'])}: the functions' code {_fmt(functions)}, Lambda's pollers {_fmt(pollers)}"


def _late_writes(per_write: dict[str, Any]) -> str:
    share = per_write["fewestLateShare"]
    return f"{_fmt(per_write['fewestLate'])} of {_fmt(per_write['writes'])}" + (
        "" if share is None else f" ({share * 100:.1f}%)"
    )


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def render_performance_doc(report: dict[str, Any]) -> str:
    single, scaled, projection = report["flights"], report["scale10x"], report["projection"]
    duckdb, copy = report["baselines"]["duckdb"], report["baselines"]["postgresCopy"]
    env = report["environment"]
    lines = [
        "# Performance and cost at AWS scale",
        "",
        f"Generated by `make bench` on {report['generatedAt']} (Python {env['python']}, {env['cpus']} CPUs, "
        f"{env['machine']}). Do not edit by hand: run `make bench` again. Prices: {report['prices']['region']} "
        f"list prices checked {report['prices']['checked']} (`src/layer/busline_core/pricing.py`).",
        "",
        "## Measured on the local cloud",
        "",
    ]
    runs = single.get("runs") or {
        "endToEndSeconds": [single["endToEndSeconds"]], "medianSeconds": single["endToEndSeconds"],
        "medianRowsPerSecond": single["rowsPerSecond"], "progressLatencyMs": single["progress"]["latencyMs"],
    }
    script_runs = duckdb.get("runsSeconds", [duckdb["seconds"]])
    pooled = runs["progressLatencyMs"]
    measured = [
        [
            "flights 1x: end to end",
            f"{_fmt(runs['medianSeconds'])} s, the median of {len(runs['endToEndSeconds'])} runs "
            f"({_seconds_list(runs['endToEndSeconds'])} s); {_fmt(runs['medianRowsPerSecond'])} rows/s, "
            f"{_fmt(single['rows'])} rows in {_fmt(single['chunks'])} chunks",
        ],
        [
            "DuckDB script (same run)",
            f"{_fmt(duckdb['seconds'])} s, the median of {len(script_runs)} runs ({_seconds_list(script_runs)} s); "
            f"that run: {_fmt(duckdb['duckdbSeconds'])} s DuckDB, {_fmt(duckdb['postgresSeconds'])} s Postgres, "
            f"{_fmt(duckdb['rowsPerSecond'])} rows/s",
        ],
        ["Postgres COPY of the result", f"{_fmt(copy['seconds'])} s, {_fmt(copy['rowsPerSecond'])} rows/s"],
        [
            "pipeline / DuckDB, pipeline / COPY",
            f"{_fmt(report['ratios']['pipelineToDuckdb'])}x, {_fmt(report['ratios']['pipelineToCopy'])}x",
        ],
        [
            "progress latency p50 / p95",
            f"{_fmt(pooled['p50'])} / {_fmt(pooled['p95'])} ms over the {_fmt(pooled['samples'])} frames of "
            f"the 1x runs",
        ],
    ]
    per_write = runs.get("progressWaitPerWriteMs")
    if per_write:
        measured += [
            [
                "progress wait per write p50 / p95",
                f"{_fmt(per_write['p50'])} / {_fmt(per_write['p95'])} ms over the {_fmt(per_write['samples'])} "
                "writes of the 1x tasks after `subscribe` (each write until the first frame showing it)",
            ],
            [
                f"writes that wait > {_fmt(per_write['withinMs'])} ms under any pacing of "
                f"{_fmt(per_write['framesPerSecond'])} frames/s",
                f"{_late_writes(per_write)} at the least (frames timed knowing every write, delivered at once)",
            ],
        ]
    if "perChunk" in single.get("apiCalls", {}):
        measured.append(["AWS calls per chunk (1x)", _calls_per_chunk(single["apiCalls"], single["chunks"])])
    measured.append(
        [
            "cost per task (1x) / per 1M rows",
            f"{_usd(single['cost']['totalUsd'])} / {_usd(single['cost']['perMillionRowsUsd'].get('total'))}",
        ]
    )
    if "endToEndSeconds" in scaled:
        measured += [
            [
                f"flights {scaled['copies']}x: end to end",
                f"{_fmt(scaled['endToEndSeconds'])} s, "
                f"{_fmt(scaled['rowsPerSecond'])} rows/s, {_fmt(scaled['chunks'])} chunks, "
                f"{_fmt(scaled['ratioToTenTimes1x'])}x of {scaled['copies']} x the 1x time",
            ],
            [
                f"cost per task ({scaled['copies']}x) / per 1M rows",
                f"{_usd(scaled['cost']['totalUsd'])} / {_usd(scaled['cost']['perMillionRowsUsd'].get('total'))}",
            ],
        ]
    else:
        measured.append(
            [f"flights {scaled.get('copies')}x", scaled.get("skipped") or scaled.get("error", "")]
        )
    lines += _table(["measure", "value"], measured)
    functions = sorted(set(single["peakRssMiB"]) | set(scaled.get("peakRssMiB", {})))
    if functions:
        lines += ["", "Peak RSS per function (MiB, the largest worker's VmHWM):", ""]
        lines += _table(
            ["function", "1x", f"{scaled.get('copies')}x"],
            [
                [name, _fmt(single["peakRssMiB"].get(name)), _fmt(scaled.get("peakRssMiB", {}).get(name))]
                for name in functions
            ],
        )
    lines += ["", "Targets:", ""]
    lines += _table(
        ["target", "value", "met"],
        [
            [target["target"], _fmt(target["value"]), _met(target["met"])]
            for target in report["targets"].values()
        ],
    )

    if "error" in projection:
        lines += ["", f"No projection to {_fmt(projection['rows'])} rows: {projection['error']}", ""]
        return "\n".join(lines)
    inputs, assumptions = projection["inputs"], projection["assumptions"]
    lines += [
        "",
        f"## Projection: {_fmt(projection['rows'])} rows on AWS",
        "",
        f"Inputs measured on {projection['measuredOn']}: {_fmt(inputs['rowsPerChunk'])} rows per chunk. AWS seconds "
        "per chunk = measured seconds - CPU seconds (waiting: I/O, and a core of the busy local machine) + CPU "
        "seconds / the vCPU share of the memory size (1 vCPU at 1,769 MB).",
        "",
    ]
    lines += _table(
        ["step", "invocations/chunk", "seconds/chunk (local)", "CPU s/chunk", "AWS s/chunk", "MB", "note"],
        [
            [
                step["name"],
                _fmt(step["invocationsPerChunk"]),
                f"{step['secondsPerChunk']:.3f}",
                f"{step['cpuSecondsPerChunk']:.3f}",
                f"{step['awsSecondsPerChunk']:.3f}",
                _fmt(step["memoryMb"]),
                "; ".join(
                    filter(
                        None,
                        [
                            "one invocation per task" if step["serial"] else "",
                            f"MaximumConcurrency {step['maxConcurrency']}" if step["maxConcurrency"] else "",
                            "" if step["etl"] else "event-driven design only",
                        ],
                    )
                ),
            ]
            for step in inputs["steps"]
        ],
    )
    per_chunk = inputs["perChunk"]
    lines += [
        "",
        "Billed units per chunk: "
        + ", ".join(f"{key} {_fmt(value)}" for key, value in per_chunk["calls"].items())
        + f"; EventBridge events {_fmt(per_chunk['eventBridgeEvents'])}, SQS deliveries by rules "
        f"{_fmt(per_chunk['sqsDeliveries'])}, DynamoDB write units {_fmt(per_chunk['dynamodbWriteUnits'])} and read "
        f"units {_fmt(per_chunk['dynamodbReadUnits'])}, WebSocket messages {_fmt(per_chunk['webSocketMessages'])}.",
        "",
    ]
    lines += _table(
        ["approach", "concurrency", "wall (s)", "rows/s", "limited by", "cost", "USD per 1M rows"],
        [
            [
                result["approach"],
                _fmt(result["concurrency"]) if result["concurrency"] else "n/a",
                _fmt(result["wallSeconds"]),
                _fmt(result["rowsPerSecond"]),
                result["bottleneck"],
                _usd(result["usd"]),
                _usd(result["usdPerMillionRows"]),
            ]
            for result in projection["results"]
        ],
    )
    glue = inputs.get("glue") or {}
    lines += [
        "",
        "Assumptions (not measured):",
        "",
        f"- Event-driven pipeline: {assumptions['hop_latency_s']} s from a step's event to the next step's "
        "invocation; chunks flow through the steps as a pipeline: wall = chunks / the narrowest rate + one chunk's "
        "trip. All functions share the concurrency; load is also held to its MaximumConcurrency "
        f"({assumptions['warehouse_connections']}, the template's LoadMaxConcurrency), which stands for what "
        "Postgres takes; an extract of byte ranges runs as many invocations per chunk as measured. Local "
        "seconds include waiting for a core of a busy 2-core machine, so AWS seconds err on the slow side. "
        "Lambda's scaling ramp and the SQS pollers' own ramp are not modelled. The Postgres server (RDS) is not "
        "priced. Each run's per-chunk figures include the task's fixed work (API, progress, the subscriber).",
        "- Step Functions Distributed Map: the same extract/transform/load Lambda work and S3 traffic, with the "
        "same load cap, one chunk per item batch; "
        f"{assumptions['stepfunctions_transitions_per_batch']} state transition per item batch plus "
        f"{assumptions['stepfunctions_map_transitions']} of the parent's own (Standard workflow prices), "
        f"{assumptions['stepfunctions_latency_s']} s between states. No EventBridge, SQS, DynamoDB task item, "
        "progress function or WebSocket: progress is the execution's own.",
        f"- AWS Glue: a Spark job of {assumptions['glue_dpus']} G.1X DPUs ({assumptions['glue_vcpus_per_dpu']} "
        f"vCPU each), assumed as fast per vCPU as the DuckDB script was per thread here "
        f"({_fmt(glue.get('rowsPerVcpuSecond'))} rows/s), writing through "
        f"{assumptions['warehouse_connections']} Postgres connections each as fast as the DuckDB script's one "
        f"({_fmt(glue.get('warehouseRowsPerConnectionSecond'))} rows/s); {assumptions['glue_startup_s']} s to start, "
        f"billed; ${LIST_PRICES.glue_dpu_hour} per DPU-hour, per second with a 1-minute minimum. It does not "
        "depend on Lambda concurrency.",
        "- Costs are list prices without free tiers. Operations without a price in pricing.py (SSM, Secrets "
        "Manager, SNS, KMS, X-Ray traces, CloudWatch Logs) are left out and listed in bench-results.json.",
        "",
    ]
    return "\n".join(lines)
