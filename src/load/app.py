"""SQS (ChunkTransformed) -> write one chunk into Postgres, exactly once (ledger).

Thin: the work is etl_steps.load_chunk; the SQS, idempotency and failure frame is busline_core.sqs_step.
"""

from __future__ import annotations

from busline_core.contracts import ChunkTransformedRecord
from busline_core.deps import build_load_deps
from busline_core.etl_steps import load_chunk
from busline_core.settings import LoadSettings
from busline_core.sqs_step import sqs_step_function

deps, lambda_handler = sqs_step_function(
    LoadSettings(),
    build_load_deps,
    record_model=ChunkTransformedRecord,
    work=load_chunk,
    idempotency_key="[taskId, phase, chunk]",
    metric_name="RowsLoaded",
)
