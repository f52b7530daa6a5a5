"""SQS (ChunkTransformed) -> write one chunk into Postgres, exactly once (ledger). Thin: the work is steps.load_chunk; the SQS/idempotency frame is busline_core.sqs_step."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.typing import LambdaContext
from busline_core import steps
from busline_core.contracts import ChunkTransformed, ChunkTransformedRecord
from busline_core.settings import LoadSettings
from busline_core.sqs_step import SqsStep
from busline_core.wiring import build_deps

logger = Logger()
tracer = Tracer()
metrics = Metrics()
settings = LoadSettings()
deps = build_deps(settings)
step: SqsStep[ChunkTransformed] = SqsStep(
    record_model=ChunkTransformedRecord,
    work=lambda detail: steps.load_chunk(detail, deps),
    on_final_failure=lambda detail, error: steps.record_final_failure(detail, error, deps),
    idempotency_key="[taskId, phase, chunk]",
    idempotency_table=settings.idempotency_table,
    max_receive_count=settings.max_receive_count,
    metric_name="RowsLoaded",
    logger=logger,
    metrics=metrics,
)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return step.handle(event, context)
