"""Per-function settings read from the environment (names exactly as the template sets them).

Each function gets its own model so a missing variable fails at cold start naming the variable,
instead of at the first event that needs it. Attribute names are the lower-case env names.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .limits import MAX_CHUNK_ROWS, MIN_CHUNK_ROWS
from .spec import DEFAULT_CHUNK_ROWS


class _FunctionSettings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    tasks_table: str = Field(min_length=1)


class _PublishingSettings(_FunctionSettings):
    event_bus_name: str = Field(min_length=1)
    # Empty: no SNS notification (the bus still gets TaskSucceeded/TaskFailed).
    notification_topic_arn: str = ""
    # the page's origin (template parameter WebOrigin): a notification links to the task's page there
    web_origin: str = ""
    # Template parameter FinishedTaskRetentionDays: DynamoDB's TTL deletes a finished task this long after.
    finished_task_retention_days: int = Field(default=90, ge=1, le=3650)


class _SourceReaderSettings(_FunctionSettings):
    """The functions that judge or read sources: the API at submit, extract, transform (joins)."""

    # Template parameter AllowLoopbackHttpSources: only the local cloud serves sources on loopback, so
    # only there may a source be plain http:// (and then only to loopback; safe_http.py).
    allow_loopback_http_sources: bool = False


class _StepSettings(_PublishingSettings):
    data_bucket: str = Field(min_length=1)
    idempotency_table: str = ""
    max_receive_count: int = Field(default=3, ge=1)
    # SSM parameter holding the deliberate fault switch ("none", "transform:fail", ...); empty: no faults
    faults_parameter: str = ""
    # how long a warm container reuses the switch it read (template parameter FaultSwitchCacheSeconds)
    faults_max_age_seconds: int = Field(default=60, ge=1, le=3600)
    # the queue that triggers this step (its URL): a failed record's next delivery is brought forward
    # (retries.py); empty: SQS redelivers after the visibility timeout
    step_queue_url: str = ""


class ApiSettings(_PublishingSettings, _SourceReaderSettings):
    data_bucket: str = Field(min_length=1)
    chunk_rows: int = Field(default=DEFAULT_CHUNK_ROWS, ge=MIN_CHUNK_ROWS, le=MAX_CHUNK_ROWS)  # when a request does not say
    # the secret whose value signs page tokens (paging.py); the key itself is never in the environment
    page_token_secret_arn: str = Field(min_length=1)
    # the one browser origin (the page's scheme://host:port, template parameter WebOrigin) that may call
    web_origin: str = Field(min_length=1)
    # comma-separated buckets (template parameter ReadableBuckets) whose every object a task may read,
    # besides the owner's uploads and shared/ in the data bucket (source_access.py); empty: none
    readable_buckets: str = ""
    # the warehouse pipeline dashboards read (GET /pipelines/{name}/dashboard), as for LoadSettings
    database_secret_arn: str = ""
    database_url: str = ""
    # POST /schedules: the table indexing them, the stack's schedule group, the function each schedule
    # invokes and the role EventBridge Scheduler invokes it with; empty: schedules are not offered
    schedules_table: str = ""
    schedule_group: str = ""
    scheduled_run_function_arn: str = ""
    scheduler_role_arn: str = ""


class ScheduledRunSettings(_PublishingSettings, _SourceReaderSettings):
    """The function a schedule invokes: it submits the run as the schedule's owner, as the API would."""

    data_bucket: str = Field(min_length=1)
    chunk_rows: int = Field(default=DEFAULT_CHUNK_ROWS, ge=MIN_CHUNK_ROWS, le=MAX_CHUNK_ROWS)
    readable_buckets: str = ""


class ExtractSettings(_StepSettings, _SourceReaderSettings):
    pass


class TransformSettings(_StepSettings, _SourceReaderSettings):
    pass


class LoadSettings(_StepSettings):
    database_secret_arn: str = ""
    # Only when the template maps one; otherwise the URL comes from DATABASE_SECRET_ARN.
    database_url: str = ""
    # Template parameters DynamoTargetWriteRate (items per second into one DynamoDB target, all loads
    # together) and LoadMaxConcurrency (how many loads run at once): each load writes its share.
    dynamodb_target_write_rate: float = Field(default=1000, gt=0)
    load_max_concurrency: int = Field(default=5, ge=1)


class StreamSettings(BaseSettings):
    """ProgressFunction: tasks-table stream -> WebSocket pushes."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    tasks_table: str = Field(min_length=1)
    connections_table: str = Field(min_length=1)
    websocket_management_endpoint: str = Field(min_length=1)
    # Template parameter ProgressFramesPerSecond: most pushes per task and second (progress.FrameThrottle);
    # a throttled change waits up to 1/N s inside the invocation, so N stays >= 1.
    progress_frames_per_second: float = Field(default=4, ge=1, le=100)


class ConnectionsSettings(_FunctionSettings):
    """ConnectionsFunction: the WebSocket routes."""

    connections_table: str = Field(min_length=1)
    websocket_management_endpoint: str = Field(min_length=1)


class WatchdogSettings(_PublishingSettings):
    stall_seconds: int = Field(default=300, ge=1)
    # comma-separated step DLQ URLs the watchdog reads (without consuming) for tasks never told
    dead_letter_queue_urls: str = ""


class AuthorizerSettings(BaseSettings):
    """WebSocketAuthorizerFunction: verifies Cognito access tokens of one pool."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    user_pool_id: str = Field(min_length=1)
    # comma-separated app client ids whose tokens are accepted; empty: any client of the pool
    user_pool_client_ids: str = ""

    @property
    def client_ids(self) -> list[str]:
        return [client.strip() for client in self.user_pool_client_ids.split(",") if client.strip()]
