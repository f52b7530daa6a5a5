"""Wire contracts: EventBridge detail models, the SQS record models the handlers parse, task status,
the TaskSnapshot (GET /tasks/{id} and every WebSocket progress message) and the API request models.

Field names are camelCase on purpose: they are the JSON names, and Powertools idempotency hashes
`model_dump()` (no aliases), so `taskId` must be the attribute name for a `[taskId, phase, chunk]` key.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel, SqsRecordModel
from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Json, RootModel, Tag

from .limits import MAX_CONTENT_TYPE_LENGTH, MAX_FILE_NAME_LENGTH, MAX_PIPELINE_NAME_LENGTH
from .spec import TaskSpec

EVENT_SOURCE = "busline"

TASK_SUBMITTED = "TaskSubmitted"
SOURCE_STAGING_PAUSED = "SourceStagingPaused"
SOURCE_READING_PAUSED = "SourceReadingPaused"
CHUNK_EXTRACTED = "ChunkExtracted"
CHUNK_TRANSFORMED = "ChunkTransformed"
PHASE_COMPLETED = "PhaseCompleted"
TASK_SUCCEEDED = "TaskSucceeded"
TASK_FAILED = "TaskFailed"
TASK_CANCELLED = "TaskCancelled"


class TaskStatus(StrEnum):
    ACCEPTED = "ACCEPTED"
    EXTRACTING = "EXTRACTING"
    TRANSFORMING = "TRANSFORMING"
    LOADING = "LOADING"
    COMMITTING = "COMMITTING"  # every chunk is staged; the merge into the target (one transaction) runs
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class Phase(StrEnum):
    EXTRACT = "extract"
    TRANSFORM = "transform"
    LOAD = "load"

PHASE_ORDER: tuple[Phase, ...] = (Phase.EXTRACT, Phase.TRANSFORM, Phase.LOAD)


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


# --- event details (no row data: keys and counts only) ----------------------------------------------


class _Event(_Wire):
    """Every event detail carries its task's correlation id (correlation.py stamps it when published), so
    each step's log lines and trace annotations name the request that started the task. None only on
    events of tasks submitted before correlation ids existed."""

    correlationId: str | None = None


class StagingCheckpoint(_Wire):
    """Where a paused copy of a source into the data bucket stands (staging.py): the multipart upload and
    how many bytes of the decompressed source its parts hold."""

    uploadId: str
    stagedBytes: int = Field(ge=0)


class ReadingCheckpoint(_Wire):
    """Where the one reader of a source no byte range can split (a JSON array, CSV with multiline fields, a
    row `limit`, a small source) stopped before its invocation ran out of time (etl_steps): right after the
    last record of the last chunk it stored."""

    offset: int = Field(ge=0)  # the byte of the decompressed source after that record
    lines: int = Field(ge=0)  # physical lines up to there, so errors name the source's own lines
    chunks: int = Field(ge=0)  # chunks the task has so far: the next chunk's number
    rows: int = Field(ge=0)  # records read so far (a `limit` counts on from here)
    etag: str | None = None  # the S3 object version read: the rest is read from the same one


class TaskSubmitted(_Event):
    """What the extract queue carries: a new task (detail-type TaskSubmitted), or the same task whose source
    copy paused before its invocation ran out of time (detail-type SourceStagingPaused, `staging` set), or
    whose one reader did (detail-type SourceReadingPaused, `reading` set)."""

    taskId: str
    staging: StagingCheckpoint | None = None
    reading: ReadingCheckpoint | None = None


class SourceRange(_Wire):
    """A byte range of a source read in parallel: its reader owns the records that start inside it."""

    start: int = Field(ge=0)
    end: int = Field(ge=0)  # exclusive
    size: int = Field(ge=0)  # of the whole object, as planned
    etag: str | None = None  # the object version planned: a range never mixes two versions
    # the copy in the data bucket a compressed or https source was staged into (staging.py); None: the source
    staged: str | None = None
    header: str | None = None  # a CSV source's header line, when short enough to travel in the event


class ChunkExtracted(_Event):
    taskId: str
    phase: Literal["transform"] = "transform"  # the phase that consumes it: rules route on it
    chunk: int = Field(ge=0)
    key: str  # the raw chunk in the data bucket; empty when `range` says what to read from the source
    rows: int = Field(ge=0)  # 0 when `range` is set: rows are known once the range is read
    range: SourceRange | None = None
    # rows the previous run of the task's schedule rejected, offered again (retryRejects): they come first,
    # so the source's chunks follow them and `firstRow` numbers those
    offeredAgain: bool = False
    firstRow: int | None = Field(default=None, ge=1)  # the source row number of the chunk's first row


class ChunkTransformed(_Event):
    taskId: str
    phase: Literal["load"] = "load"
    chunk: int = Field(ge=0)
    key: str
    rows: int = Field(ge=0)
    offeredAgain: bool = False  # from a chunk of rows offered again (ChunkExtracted.offeredAgain)


class PhaseCompleted(_Event):
    taskId: str
    phase: Phase
    chunks: int = Field(ge=0)


class Counts(_Wire):
    read: int = 0
    filtered: int = 0
    rejected: int = 0
    loaded: int = 0  # rows inserted or updated (mode insert, upsert, replace)
    deleted: int = 0  # rows deleted: by key (mode delete), or the rows a replace did not keep


class TaskError(_Wire):
    phase: Phase
    chunk: int | None = None
    message: str


class TaskCost(_Wire):
    """What a task cost on AWS, estimated from its counted requests and compute at list prices (usage.py
    says what is counted, pricing.py holds the prices)."""

    usd: float
    byService: dict[str, float]
    requests: int  # AWS requests counted for the task: its functions' calls and invocations, SQS deliveries
    lambdaGbSeconds: float
    unpriced: dict[str, float] = {}  # requests counted but without a price in the table (not in usd)
    prices: str  # which price list, and when it was checked
    counted: dict[str, float] = {}  # what the estimate is made of: "<service>:<operation>" and usage.py's own keys


class ScheduledBy(_Wire):
    """A run a schedule started: which schedule, and the time it was due (EventBridge Scheduler's)."""

    scheduleId: str
    scheduledTime: str  # ISO 8601 UTC, e.g. 2026-12-01T06:00:00Z


class RetriedRows(_Wire):
    """A scheduled run with retryRejects: what became of the rows the previous run rejected, offered again
    with this run's source. Rows offered again are not in `counts` (those are the source's)."""

    of: str  # the previous run's task id
    offered: int = 0
    recovered: int = 0  # loaded this time
    rejectedAgain: int = 0  # kept as this run's rejects, so the next run offers them again


class TaskFinished(_Event):
    """Detail of TaskSucceeded / TaskFailed (the detail-type says which), and the SNS notification's."""

    taskId: str
    status: TaskStatus
    counts: Counts
    error: TaskError | None = None
    cost: TaskCost | None = None
    pipeline: str | None = None
    durationSeconds: float | None = None  # from submission to the end
    scheduledBy: ScheduledBy | None = None
    retried: RetriedRows | None = None

    @property
    def detail_type(self) -> str:
        return {TaskStatus.SUCCEEDED: TASK_SUCCEEDED, TaskStatus.CANCELLED: TASK_CANCELLED}.get(
            self.status, TASK_FAILED
        )


# --- SQS records whose body is the EventBridge event (BatchProcessor(EventType.SQS, model=...)) -----


class TaskSubmittedEvent(EventBridgeModel):
    detail: TaskSubmitted  # type: ignore[assignment]


class ChunkExtractedEvent(EventBridgeModel):
    detail: ChunkExtracted  # type: ignore[assignment]


class ChunkTransformedEvent(EventBridgeModel):
    detail: ChunkTransformed  # type: ignore[assignment]


class _ChunkToLoad(ChunkTransformedEvent):
    detail_type: Literal["ChunkTransformed"] = Field(alias="detail-type")


class _LoadPhaseCompleted(EventBridgeModel):
    """Every chunk is staged: commit "task" merges them into the target now (warehouse.commit_task)."""

    detail_type: Literal["PhaseCompleted"] = Field(alias="detail-type")
    detail: PhaseCompleted  # type: ignore[assignment]


class _TaskCancelled(EventBridgeModel):
    """The task was cancelled: what it staged is discarded."""

    detail_type: Literal["TaskCancelled"] = Field(alias="detail-type")
    detail: TaskFinished  # type: ignore[assignment]


LoadWork = Annotated[_ChunkToLoad | _LoadPhaseCompleted | _TaskCancelled, Field(discriminator="detail_type")]


class LoadRecord(SqsRecordModel):
    """What LoadQueue carries: a chunk to load, a task to commit, a cancelled task to clean up."""

    body: Json[LoadWork]  # type: ignore[assignment]


class TaskSubmittedRecord(SqsRecordModel):
    body: Json[TaskSubmittedEvent]  # type: ignore[assignment]


class ChunkExtractedRecord(SqsRecordModel):
    body: Json[ChunkExtractedEvent]  # type: ignore[assignment]


class ChunkTransformedRecord(SqsRecordModel):
    body: Json[ChunkTransformedEvent]  # type: ignore[assignment]


# --- TaskSnapshot ---------------------------------------------------------------------------------

PhaseState = Literal["pending", "running", "completed", "failed"]


class PhaseProgress(_Wire):
    done: int = 0
    total: int | None = None  # unknown until extract has completed
    status: PhaseState = "pending"


class Phases(_Wire):
    extract: PhaseProgress = PhaseProgress()
    transform: PhaseProgress = PhaseProgress()
    load: PhaseProgress = PhaseProgress()


class PhaseTiming(_Wire):
    startedAt: str | None = None
    completedAt: str | None = None
    seconds: float | None = None  # set once the phase completed


class RetryNotice(_Wire):
    """A piece of work whose last delivery failed and that will be tried again (retries.py)."""

    phase: Phase
    chunk: int | None = None
    attempt: int  # the delivery that failed
    error: str
    retryAt: str  # when the next delivery is due (ISO 8601, UTC)


class TaskTarget(_Wire):
    """Where the task writes (its spec's target, without the key): what the page and the CLI name."""

    kind: str = "postgres"
    table: str
    mode: str
    commit: Literal["task", "chunk"]


class TaskSnapshot(_Wire):
    taskId: str
    owner: str
    pipeline: str
    status: TaskStatus
    createdAt: str
    updatedAt: str
    updatedAtMs: int
    phases: Phases
    counts: Counts
    timings: dict[str, PhaseTiming] = {}
    error: TaskError | None = None
    commit: Literal["task", "chunk"] = "chunk"  # the target's commit mode (spec.target.commit)
    committedAt: str | None = None  # commit "task": when the task's rows became visible in the target
    retrying: list[RetryNotice] = []
    target: TaskTarget | None = None  # None only for a task whose spec cannot be read
    # the request that submitted the task (its X-Correlation-Id, or API Gateway's request id): every log
    # line of every function about this task carries it (`busline logs`)
    correlationId: str | None = None
    # estimated AWS cost so far (final once the task is): None for a task whose usage was never counted
    cost: TaskCost | None = None
    scheduledBy: ScheduledBy | None = None  # None for a task submitted over the API
    retried: RetriedRows | None = None  # a scheduled run that offered the previous run's rejects again


class TaskPage(_Wire):
    items: list[TaskSnapshot]
    nextToken: str | None = None


class Reject(_Wire):
    """A source row that could not be loaded, and why (GET /tasks/{id}/rejects lists them)."""

    # source row number, counted from 1; None for a source read in byte ranges, whose rows are not
    # numbered without reading everything before them: `at` then says where the row is
    row: int | None
    reason: str
    data: dict[str, Any]
    at: str | None = None


class RejectPage(_Wire):
    items: list[Reject]
    nextToken: str | None = None


class RejectValueCount(_Wire):
    value: str
    rows: int


class RejectGroup(_Wire):
    """Rejected rows of one kind ("join airports: no match for dest"), with the values most often at fault."""

    reason: str
    rows: int
    values: list[RejectValueCount] = []


class RejectSummary(_Wire):
    total: int  # rows rejected (the task's counts.rejected)
    summarized: int  # the kept rejects these groups count (at most MAX_REJECTS_KEPT_PER_CHUNK per chunk)
    complete: bool  # False when more kept rejects exist than one summary reads (MAX_SUMMARIZED_REJECTS)
    groups: list[RejectGroup]  # most rows first


class LoadOutcome(_Wire):
    """What loading one chunk (commit "chunk"), staging it (commit "task") or merging a task's staged rows
    did; the counts are those of the delivery that recorded it."""

    rows: int  # rows inserted or updated in the target; staged rows, for a chunk staged
    already_loaded: bool  # True when an earlier delivery had done it
    deleted: int = 0
    rejected: int = 0  # rows refused by the target (mode insert: a key already there, or twice in the task)
    rejects: list[Reject] = []  # the first of those, with their reason


# --- POST /tasks ----------------------------------------------------------------------------------


class PipelineRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pipeline: str = Field(min_length=1, max_length=MAX_PIPELINE_NAME_LENGTH)
    params: dict[str, Any] = {}


def _request_kind(value: Any) -> str:
    # A body naming a pipeline is a pipeline request; anything else must be a full TaskSpec, so a
    # typo in a spec is reported against the spec's own fields.
    if isinstance(value, dict):
        return "pipeline" if "pipeline" in value else "spec"
    return "pipeline" if isinstance(value, PipelineRequest) else "spec"


class SubmitTaskRequest(
    RootModel[
        Annotated[
            Annotated[PipelineRequest, Tag("pipeline")] | Annotated[TaskSpec, Tag("spec")],
            Discriminator(_request_kind),
        ]
    ]
):
    """`{"pipeline": name, "params": {...}}` or an ad-hoc TaskSpec; `.root` is the one given."""


# --- POST /uploads --------------------------------------------------------------------------------

# The name becomes the last part of an S3 key and of the s3:// URI a spec names, so it is kept to
# characters that mean the same in both (no '%', '?', '#', spaces) and never starts with a dot.
# what SNS takes as an e-mail endpoint, roughly: one @, no spaces, a dot in the domain
EMAIL_ADDRESS = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
_UPLOAD_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# type/subtype with optional ;key=value parameters: nothing that could break out of a header line
_CONTENT_TYPE = r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*(; ?[A-Za-z0-9!#$&^_.+-]+=[A-Za-z0-9!#$&^_.+-]+)*$"


def _check_file_name(value: str) -> str:
    if "/" in value or "\\" in value:
        raise ValueError("must be a plain file name, without '/' or '\\' (a folder is chosen for you)")
    if not _UPLOAD_FILE_NAME.fullmatch(value):
        raise ValueError(
            f"'{value}' is not a usable file name: letters, digits, '.', '_' and '-', starting with a letter or digit"
        )
    return value


class UploadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fileName: Annotated[str, Field(min_length=1, max_length=MAX_FILE_NAME_LENGTH), AfterValidator(_check_file_name)]
    # Signed into the URL when given, so the PUT must then carry exactly this Content-Type.
    contentType: str | None = Field(default=None, max_length=MAX_CONTENT_TYPE_LENGTH, pattern=_CONTENT_TYPE)


class UploadTicket(_Wire):
    """What `POST /uploads` answers: PUT the file to `uploadUrl` (with `headers`), then name `uri` in a spec."""

    uploadUrl: str
    uri: str
    expiresIn: int  # seconds the URL stays valid
    method: Literal["PUT"] = "PUT"
    headers: dict[str, str] = Field(default_factory=dict)


# --- schedules (POST /schedules; what EventBridge Scheduler hands the scheduled-run function) --------


class ScheduleRequest(BaseModel):
    """Run a named pipeline with these params on a schedule, as the caller."""

    model_config = ConfigDict(extra="forbid")

    pipeline: str = Field(min_length=1, max_length=MAX_PIPELINE_NAME_LENGTH)
    params: dict[str, Any] = {}
    # EventBridge Scheduler's: rate(1 day), cron(0 6 * * ? *), at(2026-12-24T18:00:00) (schedule_expressions.py)
    expression: str = Field(min_length=1, max_length=256)
    timezone: str = Field(default="UTC", min_length=1, max_length=50)  # IANA, e.g. Europe/Paris
    description: str = Field(default="", max_length=512)
    # an address mailed when each of this schedule's runs ends (an SNS e-mail subscription filtered to it)
    notifyEmail: str | None = Field(default=None, max_length=254, pattern=EMAIL_ADDRESS)
    # offer each run the rows the previous run rejected (None: as the pipeline says, retry_rejects)
    retryRejects: bool | None = None


class Schedule(_Wire):
    scheduleId: str
    pipeline: str
    params: dict[str, Any]
    expression: str
    timezone: str
    description: str = ""
    notifyEmail: str | None = None
    retryRejects: bool = False
    createdAt: str
    nextRuns: list[str] = []  # the next few firings, ISO 8601 UTC (none once an at() has passed)


class ScheduleList(_Wire):
    items: list[Schedule]


class ScheduledRun(_Wire):
    """The Input of a Busline schedule: who it runs as and what, plus the context attributes
    EventBridge Scheduler fills in when it fires (<aws.scheduler.scheduled-time>, ...-schedule-arn>)."""

    owner: str = Field(min_length=1)
    scheduleId: str = Field(min_length=1)
    pipeline: str = Field(min_length=1, max_length=MAX_PIPELINE_NAME_LENGTH)
    params: dict[str, Any] = {}
    scheduledTime: str = Field(min_length=1)
    scheduleArn: str = Field(min_length=1)
    retryRejects: bool = False
    # the schedule's expression: with retryRejects, when the previous run was due (its task id follows)
    expression: str = ""
    timezone: str = "UTC"
