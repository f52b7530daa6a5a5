"""SQS (ChunkTransformed) -> write one chunk into Postgres (exactly once, via the ledger). Thin: the work is steps.load_chunk.

One record per invocation (BatchSize 1); a failure is reported for that record only, so SQS redelivers it and,
after MaxReceiveCount deliveries, moves it to the DLQ. Redeliveries and duplicates are absorbed twice over: the
idempotency record (taskId, phase, chunk) here, and the conditional counters inside the step.
"""

from __future__ import annotations

import logging
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError
from aws_lambda_powertools.utilities.typing import LambdaContext
from busline_core import steps
from busline_core.contracts import ChunkTransformed, ChunkTransformedRecord
from busline_core.settings import LoadSettings
from busline_core.wiring import build_deps

logger = Logger()
tracer = Tracer()
metrics = Metrics()
settings = LoadSettings()
deps = build_deps(settings)
# raise_on_entire_batch_failure=False: with one record per batch, report it in batchItemFailures instead of
# failing the whole invocation (same redelivery either way, but a clear outcome); failures are logged with
# their traceback through the Powertools logger's own stdlib logger.
processor = BatchProcessor(
    EventType.SQS, model=ChunkTransformedRecord, raise_on_entire_batch_failure=False, logger=logging.getLogger(logger.name)
)
idempotency = IdempotencyConfig(event_key_jmespath="[taskId, phase, chunk]", raise_on_no_idempotency_key=True)
persistence = DynamoDBPersistenceLayer(table_name=settings.idempotency_table)


@idempotent_function(data_keyword_argument="detail", config=idempotency, persistence_store=persistence)
def load_once(detail: ChunkTransformed) -> int:
    rows = steps.load_chunk(detail, deps)
    metrics.add_metric(name="RowsLoaded", unit=MetricUnit.Count, value=rows)
    return rows


@tracer.capture_method
def handle_record(record: ChunkTransformedRecord) -> None:
    detail = record.body.detail
    logger.append_keys(task_id=detail.taskId, chunk=detail.chunk)
    try:
        load_once(detail=detail)
    except IdempotencyAlreadyInProgressError:
        raise  # a duplicate racing the first delivery: not a failure of the work, SQS retries it later
    except Exception as error:
        if int(record.attributes.ApproximateReceiveCount) >= settings.max_receive_count:
            logger.exception("last delivery failed: the task fails and the message goes to the DLQ")
            steps.record_final_failure(detail, error, deps)
        raise


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    idempotency.register_lambda_context(context)
    return process_partial_response(event=event, record_handler=handle_record, processor=processor, context=context)
