"""Schedules: a named pipeline run as its owner on an EventBridge Scheduler expression.

The API creates, lists and deletes the caller's schedules (another owner's answers exactly like a
missing one); when one fires, Scheduler invokes the scheduled-run function, which submits the run the
way POST /tasks would, under a task id derived from the schedule and the time it was due. Scheduler
delivers at least once, so a repeated delivery finds its task recorded and only announces it again
if it never left ACCEPTED (extract takes a repeated TaskSubmitted as the same one).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from aws_lambda_powertools import Logger

from . import schedule_expressions, task_api
from .contracts import (
    PipelineRequest,
    Schedule,
    ScheduledBy,
    ScheduledRun,
    ScheduleList,
    ScheduleRequest,
    TaskSnapshot,
)
from .deps import ApiDeps, SubmitDeps
from .errors import InvalidTask, RequestTooLarge, ScheduleNotFound
from .limits import MAX_SCHEDULE_INPUT_CHARS, MAX_SCHEDULES_PER_OWNER, SCHEDULE_NEXT_RUNS
from .pipelines import pipeline_named
from .schedule_expressions import InvalidScheduleExpression
from .schedules_repo import ScheduleRecord

logger = Logger(child=True)

# Scheduler fills these in when it fires (its "context attributes").
SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"
SCHEDULE_ARN = "<aws.scheduler.schedule-arn>"
# Task ids of scheduled runs: uuid5 in this namespace of "<schedule ARN>|<scheduled time>".
_RUN_NAMESPACE = uuid.UUID("5b0c8a52-5f0e-4a43-9a57-2c1d3e9b7f10")
# "next runs" include one due this very instant (a rate schedule fires when it is created)
_JUST_BEFORE = timedelta(microseconds=1)


def _field(field: str, message: str) -> InvalidTask:
    return InvalidTask(f"invalid schedule: {field}: {message}", errors=[{"field": field, "message": message}])


def create_schedule(request: ScheduleRequest, owner: str, deps: ApiDeps) -> Schedule:
    """Check everything a run would be checked for, then create the schedule (400 naming each field)."""
    try:
        expression = schedule_expressions.parse(request.expression, request.timezone)
    except InvalidScheduleExpression as error:
        field = "timezone" if "time zone" in str(error) else "expression"
        raise _field(field, str(error)) from None
    _, spec = task_api.checked_spec(PipelineRequest(pipeline=request.pipeline, params=request.params), owner, deps)
    retry_rejects = pipeline_named(request.pipeline).retry_rejects if request.retryRejects is None else request.retryRejects
    if retry_rejects and spec.target.commit != "chunk":
        raise _field(
            "retryRejects",
            f'needs a target committed chunk by chunk (target.commit "chunk"); {request.pipeline} commits '
            f'"{spec.target.commit}", whose merge cannot tell rows offered again from the source\'s',
        )
    now = deps.clock()
    if expression.kind == "at" and expression.next_after(now) is None:
        raise _field("expression", f"{request.expression} in {request.timezone} is in the past")
    repository = deps.schedules()
    if repository.count(owner) >= MAX_SCHEDULES_PER_OWNER:
        raise _field("schedules", f"you have {MAX_SCHEDULES_PER_OWNER} schedules, the most one owner may keep")
    record = ScheduleRecord(
        owner=owner,
        schedule_id=uuid.uuid4().hex[:12],
        pipeline=request.pipeline,
        params=request.params,
        expression=request.expression,
        timezone=request.timezone,
        description=request.description,
        created_at=_iso(now),
        notify_email=request.notifyEmail,
        retry_rejects=retry_rejects,
    )
    run = ScheduledRun(
        owner=owner,
        scheduleId=record.schedule_id,
        pipeline=record.pipeline,
        params=record.params,
        scheduledTime=SCHEDULED_TIME,
        scheduleArn=SCHEDULE_ARN,
        retryRejects=retry_rejects,
        expression=record.expression,
        timezone=record.timezone,
    )
    input_text = run.model_dump_json()
    if len(input_text) > MAX_SCHEDULE_INPUT_CHARS:
        raise RequestTooLarge(
            "params",
            f"the schedule's input is {len(input_text):,} characters, over EventBridge Scheduler's "
            f"{MAX_SCHEDULE_INPUT_CHARS:,}",
        )
    record = repository.create(record, input_text)
    logger.info("schedule created", extra={"schedule_id": record.schedule_id, "pipeline": record.pipeline})
    return _shown(record, now)


def list_schedules(owner: str, deps: ApiDeps) -> ScheduleList:
    now = deps.clock()
    records = sorted(deps.schedules().list(owner), key=lambda record: record.created_at)
    return ScheduleList(items=[_shown(record, now) for record in records])


def get_schedule(schedule_id: str, owner: str, deps: ApiDeps) -> Schedule:
    record = deps.schedules().get(owner, schedule_id)
    if record is None:
        raise ScheduleNotFound(schedule_id)
    return _shown(record, deps.clock())


def delete_schedule(schedule_id: str, owner: str, deps: ApiDeps) -> None:
    """Runs it already started carry on; no new one starts."""
    if not deps.schedules().delete(owner, schedule_id):
        raise ScheduleNotFound(schedule_id)
    logger.info("schedule deleted", extra={"schedule_id": schedule_id})


def _run_task_id(schedule_arn: str, scheduled_time: str) -> str:
    return str(uuid.uuid5(_RUN_NAMESPACE, f"{schedule_arn}|{scheduled_time}"))


def previous_run(run: ScheduledRun, deps: SubmitDeps) -> str | None:
    """The task of the schedule's run before this one, when it has ended: its rejects are offered again.
    None when there was none (the first run, a missed one), or it is still running (its rejects are not
    all known: they wait for the run after)."""
    try:
        due = datetime.fromisoformat(run.scheduledTime.replace("Z", "+00:00"))
        before = schedule_expressions.parse(run.expression, run.timezone).previous_before(due)
    except (ValueError, InvalidScheduleExpression):
        return None
    if before is None:
        return None
    task_id = _run_task_id(run.scheduleArn, _iso(before))
    previous = deps.tasks.get(task_id)
    if previous is None or previous.owner != run.owner:
        return None
    if not previous.is_final:
        logger.info("the previous run is still going: its rejects wait for the next run", extra={"task_id": task_id})
        return None
    return task_id


def run_scheduled(run: ScheduledRun, deps: SubmitDeps) -> TaskSnapshot:
    """Submit the run a schedule is due for, once however often Scheduler delivers it."""
    return task_api.submit_once(
        PipelineRequest(pipeline=run.pipeline, params=run.params),
        run.owner,
        deps,
        task_id=_run_task_id(run.scheduleArn, run.scheduledTime),
        scheduled_by=ScheduledBy(scheduleId=run.scheduleId, scheduledTime=run.scheduledTime),
        retry_of=previous_run(run, deps) if run.retryRejects else None,
    )


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _shown(record: ScheduleRecord, now: datetime) -> Schedule:
    expression = schedule_expressions.parse(record.expression, record.timezone)
    started = datetime.fromisoformat(record.created_at.replace("Z", "+00:00"))
    upcoming = expression.runs_after(started, now - _JUST_BEFORE, SCHEDULE_NEXT_RUNS)
    return Schedule(
        scheduleId=record.schedule_id,
        pipeline=record.pipeline,
        params=record.params,
        expression=record.expression,
        timezone=record.timezone,
        description=record.description,
        notifyEmail=record.notify_email,
        retryRejects=record.retry_rejects,
        createdAt=record.created_at,
        nextRuns=[_iso(moment) for moment in upcoming],
    )
