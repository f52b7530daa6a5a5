"""ScheduledRunFunction: EventBridge Scheduler invokes it when one of the owners' schedules is due; it
submits that run as the schedule's owner (busline_core.schedules)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext
from busline_core import correlation
from busline_core.contracts import ScheduledRun
from busline_core.deps import build_scheduled_run_deps
from busline_core.errors import BuslineError
from busline_core.schedules import run_scheduled
from busline_core.settings import ScheduledRunSettings

logger = Logger()
tracer = Tracer()
deps = build_scheduled_run_deps(ScheduledRunSettings())


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_parser(model=ScheduledRun)
def lambda_handler(run: ScheduledRun, context: LambdaContext) -> dict[str, Any]:
    correlation.bind(f"schedule-{run.scheduleId}-{run.scheduledTime}")
    try:
        snapshot = run_scheduled(run, deps)
    except BuslineError as error:
        if error.retryable:
            raise  # Scheduler tries again (its RetryPolicy)
        # the pipeline or its params no longer pass (pipelines/ changed since): trying again cannot help
        logger.error("scheduled run refused", extra={"schedule": run.scheduleId, "reason": error.message})
        return {"scheduleId": run.scheduleId, "refused": error.message}
    return {"scheduleId": run.scheduleId, "taskId": snapshot.taskId}
