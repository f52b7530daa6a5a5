"""What each kind of function works with, one typed class per kind, and how each is built once per
container (module scope of the handler) from that function's settings.

A step that needs something its function is not wired with is a mypy error, not a run-time surprise.
Nothing here knows where it runs: boto3 picks up AWS_ENDPOINT_URL (the local cloud) by itself.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from . import usage
from .batch_end import BatchEnd
from .bus import EventPublisher, Notifier
from .connections import ConnectionsRepository, WebSocketPusher
from .contracts import LoadOutcome
from .dead_letters import DeadLetterQueues
from .errors import ConfigurationError
from .lifecycle import TaskLifecycle
from .paging import PageTokens
from .retries import StepQueue
from .schedules_repo import SchedulesRepository
from .secrets import active_faults, database_url, page_token_key
from .settings import (
    ApiSettings,
    ConnectionsSettings,
    ExtractSettings,
    LoadSettings,
    ScheduledRunSettings,
    StreamSettings,
    TransformSettings,
    WatchdogSettings,
)
from .source_access import SourceAccess, parse_bucket_list
from .spec import OutputColumn, TargetSpec, TaskSpec
from .storage import ChunkStore
from .task_state import utc_now
from .tasks_repo import TasksRepository
from .transform import ReferenceTable

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pyarrow as pa

    from .dashboards import Dashboard, DashboardQuery

Clock = Callable[[], datetime]
Faults = Callable[[], frozenset[str]]


class ChunkTarget(Protocol):
    """What the load step needs of any target to write one transformed chunk into (exactly once)."""

    def load_chunk(
        self,
        task_id: str,
        chunk: int,
        owner: str,
        target: TargetSpec,
        columns: list[OutputColumn],
        rows: pa.Table,
    ) -> LoadOutcome: ...


class Warehouse(ChunkTarget, Protocol):
    """What the load step needs of warehouse.Warehouse (a fake stands in for Postgres in unit tests).
    `owner` is the task's: its tables live in its own schema (tenancy.py)."""

    def ensure_table(self, owner: str, target: TargetSpec, columns: list[OutputColumn]) -> None: ...

    def commit_task(self, task_id: str, owner: str, target: TargetSpec, columns: list[OutputColumn]) -> LoadOutcome: ...

    def discard_task(self, task_id: str, owner: str, target: TargetSpec) -> bool: ...


# dynamo_target.DynamoTarget: a target that commits chunk by chunk, so it has nothing more to offer
DynamoDbTarget = ChunkTarget


def no_faults() -> frozenset[str]:
    return frozenset()


def unbounded_time() -> float:
    return math.inf


@dataclass(frozen=True)
class TaskPlan:
    """What the chunk steps need of a task, which never changes once it is submitted."""

    owner: str
    spec: TaskSpec
    pipeline: str = ""  # a named pipeline's hook (pipelines.py) runs in transform


@dataclass
class WarmCache:
    """Per-container memory: reused across invocations of a warm Lambda, never shared between them."""

    tasks: OrderedDict[str, TaskPlan] = field(default_factory=OrderedDict)
    references: dict[tuple[Any, ...], ReferenceTable] = field(default_factory=dict)
    ensured_tables: set[tuple[str, str]] = field(default_factory=set)  # (owner, table)
    warehouse: Warehouse | None = None
    dynamo_target: DynamoDbTarget | None = None


class DashboardSource(Protocol):
    """What GET /pipelines/{name}/dashboard reads: dashboards.DashboardReader, a fake in unit tests."""

    def dashboard(
        self, pipeline: str, owner: str, table: str, queries: Sequence[DashboardQuery]
    ) -> Dashboard: ...


def _no_dashboards() -> DashboardSource:
    raise ConfigurationError("no warehouse is configured for dashboards (DATABASE_SECRET_ARN)")


class SubmitDeps(Protocol):
    """What submitting a task needs: the API has it, and so has the function a schedule invokes."""

    @property
    def tasks(self) -> TasksRepository: ...
    @property
    def publisher(self) -> EventPublisher: ...
    @property
    def data_bucket(self) -> str: ...
    @property
    def chunk_rows(self) -> int: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def source_access(self) -> SourceAccess: ...


@dataclass
class ScheduledRunDeps:
    tasks: TasksRepository
    publisher: EventPublisher
    data_bucket: str
    chunk_rows: int = 20000
    clock: Clock = utc_now
    readable_buckets: tuple[str, ...] = ()
    allow_loopback_http: bool = False

    @property
    def source_access(self) -> SourceAccess:
        return SourceAccess.of(
            self.data_bucket, self.readable_buckets, allow_loopback_http=self.allow_loopback_http
        )


