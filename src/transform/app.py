"""SQS (ChunkExtracted) -> cast, validate, filter and join one chunk. Thin: the work is steps.transform_chunk; the SQS/idempotency frame is busline_core.sqs_step."""

from __future__ import annotations

from busline_core import steps
from busline_core.contracts import ChunkExtractedRecord
from busline_core.settings import TransformSettings
from busline_core.sqs_step import sqs_step_function

deps, lambda_handler = sqs_step_function(
    TransformSettings(),
    record_model=ChunkExtractedRecord,
    work=steps.transform_chunk,
    idempotency_key="[taskId, phase, chunk]",
    metric_name="RowsTransformed",
)
