"""What each task uses of AWS, counted where it is used, and carried by the task's own item.

A function counts the requests its code makes to AWS for the task it is working on (a botocore hook on
boto3's default session, fired once per call with the call's parameters, on every client built after
`install`; the task is set per SQS record by `working_on`), and the Lambda compute it spends on that
task. The tasks repository folds what is pending for a task into its next write of that task (`take`), so
counting costs no request of its own, and a write counts itself in advance (`prepaid`) so that the last
write of a task's life is counted too.

What is counted, and what is not (a figure is only as honest as its list):
- counted: every request of extract, transform and load and of the submitting API call (S3, DynamoDB,
  EventBridge entries, SQS, SNS, Secrets Manager, ...), Lambda requests (a batch's invocation shared by
  its records) and GB-seconds (wall time of the record's work at the function's memory size), and each
  SQS delivery (the rule's send, and the record's share of the poller's receive and delete);
- not counted: what a container does for a task after its last write of that task (a phase's
  PhaseCompleted, published once the phase's last chunk is counted; the idempotency record's completion
  of its last record of the task: a few calls per task, millionths of a dollar), the API Gateway request,
  the progress function's pushes and the watchdog (they serve every task at once), and idle queue
  polling; DynamoDB writes count one unit each, whatever the item's size.
Prices are pricing.py's; `cost_of` turns a task's counts into dollars.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import boto3

from .contracts import TaskCost
from .pricing import PRICES_CHECKED, PRICES_REGION, CostEstimate, Usage, estimate_cost, lambda_gb_seconds

LAMBDA_REQUESTS = "lambda:requests"
LAMBDA_GB_SECONDS = "lambda:gbSeconds"
SQS_DELIVERIES = "sqs:deliveries"
EVENTBRIDGE_ENTRIES = "events:entries"  # PutEvents bills each entry, not the request
DYNAMODB_BATCH_WRITES = "dynamodb:batchWrittenItems"  # BatchWriteItem bills each item
DYNAMODB_BATCH_READS = "dynamodb:batchReadItems"
# Tasks whose leftovers a container keeps (usage that arrived after its last write of the task)
MAX_TASKS_METERED = 256
_DEFAULT_MEMORY_MB = 1024  # the template's Globals MemorySize, when the function's own is not known


@dataclass
class _Work:
    task_id: str
    since: float  # monotonic time the compute counted so far ends at


def _call_keys(model: Any, params: Mapping[str, Any]) -> Counter[str]:
    service = model.service_model.endpoint_prefix
    keys: Counter[str] = Counter({f"{service}:{model.name}": 1})
    if service == "events" and model.name == "PutEvents":
        keys[EVENTBRIDGE_ENTRIES] += len(params.get("Entries", ()))
    elif service == "dynamodb" and model.name == "BatchWriteItem":
        keys[DYNAMODB_BATCH_WRITES] += sum(len(items) for items in params.get("RequestItems", {}).values())
    elif service == "dynamodb" and model.name == "BatchGetItem":
        keys[DYNAMODB_BATCH_READS] += sum(
            len(table.get("Keys", ())) for table in params.get("RequestItems", {}).values()
        )
    return keys


class UsageMeter:
    def __init__(self, memory_mb: int | None = None) -> None:
        self._memory_mb = memory_mb or int(
            os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE") or _DEFAULT_MEMORY_MB
        )
        self._pending: dict[str, defaultdict[str, float]] = {}
        self._compute_ms: defaultdict[str, float] = defaultdict(float)
        self._prepaid: dict[str, Counter[str]] = {}
        self._work: ContextVar[_Work | None] = ContextVar("busline_usage_work", default=None)
        self._lock = threading.Lock()
        self._installed = False

    def install(self) -> boto3.session.Session:
        """Count the calls of every client built from boto3's default session from now on; returns that
        session, for libraries that take one (Powertools idempotency)."""
        session = boto3._get_default_session()
        if not self._installed:
            session.events.register(
                "before-parameter-build", self._on_call, unique_id=f"busline-usage-meter-{id(self)}"
            )
            self._installed = True
        return session

    def _on_call(self, model: Any, params: Mapping[str, Any], **_: Any) -> None:
        work = self._work.get()
        if work is None:
            return  # not on behalf of a task (the watchdog, a DLQ peek): no task pays for it
        keys = _call_keys(model, params)
        with self._lock:
            prepaid = self._prepaid.get(work.task_id)
            if prepaid:
                for key in list(keys):
                    settled = min(prepaid[key], keys[key])
                    prepaid[key] -= settled
                    keys[key] -= settled
                if not +prepaid:
                    del self._prepaid[work.task_id]
            if +keys:
                pending = self._pending.setdefault(work.task_id, defaultdict(float))
                for key, count in (+keys).items():
                    pending[key] += count

    @contextmanager
    def working_on(
        self, task_id: str, *, invocation_share: float = 1.0, deliveries: float = 0.0
    ) -> Iterator[None]:
        """Count what happens inside for `task_id`: its calls, and its wall time as Lambda compute."""
        work = _Work(task_id, time.monotonic())
        with self._lock:
            self._forget_the_oldest()
            pending = self._pending.setdefault(task_id, defaultdict(float))
            pending[LAMBDA_REQUESTS] += invocation_share
            if deliveries:
                pending[SQS_DELIVERIES] += deliveries
        token = self._work.set(work)
        try:
            yield
        finally:
            self._work.reset(token)
            with self._lock:
                self._compute_ms[task_id] += (time.monotonic() - work.since) * 1000

    def take(self, task_id: str, *, prepaid: Iterable[str] = ()) -> dict[str, float]:
        """What is pending for `task_id` (emptied), plus one of each `prepaid` key: the write about to
        carry these counts, which then is not counted again when it is made."""
        now = time.monotonic()
        work = self._work.get()
        working = work is not None and work.task_id == task_id
        with self._lock:
            if not working and task_id not in self._pending and task_id not in self._compute_ms:
                return {}  # nothing counted for it here (the watchdog's writes, a test without a meter)
            counts = self._pending.pop(task_id, defaultdict(float))
            compute_ms = self._compute_ms.pop(task_id, 0.0)
            if working and work is not None:
                compute_ms += (now - work.since) * 1000
                work.since = now
            ahead = self._prepaid.setdefault(task_id, Counter())
            for key in prepaid:
                counts[key] += 1
                ahead[key] += 1
        taken = {key: float(value) for key, value in counts.items() if value}
        if compute_ms:
            taken[LAMBDA_GB_SECONDS] = lambda_gb_seconds(compute_ms, self._memory_mb)
        return taken

    def give_back(self, task_id: str, taken: Mapping[str, float], *, prepaid: Iterable[str] = ()) -> None:
        """The write that was to carry `taken` did not happen (its condition failed): keep it pending.
        The refused write was still made, and is billed: its prepaid count stays in `taken`."""
        with self._lock:
            pending = self._pending.setdefault(task_id, defaultdict(float))
            for key, value in taken.items():
                if key == LAMBDA_GB_SECONDS:
                    self._compute_ms[task_id] += value * 1024 * 1000 / self._memory_mb
                else:
                    pending[key] += value
            ahead = self._prepaid.get(task_id)
            if ahead is not None:
                for key in prepaid:
                    ahead[key] = max(0, ahead[key] - 1)

    def _forget_the_oldest(self) -> None:
        """What is left over for tasks this container no longer writes is dropped past a bound (a warm
        container serves tasks for hours): the oldest first."""
        for counts in (self._pending, self._compute_ms, self._prepaid):
            while len(counts) > MAX_TASKS_METERED:
                del counts[next(iter(counts))]


# One per container, like boto3's default session it hooks into.
METER = UsageMeter()


def usage_of(counts: Mapping[str, float]) -> Usage:
    """A task's counts as pricing.py's Usage."""
    # counted by what they bill (entries, items), not by the call
    billed_otherwise = {
        LAMBDA_REQUESTS, LAMBDA_GB_SECONDS, SQS_DELIVERIES, EVENTBRIDGE_ENTRIES, DYNAMODB_BATCH_WRITES,
        DYNAMODB_BATCH_READS, "dynamodb:BatchWriteItem", "dynamodb:BatchGetItem",
    }  # fmt: skip
    calls = {key: value for key, value in counts.items() if key not in billed_otherwise}
    writes = sum(value for key, value in calls.items() if key in _DYNAMODB_WRITE_CALLS)
    reads = sum(value for key, value in calls.items() if key in _DYNAMODB_READ_CALLS)
    return Usage(
        calls=calls,
        lambda_invocations=counts.get(LAMBDA_REQUESTS, 0.0),
        lambda_gb_seconds=counts.get(LAMBDA_GB_SECONDS, 0.0),
        eventbridge_events=counts.get(EVENTBRIDGE_ENTRIES, 0.0),
        sqs_deliveries=counts.get(SQS_DELIVERIES, 0.0),
        dynamodb_write_units=writes + counts.get(DYNAMODB_BATCH_WRITES, 0.0),
        dynamodb_read_units=reads + counts.get(DYNAMODB_BATCH_READS, 0.0),
    )


_DYNAMODB_WRITE_CALLS = frozenset({"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"})
_DYNAMODB_READ_CALLS = frozenset({"dynamodb:GetItem", "dynamodb:Query", "dynamodb:Scan"})


def cost_of(counts: Mapping[str, float]) -> CostEstimate:
    return estimate_cost(usage_of(counts))


PRICES_NOTE = f"AWS list prices, {PRICES_REGION}, checked {PRICES_CHECKED}"


def task_cost(counts: Mapping[str, float]) -> TaskCost | None:
    """What a task's snapshot, its TaskFinished and its notification say it cost; None when nothing was
    counted for it (a task recorded before counting began, or by a test without a meter)."""
    if not counts:
        return None
    estimate = cost_of(counts)
    billed = usage_of(counts)
    not_requests = {LAMBDA_GB_SECONDS, EVENTBRIDGE_ENTRIES, DYNAMODB_BATCH_WRITES, DYNAMODB_BATCH_READS}
    requests = sum(value for key, value in counts.items() if key not in not_requests)
    return TaskCost(
        usd=round(estimate.total_usd, 12),
        byService={service: round(usd, 12) for service, usd in sorted(estimate.by_service().items())},
        requests=round(requests),
        lambdaGbSeconds=round(billed.lambda_gb_seconds, 3),
        unpriced=dict(sorted(estimate.unpriced.items())),
        prices=PRICES_NOTE,
        counted={key: round(value, 6) for key, value in sorted(counts.items())},
    )