def _no_schedules() -> SchedulesRepository:
    raise ConfigurationError(
        "schedules are not configured (SCHEDULES_TABLE, SCHEDULE_GROUP, SCHEDULED_RUN_FUNCTION_ARN, SCHEDULER_ROLE_ARN)"
    )


@dataclass
class ApiDeps:
    tasks: TasksRepository
    publisher: EventPublisher
    chunks: ChunkStore
    page_tokens: PageTokens
    data_bucket: str
    chunk_rows: int = 20000  # chunkRows of a request that does not say
    clock: Clock = utc_now
    readable_buckets: tuple[str, ...] = ()  # the operator's extra source buckets (ReadableBuckets)
    allow_loopback_http: bool = False  # AllowLoopbackHttpSources (the local cloud)
    schedules_factory: Callable[[], SchedulesRepository] = _no_schedules
    _schedules: SchedulesRepository | None = None

    def schedules(self) -> SchedulesRepository:
        if self._schedules is None:
            self._schedules = self.schedules_factory()
        return self._schedules
    # opened on the first dashboard of a warm container, then kept (the API never needs it otherwise)
    dashboard_source_factory: Callable[[], DashboardSource] = _no_dashboards
    _dashboard_source: DashboardSource | None = None

    def dashboards(self) -> DashboardSource:
        if self._dashboard_source is None:
            self._dashboard_source = self.dashboard_source_factory()
        return self._dashboard_source

    @property
    def source_access(self) -> SourceAccess:
        return SourceAccess.of(
            self.data_bucket, self.readable_buckets, allow_loopback_http=self.allow_loopback_http
        )


@dataclass
class StepDeps:
    """What extract, transform and load share: the task, its chunks, the fan-in, the fault switch."""

    tasks: TasksRepository
    lifecycle: TaskLifecycle
    chunks: ChunkStore
    faults: Faults = no_faults
    clock: Clock = utc_now
    cache: WarmCache = field(default_factory=WarmCache)
    # Seconds the running invocation has left (its Lambda context, bound per invocation by sqs_step.py):
    # work that may outlast it (staging a large source) checkpoints before it runs out.
    remaining_seconds: Callable[[], float] = unbounded_time
    step_queue: StepQueue | None = None  # the queue feeding this step: a failed record is retried in seconds
    batch: BatchEnd = field(default_factory=BatchEnd)  # what the running SQS batch's chunks left for its end

    def bind_invocation(self, context: Any) -> None:
        self.remaining_seconds = lambda: float(context.get_remaining_time_in_millis()) / 1000

    @property
    def publisher(self) -> EventPublisher:
        """The bus a step publishes its chunk events to: the same one its lifecycle announces on."""
        return self.lifecycle.publisher


@dataclass
class SourceStepDeps(StepDeps):
    """The steps that read sources: extract (the source) and transform (the joins)."""

    allow_loopback_http: bool = False  # AllowLoopbackHttpSources (the local cloud)


@dataclass
class ExtractDeps(SourceStepDeps):
    pass


@dataclass
class TransformDeps(SourceStepDeps):
    pass


@dataclass
class LoadDeps(StepDeps):
    warehouse_factory: Callable[[], Warehouse] = field(kw_only=True)
    dynamo_target_factory: Callable[[], DynamoDbTarget] = field(kw_only=True)


@dataclass
class StreamDeps:
    tasks: TasksRepository
    connections: ConnectionsRepository
    pusher: WebSocketPusher


@dataclass
class ConnectionsDeps:
    tasks: TasksRepository
    connections: ConnectionsRepository
    pusher: WebSocketPusher


@dataclass
class WatchdogDeps:
    tasks: TasksRepository
    lifecycle: TaskLifecycle
    dead_letters: DeadLetterQueues | None = None  # the step DLQs it peeks at
    stall_seconds: int = 300
    clock: Clock = utc_now


# --- built once per container from the function's settings -----------------------------------------


def _lifecycle(
    tasks: TasksRepository, settings: ExtractSettings | TransformSettings | LoadSettings | WatchdogSettings
) -> TaskLifecycle:
    return TaskLifecycle(
        tasks,
        EventPublisher.for_bus(settings.event_bus_name),
        Notifier.for_topic(settings.notification_topic_arn, settings.web_origin),
        retention=timedelta(days=settings.finished_task_retention_days),
    )


def _faults(settings: ExtractSettings | TransformSettings | LoadSettings) -> Faults:
    if not settings.faults_parameter:
        return no_faults
    return partial(active_faults, settings.faults_parameter, max_age=settings.faults_max_age_seconds)


def _open_dashboards(settings: ApiSettings) -> DashboardSource:
    from .dashboard_reader import DashboardReader  # psycopg is imported on the first dashboard only

    return DashboardReader(settings.database_url or database_url(settings.database_secret_arn))


