"""`busline schedule create|list|delete`: a named pipeline run as you on an EventBridge Scheduler expression."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from busline.cli.endpoints import EndpointsOption, RegionOption, StackOption
from busline.cli.progress_view import add_plain_row
from busline.cli.tasks import (
    EXIT_FAILED,
    ApiError,
    ApiUnreachable,
    _api,
    _deployment,
    _fail_on_api_error,
    _params_schema,
    console,
    err_console,
    parse_params,
)

app = typer.Typer(no_args_is_help=True)


@app.command("create")
def create(
    pipeline: Annotated[str, typer.Argument(help="Named pipeline, e.g. flights (busline pipelines lists them).")],
    expression: Annotated[
        str,
        typer.Argument(help="rate(1 day), cron(0 6 * * ? *) or at(2026-12-24T18:00:00), as EventBridge Scheduler reads it."),
    ],
    param: Annotated[list[str] | None, typer.Option("--param", help="Pipeline parameter KEY=VALUE (repeat).")] = None,
    timezone: Annotated[str, typer.Option("--timezone", help="IANA time zone the expression is read in.")] = "UTC",
    description: Annotated[str, typer.Option("--description", help="What it is for, shown in the list.")] = "",
    notify_email: Annotated[
        str | None, typer.Option("--notify-email", help="Mail this address when each run ends (SNS asks it to confirm).")
    ] = None,
    endpoints: EndpointsOption = None,
    stack: StackOption = None,
    region: RegionOption = None,
) -> None:
    """Run PIPELINE as you at every firing of EXPRESSION; prints the schedule's id and next runs."""
    api = _api(_deployment(endpoints, stack, region))
    schema = _params_schema(api, pipeline) if param else None
    body = {
        "pipeline": pipeline,
        "params": parse_params(param or [], schema),
        "expression": expression,
        "timezone": timezone,
        "description": description,
    } | ({"notifyEmail": notify_email} if notify_email else {})
    try:
        created = api.create_schedule(body)
    except (ApiError, ApiUnreachable) as error:
        raise _fail_on_api_error(error) from None
    typer.echo(created.get("scheduleId", ""))
    for run in created.get("nextRuns", []):
        err_console.print(f"next run: {run}", markup=False)


@app.command("list")
def list_schedules(
    endpoints: EndpointsOption = None,
    stack: StackOption = None,
    region: RegionOption = None,
) -> None:
    """Your schedules, with their next runs."""
    api = _api(_deployment(endpoints, stack, region))
    try:
        listed = api.list_schedules()
    except (ApiError, ApiUnreachable) as error:
        raise _fail_on_api_error(error) from None
    items = listed.get("items", []) if isinstance(listed, dict) else []
    table = Table(title=f"{len(items)} schedule(s)")
    for column in ("schedule", "pipeline", "params", "expression", "time zone", "next run", "description"):
        table.add_column(column)
    for item in items:
        params = ", ".join(f"{key}={value}" for key, value in (item.get("params") or {}).items())
        next_runs = item.get("nextRuns") or []
        add_plain_row(
            table,
            str(item.get("scheduleId", "")),
            str(item.get("pipeline", "")),
            params,
            str(item.get("expression", "")),
            str(item.get("timezone", "")),
            next_runs[0] if next_runs else "none",
            str(item.get("description", "")),
        )
    console.print(table)


@app.command("delete")
def delete(
    schedule_id: Annotated[str, typer.Argument(help="Schedule id (printed by `busline schedule create`).")],
    endpoints: EndpointsOption = None,
    stack: StackOption = None,
    region: RegionOption = None,
) -> None:
    """Delete one of your schedules: no new run starts; runs already started carry on."""
    api = _api(_deployment(endpoints, stack, region))
    try:
        api.delete_schedule(schedule_id)
    except ApiError as error:
        if error.status == 404:
            err_console.print(f"schedule {schedule_id} not found", style="red", markup=False)
            raise typer.Exit(EXIT_FAILED) from None
        raise _fail_on_api_error(error) from None
    except ApiUnreachable as error:
        raise _fail_on_api_error(error) from None
    console.print(f"Schedule {schedule_id} deleted", markup=False)
