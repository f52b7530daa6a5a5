"""WatchdogFunction (every minute): fail tasks that were dead-lettered unannounced or stalled."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext
from busline_core.deps import build_watchdog_deps
from busline_core.settings import WatchdogSettings
from busline_core.watchdog import watchdog

logger = Logger()
tracer = Tracer()
deps = build_watchdog_deps(WatchdogSettings())


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> None:
    failed = watchdog(deps, datetime.now(UTC))
    logger.info("watchdog ran", extra={"failed": failed})
