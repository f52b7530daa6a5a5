"""`busline new pipeline NAME` (a pipeline module and its test in the current project's pipelines/) and
`busline new project DIR` (the Busline app and one example pipeline, as a project of its own)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from busline.scaffold.generate import ScaffoldError, new_pipeline
from busline.scaffold.project import new_project

app = typer.Typer(no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)


@app.command("pipeline")
def pipeline(
    name: Annotated[str, typer.Argument(help="The pipeline's name: its module, and what tasks name it by.")],
    folder: Annotated[Path, typer.Option("--dir", help="The project's pipelines folder.")] = Path("pipelines"),
) -> None:
    """Write pipelines/NAME.py (a spec and a hook, under 20 lines) and pipelines/test_NAME.py."""
    try:
        written = new_pipeline(name, folder)
    except ScaffoldError as error:
        err_console.print(str(error), style="red", markup=False)
        raise typer.Exit(2) from None
    for path in written:
        console.print(f"wrote {path}", markup=False)
    console.print(
        f"next: put the file at s3://<DataBucketName>/shared/{name}/{name}.csv, run `make test`, then "
        f"`busline submit {name} --follow` (sam deploy ships it with PipelinesLayer)",
        markup=False,
    )


@app.command("project")
def project(folder: Annotated[Path, typer.Argument(help="A new (or empty) folder for the project.")]) -> None:
    """Write a project: template.yaml, samconfig.toml, src/, web/, a Makefile (run, test), a README, the
    runbook, a CI script and pipelines/ with one example pipeline and its test."""
    try:
        new_project(folder)
    except ScaffoldError as error:
        err_console.print(str(error), style="red", markup=False)
        raise typer.Exit(2) from None
    console.print(f"wrote {folder}: cd {folder} && make test, then make run", markup=False)
