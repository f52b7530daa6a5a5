"""Build a function's Deps once per container (module scope of the handler), from its settings.

Nothing here knows where it runs: boto3 picks up AWS_ENDPOINT_URL (the local cloud) by itself.
"""

from __future__ import annotations

from functools import partial

import boto3

from .bus import EventPublisher, Notifier
from .connections import ConnectionsRepository, WebSocketPusher
from .dead_letters import DeadLetterQueues
from .secrets import active_faults, database_url
from .settings import (
    ApiSettings,
    ExtractSettings,
    LoadSettings,
    ProgressSettings,
    TransformSettings,
)
from .steps import Deps, Warehouse, no_faults
from .storage import ChunkStore
from .tasks_repo import TasksRepository

AnySettings = ApiSettings | ExtractSettings | TransformSettings | LoadSettings | ProgressSettings


def _open_warehouse(settings: LoadSettings) -> Warehouse:
    # Imported here: psycopg is only needed (and only initialised) by the load function.
    from .warehouse import Warehouse as PostgresWarehouse

    url = settings.database_url or database_url(settings.database_secret_arn)
    return PostgresWarehouse(url)


def build_deps(settings: AnySettings) -> Deps:
    deps = Deps(
        tasks=TasksRepository.from_table_name(settings.tasks_table),
        publisher=EventPublisher.for_bus(settings.event_bus_name) if settings.event_bus_name else None,
        notifier=Notifier.for_topic(settings.notification_topic_arn),
    )
    if isinstance(settings, ApiSettings | ExtractSettings | TransformSettings | LoadSettings):
        # The S3 client is the data plane's reader/writer (sources.py, storage.py take it as an argument).
        deps.s3 = boto3.client("s3")
        deps.chunks = ChunkStore(deps.s3, settings.data_bucket)
        deps.data_bucket = settings.data_bucket
    if isinstance(settings, ApiSettings | ExtractSettings):
        deps.chunk_rows = settings.chunk_rows
    if isinstance(settings, ExtractSettings | TransformSettings | LoadSettings):
        deps.faults = (
            partial(active_faults, settings.faults_parameter) if settings.faults_parameter else no_faults
        )
    if isinstance(settings, LoadSettings):
        deps.warehouse_factory = partial(_open_warehouse, settings)
    if isinstance(settings, ProgressSettings):
        deps.connections = ConnectionsRepository.from_table_name(settings.connections_table)
        if settings.websocket_management_endpoint:
            deps.pusher = WebSocketPusher(settings.websocket_management_endpoint)
        deps.stall_seconds = settings.stall_seconds
        if settings.dead_letter_queue_urls:
            deps.dead_letters = DeadLetterQueues.from_urls(settings.dead_letter_queue_urls)
    return deps
