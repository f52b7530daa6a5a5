"""SQS (TaskSubmitted, SourceStagingPaused, SourceReadingPaused) -> the task's source into chunks in S3, or planned in byte ranges.

Thin: the work is etl_steps.extract_task; the SQS, idempotency and failure frame is busline_core.sqs_step.
"""

from __future__ import annotations

from busline_core.contracts import TaskSubmittedRecord
from busline_core.deps import build_extract_deps
from busline_core.etl_steps import extract_task
from busline_core.settings import ExtractSettings
from busline_core.sqs_step import sqs_step_function

deps, lambda_handler = sqs_step_function(
    ExtractSettings(),
    build_extract_deps,
    record_model=TaskSubmittedRecord,
    work=extract_task,
    # a paused source copy or reader resumes under the same task: each checkpoint is its own piece of work
    idempotency_key="[taskId, staging.uploadId, staging.stagedBytes, reading.offset]",
    metric_name="RowsExtracted",
)