def build_api_deps(settings: ApiSettings) -> ApiDeps:
    usage.METER.install()  # before any client is built: each counts its calls for the task at hand
    return ApiDeps(
        tasks=TasksRepository.from_table_name(settings.tasks_table),
        publisher=EventPublisher.for_bus(settings.event_bus_name),
        chunks=ChunkStore.for_bucket(settings.data_bucket),
        page_tokens=PageTokens(partial(page_token_key, settings.page_token_secret_arn)),
        data_bucket=settings.data_bucket,
        chunk_rows=settings.chunk_rows,
        readable_buckets=parse_bucket_list(settings.readable_buckets),
        allow_loopback_http=settings.allow_loopback_http_sources,
        dashboard_source_factory=partial(_open_dashboards, settings),
        schedules_factory=partial(_open_schedules, settings),
    )


def _open_schedules(settings: ApiSettings) -> SchedulesRepository:
    parts = (settings.schedules_table, settings.schedule_group, settings.scheduled_run_function_arn,
             settings.scheduler_role_arn)
    if not all(parts):
        return _no_schedules()
    return SchedulesRepository.connect(*parts, topic_arn=settings.notification_topic_arn)


def build_scheduled_run_deps(settings: ScheduledRunSettings) -> ScheduledRunDeps:
    usage.METER.install()  # before any client is built: each counts its calls for the task at hand
    return ScheduledRunDeps(
        tasks=TasksRepository.from_table_name(settings.tasks_table),
        publisher=EventPublisher.for_bus(settings.event_bus_name),
        data_bucket=settings.data_bucket,
        chunk_rows=settings.chunk_rows,
        readable_buckets=parse_bucket_list(settings.readable_buckets),
        allow_loopback_http=settings.allow_loopback_http_sources,
    )


def _step_parts(settings: ExtractSettings | TransformSettings | LoadSettings) -> dict[str, Any]:
    usage.METER.install()  # before any client is built: each counts its calls for the task at hand
    tasks = TasksRepository.from_table_name(settings.tasks_table)
    return {
        "tasks": tasks,
        "lifecycle": _lifecycle(tasks, settings),
        "chunks": ChunkStore.for_bucket(settings.data_bucket),
        "faults": _faults(settings),
        "step_queue": StepQueue.for_url(settings.step_queue_url) if settings.step_queue_url else None,
    }


def build_extract_deps(settings: ExtractSettings) -> ExtractDeps:
    return ExtractDeps(**_step_parts(settings), allow_loopback_http=settings.allow_loopback_http_sources)


def build_transform_deps(settings: TransformSettings) -> TransformDeps:
    return TransformDeps(**_step_parts(settings), allow_loopback_http=settings.allow_loopback_http_sources)


def _open_warehouse(settings: LoadSettings) -> Warehouse:
    # Imported here: psycopg is only needed (and only initialised) by the load function.
    from .warehouse import Warehouse as PostgresWarehouse

    return PostgresWarehouse(settings.database_url or database_url(settings.database_secret_arn))


def _open_dynamo_target(settings: LoadSettings) -> DynamoDbTarget:
    from .dynamo_target import DynamoTarget

    share = settings.dynamodb_target_write_rate / settings.load_max_concurrency
    return DynamoTarget.from_settings(settings.idempotency_table, share)


def build_load_deps(settings: LoadSettings) -> LoadDeps:
    return LoadDeps(
        **_step_parts(settings),
        warehouse_factory=partial(_open_warehouse, settings),
        dynamo_target_factory=partial(_open_dynamo_target, settings),
    )


def build_stream_deps(settings: StreamSettings) -> StreamDeps:
    return StreamDeps(
        tasks=TasksRepository.from_table_name(settings.tasks_table),
        connections=ConnectionsRepository.from_table_name(settings.connections_table),
        pusher=WebSocketPusher(settings.websocket_management_endpoint),
    )


def build_connections_deps(settings: ConnectionsSettings) -> ConnectionsDeps:
    return ConnectionsDeps(
        tasks=TasksRepository.from_table_name(settings.tasks_table),
        connections=ConnectionsRepository.from_table_name(settings.connections_table),
        pusher=WebSocketPusher(settings.websocket_management_endpoint),
    )


def build_watchdog_deps(settings: WatchdogSettings) -> WatchdogDeps:
    tasks = TasksRepository.from_table_name(settings.tasks_table)
    return WatchdogDeps(
        tasks=tasks,
        lifecycle=_lifecycle(tasks, settings),
        dead_letters=DeadLetterQueues.from_urls(settings.dead_letter_queue_urls)
        if settings.dead_letter_queue_urls
        else None,
        stall_seconds=settings.stall_seconds,
    )
