"""ProgressFunction: tasks-table stream -> the newest snapshot of each task to its WebSocket subscribers."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.data_classes import DynamoDBStreamEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext
from busline_core.deps import build_stream_deps
from busline_core.progress import FrameThrottle, WatcherCache, push_progress
from busline_core.settings import StreamSettings

logger = Logger()
tracer = Tracer()
settings = StreamSettings()
deps = build_stream_deps(settings)
# Module scope: the last push per task must outlive one invocation to pace the next (warm container).
throttle = FrameThrottle(settings.progress_frames_per_second)
watchers = WatcherCache()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_source(data_class=DynamoDBStreamEvent)
def lambda_handler(event: DynamoDBStreamEvent, context: LambdaContext) -> None:
    # REMOVE records carry no new image (and the FilterCriteria already drops them on AWS)
    images = [record.dynamodb.new_image for record in event.records if record.dynamodb and record.dynamodb.new_image]
    sent = push_progress(images, deps, throttle, watchers)
    logger.info("progress pushed", extra={"images": len(images), "messages": sent})
