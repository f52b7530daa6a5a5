"""SQS (TaskSubmitted) -> stream the task's source into chunks in S3. Thin: the work is steps.extract_task; the SQS/idempotency frame is busline_core.sqs_step."""

from __future__ import annotations

from busline_core import steps
from busline_core.contracts import TaskSubmittedRecord
from busline_core.settings import ExtractSettings
from busline_core.sqs_step import sqs_step_function

deps, lambda_handler = sqs_step_function(
    ExtractSettings(),
    record_model=TaskSubmittedRecord,
    work=steps.extract_task,
    idempotency_key="[taskId]",
    metric_name="RowsExtracted",
)
