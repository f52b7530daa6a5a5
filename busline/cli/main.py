"""The `busline` console script: one typer app, one sub-app per area."""

from __future__ import annotations

import typer

from busline.cli import dlq, local, new, schedules, session, tasks

app = typer.Typer(no_args_is_help=True, help="Busline: event-driven ETL for AWS serverless.")
app.add_typer(local.app, name="local", help="Run template.yaml on this machine (no Docker).")
app.add_typer(dlq.app, name="dlq", help="Inspect and replay dead-letter queues.")
app.add_typer(new.app, name="new", help="Start something new: a project, or a pipeline of this one.")
app.add_typer(schedules.app, name="schedule", help="Run a pipeline on a schedule (EventBridge Scheduler).")
tasks.register(app)  # submit, status, tasks
session.register(app)  # login, logout, token

if __name__ == "__main__":
    app()
