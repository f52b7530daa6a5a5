"""InboxFunction: S3 invokes it for each file put under inbox/ in the inbox bucket; it starts that file's task
as the owner the key names (busline_core.inbox)."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.data_classes import S3Event, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext
from busline_core.inbox import Drop, build_inbox_deps, start_tasks
from busline_core.settings import ScheduledRunSettings

logger = Logger()
tracer = Tracer()
deps = build_inbox_deps(ScheduledRunSettings())


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_source(data_class=S3Event)
def lambda_handler(event: S3Event, context: LambdaContext) -> dict[str, Any]:
    drops = [
        Drop(
            bucket=record.s3.bucket.name,
            key=unquote_plus(record.s3.get_object.key),  # S3 URL-encodes it in the event
            version_id=record.s3.get_object.version_id,
            sequencer=record.s3.get_object.sequencer,
            request_id=record.response_elements.get("x-amz-request-id", ""),
        )
        for record in event.records
    ]
    return {"drops": start_tasks(drops, deps)}
