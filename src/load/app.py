"""SQS (ChunkTransformed, PhaseCompleted of load, TaskCancelled) -> write one chunk into Postgres, exactly
once (ledger); merge a task's staged chunks into its target at once; throw away what a cancelled task staged.

Thin: the work is etl_steps.load_step; the SQS, idempotency and failure frame is busline_core.sqs_step.
"""

from __future__ import annotations

from busline_core.contracts import LoadRecord
from busline_core.deps import build_load_deps
from busline_core.etl_steps import load_step
from busline_core.settings import LoadSettings
from busline_core.sqs_step import sqs_step_function

deps, lambda_handler = sqs_step_function(
    LoadSettings(),
    build_load_deps,
    record_model=LoadRecord,
    work=load_step,
    # each chunk's work runs once by the task's own record of the chunks it counted (sqs_step says how)
    idempotency_key=None,
    metric_name="RowsLoaded",
)
