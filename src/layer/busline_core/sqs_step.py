"""What every SQS-triggered step (extract, transform, load) does around its one call into `steps`.

Extract takes one record per invocation (BatchSize 1: a record is a whole source); transform and load
take up to ten, whose announcements and counts wait for the end of the batch (batch_end.py). A failure
is reported for its record only, so SQS redelivers it and, after MaxReceiveCount deliveries, moves it to
the DLQ. Redeliveries and duplicates are absorbed by
the business identity, never the SQS messageId (EventBridge may deliver one event twice under two message
ids). Extract, whose work is a task's whole source, claims a Powertools idempotency record keyed on
(taskId, staging, reading). The chunk steps need none: the task item already says which chunks each
phase counted (a conditional write keyed on taskId, phase, chunk), which a redelivery reads with the
check it makes anyway (etl_steps._plan_of) and skips its work; a duplicate running at the same time does
the same deterministic work, and the conditional count and load's ledger keep its effect once. That saves
each chunk four idempotency writes. A failure no retry can mend fails the task at once instead
(etl_steps.run_step).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from . import correlation, usage
from .batch_end import BatchEnd
from .deps import StepDeps
from .etl_steps import finish_batch, record_final_failure, record_retry, run_step
from .retries import StepQueue, retry_delay_seconds
from .settings import ExtractSettings, LoadSettings, TransformSettings

Detail = TypeVar("Detail", bound=BaseModel)
Settings = TypeVar("Settings", ExtractSettings, TransformSettings, LoadSettings)
StepDepsT = TypeVar("StepDepsT", bound=StepDeps)


class SqsStep(Generic[Detail]):
    def __init__(
        self,
        *,
        record_model: type[SqsRecordModel],
        work: Callable[[Detail], int],
        on_final_failure: Callable[[Detail, Exception], object],
        idempotency_key: str | None,
        idempotency_table: str,
        max_receive_count: int,
        metric_name: str,
        logger: Logger,
        metrics: Metrics,
        on_invocation: Callable[[LambdaContext], None] = lambda context: None,
        queue: StepQueue | None = None,
        on_retry: Callable[[Detail, Exception, int, int], object] = lambda detail, error, attempt, delay: None,
        batch_end: BatchEnd | None = None,
        finish_batch: Callable[[], list[tuple[Any, Exception]]] = list,
    ) -> None:
        self.batch_end = batch_end or BatchEnd()
        self.finish_batch = finish_batch
        self.on_invocation = on_invocation
        self.queue = queue
        self.on_retry = on_retry
        self.logger = logger
        self.metrics = metrics
        self.max_receive_count = max_receive_count
        self.on_final_failure = on_final_failure
        # raise_on_entire_batch_failure=False: a batch whose every record failed reports them all in
        # batchItemFailures rather than failing the invocation (same redelivery, clearer outcome).
        self.processor = BatchProcessor(
            EventType.SQS, model=record_model, raise_on_entire_batch_failure=False, logger=logging.getLogger(logger.name)
        )
        self._batch_size = 1

        def work_once(detail: Detail) -> int:
            rows = work(detail)
            if rows:  # (none for a redelivery that found its chunk done: no work, no datapoint)
                metrics.add_metric(name=metric_name, unit=MetricUnit.Count, value=rows)
            return rows

        self.idempotency: IdempotencyConfig | None = None
        self.work_once: Callable[..., int] = work_once
        if idempotency_key is not None:
            self.idempotency = IdempotencyConfig(
                event_key_jmespath=idempotency_key, raise_on_no_idempotency_key=True
            )
            # its client comes from the metered session: the idempotency records' writes are the task's calls too
            persistence = DynamoDBPersistenceLayer(
                table_name=idempotency_table, boto3_session=usage.METER.install()
            )
            self.work_once = idempotent_function(
                data_keyword_argument="detail", config=self.idempotency, persistence_store=persistence
            )(work_once)

    def handle_record(self, record: Any) -> None:
        detail = record.body.detail
        correlation.bind(detail.correlationId)
        self.logger.append_keys(task_id=detail.taskId, chunk=getattr(detail, "chunk", None))
        share = 1 / self._batch_size
        # the invocation and the poller's receive and delete are shared by the batch; the rule's send is its own
        with usage.METER.working_on(detail.taskId, invocation_share=share, deliveries=1 + 2 * share):
            self._handle(record, detail)

    def _handle(self, record: Any, detail: Any) -> None:
        started = time.monotonic()
        self.batch_end.drop_unclaimed()
        try:
            rows = self.work_once(detail=detail)
        except IdempotencyAlreadyInProgressError:
            self.batch_end.drop_unclaimed()
            # a duplicate racing the first delivery: not a failure of the work; try once that one is done
            self._deliver_again_soon(record, detail, None)
            raise
        except Exception as error:
            self.batch_end.drop_unclaimed()
            self._failed(record, detail, error)
            raise
        self.batch_end.claim(record)
        # one line per record done: with the correlation id, a task's path through every step (busline logs)
        self.logger.info(
            f"{type(detail).__name__} handled",
            extra={"rows": rows, "seconds": round(time.monotonic() - started, 3)},
        )

    def _failed(self, record: Any, detail: Any, error: Exception) -> None:
        if int(record.attributes.ApproximateReceiveCount) >= self.max_receive_count:
            self.logger.error("last delivery failed: the task fails and the message goes to the DLQ", exc_info=error)
            self.on_final_failure(detail, error)
        else:
            self._deliver_again_soon(record, detail, error)

    def _deliver_again_soon(self, record: Any, detail: Any, error: Exception | None) -> None:
        """Backoff instead of the visibility timeout (retries.py). Best effort: if this fails too, SQS
        still redelivers the record once its visibility timeout ends."""
        attempt = int(record.attributes.ApproximateReceiveCount)
        delay = retry_delay_seconds(attempt)
        try:
            if self.queue is not None:
                self.queue.deliver_again_in(record.receiptHandle, delay)
            if error is not None:
                self.logger.warning(
                    "delivery failed; tried again soon",
                    extra={"attempt": attempt, "retry_in_seconds": delay, "error": repr(error)[:500]},
                )
                self.on_retry(detail, error, attempt, delay)
        except Exception:
            self.logger.exception("could not schedule the retry; the visibility timeout will")

    def handle(self, event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
        # ties the in-progress expiry to this invocation: a killed or timed-out attempt frees its key
        if self.idempotency is not None:
            self.idempotency.register_lambda_context(context)
        self.on_invocation(context)
        self._batch_size = max(1, len(event.get("Records") or ()))
        self.batch_end.open()
        response = process_partial_response(
            event=event, record_handler=self.handle_record, processor=self.processor, context=context
        )
        for record, error in self.finish_batch():
            detail = record.body.detail
            correlation.bind(detail.correlationId)
            self.logger.append_keys(task_id=detail.taskId, chunk=getattr(detail, "chunk", None))
            self._failed(record, detail, error)
            response["batchItemFailures"].append({"itemIdentifier": record.messageId})
        return response

    def lambda_handler_with(self, tracer: Tracer) -> Callable[[dict[str, Any], LambdaContext], PartialItemFailureResponse]:
        """The function's entry point, with Powertools' logging, tracing and metrics around `handle`."""

        @self.logger.inject_lambda_context
        @tracer.capture_lambda_handler
        @self.metrics.log_metrics
        def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
            return self.handle(event, context)

        return lambda_handler


def sqs_step_function(
    settings: Settings,
    build_deps: Callable[[Settings], StepDepsT],
    *,
    record_model: type[SqsRecordModel],
    work: Callable[[Any, StepDepsT], int],
    idempotency_key: str | None,
    metric_name: str,
) -> tuple[StepDepsT, Callable[[dict[str, Any], LambdaContext], PartialItemFailureResponse]]:
    """Everything a step's handler module needs: its deps (built once per container) and its entry point."""
    deps = build_deps(settings)
    logger = Logger()
    step: SqsStep[Any] = SqsStep(
        record_model=record_model,
        work=lambda detail: run_step(work, detail, deps),
        on_final_failure=lambda detail, error: record_final_failure(detail, error, deps),
        idempotency_key=idempotency_key,
        idempotency_table=settings.idempotency_table,
        max_receive_count=settings.max_receive_count,
        metric_name=metric_name,
        logger=logger,
        metrics=Metrics(),
        on_invocation=deps.bind_invocation,
        queue=deps.step_queue,
        on_retry=lambda detail, error, attempt, delay: record_retry(detail, error, attempt, delay, deps),
        batch_end=deps.batch,
        finish_batch=lambda: finish_batch(deps),
    )
    return deps, step.lambda_handler_with(Tracer())
