"""SQS (ChunkTransformed) -> write one chunk into Postgres, exactly once (ledger). Thin: the work is steps.load_chunk; the SQS/idempotency frame is busline_core.sqs_step."""

from __future__ import annotations

from busline_core import steps
from busline_core.contracts import ChunkTransformedRecord
from busline_core.settings import LoadSettings
from busline_core.sqs_step import sqs_step_function

deps, lambda_handler = sqs_step_function(
    LoadSettings(),
    record_model=ChunkTransformedRecord,
    work=steps.load_chunk,
    idempotency_key="[taskId, phase, chunk]",
    metric_name="RowsLoaded",
)
