"""SQS (ChunkExtracted) -> cast, validate, filter and join one chunk.

Thin: the work is etl_steps.transform_chunk; the SQS, idempotency and failure frame is busline_core.sqs_step.
"""

from __future__ import annotations

from busline_core.contracts import ChunkExtractedRecord
from busline_core.deps import build_transform_deps
from busline_core.etl_steps import transform_chunk
from busline_core.settings import TransformSettings
from busline_core.sqs_step import sqs_step_function

deps, lambda_handler = sqs_step_function(
    TransformSettings(),
    build_transform_deps,
    record_model=ChunkExtractedRecord,
    work=transform_chunk,
    # each chunk's work runs once by the task's own record of the chunks it counted (sqs_step says how)
    idempotency_key=None,
    metric_name="RowsTransformed",
)
