"""Event sources of the local cloud: what Lambda's pollers and EventBridge schedules do on AWS.

`SqsPoller` (event source mapping on a queue), `StreamPoller` (on a DynamoDB stream) and `Scheduler`
(schedule rules) read the CloudModel, call `FunctionRuntime.invoke` with events in AWS's exact shape,
and act on the outcome as AWS does (delete, retry, bisect, send to the on-failure destination).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import math
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config
from busline_core import schedule_expressions
from busline_core.schedule_expressions import InvalidScheduleExpression
from moto.events.models import EventPattern

from busline.localcloud.chaos import ChaosConfig
from busline.localcloud.model import (
    CloudModel,
    LocalCloudError,
    ScheduleSpec,
    SqsMapping,
    StreamMapping,
)
from busline.localcloud.moto_patches import (
    LONG_POLL_TOKEN_PREFIX,
    STREAM_WRITES,
    end_long_polls,
    long_polls_are_endable,
    make_sqs_long_polls_endable,
    wake_stream_readers_on_writes,
)
from busline.localcloud.runtime import FunctionRuntime, InvocationResult, console_line

DEFAULT_SQS_CONCURRENCY = 5
# While a batching window is open, a stream shard is read this often (as before writes woke the poller).
STREAM_POLL_INTERVAL_S = 0.25
# An idle shard waits for a write to its table (moto_patches.STREAM_WRITES) at most this long: the
# fallback when writes cannot wake the poller (a moto in another process), and the idle GetRecords rate.
STREAM_IDLE_WAIT_S = 1.0
GET_RECORDS_LIMIT = 1000
# MaximumRetryAttempts -1 means "until the record expires" (24 h) on AWS; locally that would wedge a shard.
UNLIMITED_RETRIES_CAP = 10
RETRY_BACKOFF_S = (0.25, 0.5, 1.0, 2.0)
SQS_LONG_POLL_S = 1  # short enough that stop() returns promptly, where it cannot end the poll
# SQS's longest long poll, once the poller's polls are known to reach a moto that can end them on stop()
# (moto_patches.make_sqs_long_polls_endable): one ReceiveMessage per idle 20 s instead of per idle second.
SQS_ENDABLE_LONG_POLL_S = 20
STOP_GRACE_S = 3.0


class EventSource:
    """A background poller; `start()` begins delivering, `stop()` ends and waits for its threads."""

    name: str = "event source"
    # how long stop() lets invocations in flight finish before the runtime kills them
    stop_grace_s: float = STOP_GRACE_S

    def __init__(self) -> None:
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._threads_lock = threading.Lock()
        self._settled = 0
        self._settled_lock = threading.Lock()

    @property
    def settled(self) -> int:
        """How many deliveries this source has finished with (see each subclass for what one is).

        Lets a caller wait for work to be done instead of sleeping until nothing more seems to happen.
        """
        with self._settled_lock:
            return self._settled

    def _count_settled(self, count: int = 1) -> None:
        with self._settled_lock:
            self._settled += count

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self._stopping.set()
        deadline = time.monotonic() + self.stop_grace_s
        with self._threads_lock:
            threads = list(self._threads)
        for thread in threads:
            # In-flight invocations may run up to their Timeout; closing the runtime kills them.
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def _spawn(self, target: Callable[..., None], *args: Any, name: str) -> threading.Thread:
        thread = threading.Thread(target=self._guarded, args=(target, *args), name=name, daemon=True)
        with self._threads_lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()
        return thread

    def _guarded(self, target: Callable[..., None], *args: Any) -> None:
        try:
            target(*args)
        except LocalCloudError as exc:
            if not self._stopping.is_set():
                console_line(f"{self.name}: {exc}")
        except Exception as exc:  # a poller thread must report, never die silently
            if not self._stopping.is_set():
                console_line(f"{self.name}: {type(exc).__name__}: {exc}")


def build_event_sources(model: CloudModel, runtime: FunctionRuntime, chaos: ChaosConfig | None,
                        schedule_scale: float = 1.0) -> list[EventSource]:
    """One SqsPoller per enabled SQS mapping, one StreamPoller per enabled stream mapping, and one
    Scheduler when the template has enabled schedules, or a schedule group that schedules created at run
    time go into."""
    active_chaos = chaos if chaos is not None and chaos.enabled() else None
    sources: list[EventSource] = []
    for sqs_mapping in model.sqs_mappings:
        if sqs_mapping.enabled:
            sources.append(SqsPoller(model, sqs_mapping, runtime, active_chaos))
    for stream_mapping in model.stream_mappings:
        if stream_mapping.enabled:
            sources.append(StreamPoller(model, stream_mapping, runtime, active_chaos))
    groups = [resource for resource in model.resources.values() if resource.type == "AWS::Scheduler::ScheduleGroup"]
    if (model.endpoints.aws and groups) or any(schedule.enabled for schedule in model.schedules):
        sources.append(Scheduler(model, runtime, active_chaos, schedule_scale))
    return sources


def aws_client(model: CloudModel, service: str) -> Any:
    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=model.endpoints.aws,
        region_name=model.region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(max_pool_connections=64, retries={"max_attempts": 3, "mode": "standard"},
                      read_timeout=30),
    )


# ---------------------------------------------------------------------------------------------------
# SQS


class SqsPoller(EventSource):
    def __init__(self, model: CloudModel, mapping: SqsMapping, runtime: FunctionRuntime,
                 chaos: ChaosConfig | None) -> None:
        super().__init__()
        self.model = model
        self.mapping = mapping
        self.runtime = runtime
        self.chaos = chaos
        self.queue_name = mapping.queue_arn.rsplit(":", 1)[-1]
        self.name = f"{mapping.logical_id} (sqs:{self.queue_name})"
        self.trigger = f"sqs:{self.queue_name}"
        self.concurrency = mapping.max_concurrency or DEFAULT_SQS_CONCURRENCY
        self._slots = threading.BoundedSemaphore(self.concurrency)
        self._sqs = aws_client(model, "sqs")
        self._poll_token = f"{LONG_POLL_TOKEN_PREFIX}{uuid.uuid4().hex}"
        # A clean stop lets a batch finish (up to its function's Timeout) rather than kill it: a killed one
        # leaves its message hidden for the visibility timeout and its idempotency record in progress, so
        # after a restart (state.py) the chunk would wait minutes, or fail against its own record.
        function = model.functions.get(mapping.function)
        self.stop_grace_s = max(STOP_GRACE_S, function.timeout_s + 1.0) if function else STOP_GRACE_S

    def start(self) -> None:
        make_sqs_long_polls_endable()
        self._spawn(self._receive_loop, name=f"sqs-{self.mapping.logical_id}")

    def stop(self) -> None:
        self._stopping.set()
        end_long_polls(self._poll_token)
        super().stop()

    @property
    def long_poll_s(self) -> int:
        # Known only after a first receive: a moto in another process never sees the token.
        return SQS_ENDABLE_LONG_POLL_S if long_polls_are_endable(self._poll_token) else SQS_LONG_POLL_S

    def _receive_loop(self) -> None:
        while not self._stopping.is_set():
            if not self._take_slot():
                return
            try:
                messages = self._gather()
            except Exception as exc:
                self._slots.release()
                if not self._stopping.is_set():
                    console_line(f"{self.name}: receive failed: {type(exc).__name__}: {exc}")
                    self._stopping.wait(1.0)
                continue
            if not messages:
                self._slots.release()
                continue
            records = [self._record(message) for message in messages]
            self._spawn(self._invoke_and_settle, records, True, name=f"sqs-invoke-{self.mapping.logical_id}")
            if self.chaos is not None and self.chaos.roll("duplicate"):
                self.chaos.record("duplicate")
                # The same messages (same messageId, body, receipt handle) delivered to a second,
                # concurrent invocation, which counts against MaximumConcurrency like any other.
                if self._take_slot():
                    self._spawn(self._invoke_and_settle, records, False,
                                name=f"sqs-duplicate-{self.mapping.logical_id}")

    def _take_slot(self) -> bool:
        while not self._stopping.is_set():
            if self._slots.acquire(timeout=0.25):
                return True
        return False

    def _gather(self) -> list[dict[str, Any]]:
        """Up to BatchSize messages: the first long poll, then more until the batching window closes."""
        wanted = self.mapping.batch_size
        window = self.mapping.max_batching_window_s
        messages: dict[str, dict[str, Any]] = {}
        window_ends: float | None = None
        while len(messages) < wanted and not self._stopping.is_set():
            if window_ends is None:
                wait_s = self.long_poll_s
            else:
                remaining = window_ends - time.monotonic()
                if remaining <= 0:
                    break
                wait_s = min(self.long_poll_s, int(remaining))
            response = self._sqs.receive_message(
                QueueUrl=self.mapping.queue_url,
                MaxNumberOfMessages=min(10, wanted - len(messages)),
                WaitTimeSeconds=wait_s,
                AttributeNames=["All"],
                # "All" returns every attribute; the token selects none and lets stop() end this poll
                MessageAttributeNames=["All", self._poll_token],
            )
            received = response.get("Messages", [])
            for message in received:
                messages.setdefault(message["MessageId"], message)
            if not messages:
                continue  # nothing yet: keep long-polling
            if window <= 0:
                break  # no batching window: deliver what the first successful receive gave
            if window_ends is None:
                window_ends = time.monotonic() + window
            if not received:
                self._stopping.wait(0.05)
        return list(messages.values())

    def _record(self, message: dict[str, Any]) -> dict[str, Any]:
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": dict(message.get("Attributes", {})),
            "messageAttributes": {
                name: _lambda_message_attribute(value)
                for name, value in message.get("MessageAttributes", {}).items()
            },
            "md5OfBody": message["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": self.mapping.queue_arn,
            "awsRegion": self.model.region,
        }

    def _invoke_and_settle(self, records: list[dict[str, Any]], settle: bool) -> None:
        # One settled delivery = one invocation returned and, unless it is a chaos duplicate, its
        # successful records deleted.
        try:
            result = self.runtime.invoke(self.mapping.function, {"Records": records}, trigger=self.trigger)
            if settle:
                self._delete(self._succeeded(records, result))
        finally:
            self._count_settled()
            self._slots.release()

    def _succeeded(self, records: list[dict[str, Any]], result: InvocationResult) -> list[dict[str, Any]]:
        """The records to delete: all on success, none on failure, all but the reported ones on partial."""
        if not result.ok:
            return []
        if not self.mapping.report_batch_item_failures or not isinstance(result.payload, dict):
            return records
        failures = result.payload.get("batchItemFailures") or []
        ids = {record["messageId"] for record in records}
        failed: set[str] = set()
        for failure in failures:
            identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
            if not isinstance(identifier, str) or identifier not in ids:
                # Lambda treats a malformed or unknown itemIdentifier as a failure of the whole batch.
                console_line(f"{self.name}: invalid batchItemFailures entry {failure!r}; whole batch retried")
                return []
            failed.add(identifier)
        return [record for record in records if record["messageId"] not in failed]

    def _delete(self, records: list[dict[str, Any]]) -> None:
        for start in range(0, len(records), 10):
            entries = [
                {"Id": str(index), "ReceiptHandle": record["receiptHandle"]}
                for index, record in enumerate(records[start:start + 10])
            ]
            # Failed entries (e.g. a receipt handle already used by a duplicate) are harmless here.
            self._sqs.delete_message_batch(QueueUrl=self.mapping.queue_url, Entries=entries)


def _lambda_message_attribute(value: dict[str, Any]) -> dict[str, Any]:
    """SQS ReceiveMessage attribute -> the camelCase shape Lambda puts in the event."""
    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return {
        "stringValue": value.get("StringValue"),
        "binaryValue": b64(value["BinaryValue"]) if "BinaryValue" in value else None,
        "stringListValues": list(value.get("StringListValues", [])),
        "binaryListValues": [b64(raw) for raw in value.get("BinaryListValues", [])],
        "dataType": value["DataType"],
    }


# ---------------------------------------------------------------------------------------------------
# DynamoDB streams


class StreamPoller(EventSource):
    def __init__(self, model: CloudModel, mapping: StreamMapping, runtime: FunctionRuntime,
                 chaos: ChaosConfig | None) -> None:
        super().__init__()
        self.model = model
        self.mapping = mapping
        self.runtime = runtime
        self.chaos = chaos
        self.name = f"{mapping.logical_id} (stream:{mapping.table_name})"
        self.trigger = f"stream:{mapping.table_name}"
        self.max_retries = mapping.max_retry_attempts
        if self.max_retries < 0:
            self.max_retries = UNLIMITED_RETRIES_CAP
        self._patterns = [_event_pattern(mapping.logical_id, index, pattern)
                          for index, pattern in enumerate(mapping.filter_patterns)]
        self._streams = aws_client(model, "dynamodbstreams")
        self._known_shards: set[str] = set()

    def start(self) -> None:
        wake_stream_readers_on_writes()
        if self.mapping.max_retry_attempts < 0:
            console_line(f"{self.name}: MaximumRetryAttempts -1 (retry until expiry) is capped at "
                         f"{UNLIMITED_RETRIES_CAP} retries locally")
        # Take the iterators now, so with LATEST everything written after start() is delivered.
        try:
            for shard_id in self._shard_ids():
                self._start_shard(shard_id, self.mapping.starting_position)
        except Exception as exc:
            raise LocalCloudError(
                f"{self.mapping.logical_id}: cannot read stream {self.mapping.stream_arn} of table "
                f"{self.mapping.table_name}: {exc}"
            ) from exc
        self._spawn(self._discover_shards, name=f"stream-shards-{self.mapping.logical_id}")

    def stop(self) -> None:
        self._stopping.set()
        STREAM_WRITES.wake_all()
        super().stop()

    def _shard_ids(self) -> list[str]:
        description = self._streams.describe_stream(StreamArn=self.mapping.stream_arn)["StreamDescription"]
        return [shard["ShardId"] for shard in description.get("Shards", [])]

    def _start_shard(self, shard_id: str, position: str) -> None:
        iterator = self._streams.get_shard_iterator(
            StreamArn=self.mapping.stream_arn, ShardId=shard_id, ShardIteratorType=position
        )["ShardIterator"]
        self._known_shards.add(shard_id)
        self._spawn(self._poll_shard, shard_id, iterator, position,
                    name=f"stream-{self.mapping.logical_id}-{shard_id}")

    def _discover_shards(self) -> None:
        # Shards appearing later (a stream re-created) are read from their beginning.
        while not self._stopping.wait(5.0):
            with contextlib.suppress(Exception):
                for shard_id in self._shard_ids():
                    if shard_id not in self._known_shards:
                        self._start_shard(shard_id, "TRIM_HORIZON")

    def _poll_shard(self, shard_id: str, iterator: str | None, position: str) -> None:
        last_read: str | None = None  # the sequence number of the last record read: where to go on from
        pending: list[dict[str, Any]] = []
        first_pending_at = 0.0
        writes_seen = 0
        backlog = False
        while not self._stopping.is_set():
            if iterator is not None:
                # Noted before reading, so a write landing during GetRecords still ends the wait below.
                writes_seen = STREAM_WRITES.count(self.mapping.table_name)
                try:
                    response = self._streams.get_records(ShardIterator=iterator, Limit=GET_RECORDS_LIMIT)
                except Exception as exc:
                    renewed = self._renewed_iterator(shard_id, exc, position, last_read)
                    if renewed is None:
                        console_line(f"{self.name}: get_records failed: {type(exc).__name__}: {exc}")
                        self._stopping.wait(1.0)
                    else:
                        iterator = renewed
                    continue
                iterator = response.get("NextShardIterator")
                raw_records = response.get("Records", [])
                if raw_records:
                    last_read = raw_records[-1]["dynamodb"]["SequenceNumber"]
                backlog = len(raw_records) >= GET_RECORDS_LIMIT
                fresh = [self._record(raw) for raw in raw_records]
                kept = [record for record in fresh if self._matches(record)]
                # A stream's settled count is in records: dropped by the filter now, or delivered below.
                self._count_settled(len(fresh) - len(kept))
                if kept and not pending:
                    first_pending_at = time.monotonic()
                pending.extend(kept)
            while pending and (len(pending) >= self.mapping.batch_size
                               or time.monotonic() - first_pending_at >= self.mapping.max_batching_window_s
                               or iterator is None):
                batch, pending = pending[:self.mapping.batch_size], pending[self.mapping.batch_size:]
                self._process(shard_id, batch, attempt=0)
                self._count_settled(len(batch))
                first_pending_at = time.monotonic()
                if self._stopping.is_set():
                    return
            if iterator is None and not pending:
                return  # the shard is closed and fully processed
            if backlog and iterator is not None:
                continue  # a full page: more records are already waiting
            if pending:
                # Only an open batching window leaves records pending: gather until it closes, as before.
                window_left = first_pending_at + self.mapping.max_batching_window_s - time.monotonic()
                self._stopping.wait(min(STREAM_POLL_INTERVAL_S, max(0.0, window_left)))
            else:
                STREAM_WRITES.wait_beyond(self.mapping.table_name, writes_seen, STREAM_IDLE_WAIT_S,
                                          self._stopping)

    def _renewed_iterator(self, shard_id: str, error: Exception, position: str, last_read: str | None) -> str | None:
        """What Lambda's poller does when a shard iterator is no use: one after the last record read, when
        the iterator expired (a batch that took more than 15 minutes, a machine that slept); the oldest record
        kept, when the records it pointed at are past the stream's 24 hours. None for any other error."""
        code = getattr(error, "response", {}).get("Error", {}).get("Code")
        if code == "ExpiredIteratorException":
            kind, after = ("AFTER_SEQUENCE_NUMBER", {"SequenceNumber": last_read}) if last_read else (position, {})
        elif code == "TrimmedDataAccessException":
            console_line(f"{self.name}: records older than the stream's 24 hours were trimmed before they were "
                         "read; going on from the oldest record kept")
            kind, after = "TRIM_HORIZON", {}
        else:
            return None
        try:
            return str(self._streams.get_shard_iterator(
                StreamArn=self.mapping.stream_arn, ShardId=shard_id, ShardIteratorType=kind, **after
            )["ShardIterator"])
        except Exception as exc:
            console_line(f"{self.name}: cannot renew the shard iterator: {type(exc).__name__}: {exc}")
            return None

    def _matches(self, record: dict[str, Any]) -> bool:
        # Records that match no filter pattern are dropped, exactly as Lambda does: never delivered.
        return not self._patterns or any(pattern.matches_event(record) for pattern in self._patterns)  # type: ignore[arg-type]

    def _record(self, raw: dict[str, Any]) -> dict[str, Any]:
        change = dict(raw["dynamodb"])
        created = change.get("ApproximateCreationDateTime")
        if isinstance(created, dt.datetime):
            change["ApproximateCreationDateTime"] = int(created.timestamp())
        return {
            "eventID": raw["eventID"],
            "eventName": raw["eventName"],
            "eventVersion": raw.get("eventVersion", "1.1"),
            "eventSource": "aws:dynamodb",
            "awsRegion": raw.get("awsRegion", self.model.region),
            "dynamodb": _json_safe(change),
            "eventSourceARN": self.mapping.stream_arn,
        }

    def _process(self, shard_id: str, batch: list[dict[str, Any]], attempt: int) -> None:
        """Deliver one batch in order: retry, bisect or checkpoint, then give up to OnFailure."""
        while batch and not self._stopping.is_set():
            result = self._invoke(batch)
            failed = self._failed_part(batch, result)
            if not failed:
                return
            if self.mapping.bisect_on_error and len(failed) > 1:
                # Splitting a batch does not count against the retry quota (AWS behaviour).
                middle = len(failed) // 2
                self._process(shard_id, failed[:middle], attempt)
                self._process(shard_id, failed[middle:], attempt)
                return
            if attempt >= self.max_retries:
                self._give_up(shard_id, failed, result, attempt + 1)
                return
            attempt += 1
            batch = failed
            self._stopping.wait(RETRY_BACKOFF_S[min(attempt - 1, len(RETRY_BACKOFF_S) - 1)])

    def _invoke(self, batch: list[dict[str, Any]]) -> InvocationResult:
        event = {"Records": batch}
        if self.chaos is not None and self.chaos.roll("duplicate"):
            self.chaos.record("duplicate")
            self._spawn(self._invoke_duplicate, event, name=f"stream-duplicate-{self.mapping.logical_id}")
        return self.runtime.invoke(self.mapping.function, event, trigger=self.trigger)

    def _invoke_duplicate(self, event: dict[str, Any]) -> None:
        self.runtime.invoke(self.mapping.function, event, trigger=self.trigger)

    def _failed_part(self, batch: list[dict[str, Any]], result: InvocationResult) -> list[dict[str, Any]]:
        """The records still to process: none on success, all on failure, from the checkpoint on partial."""
        if not result.ok:
            return batch
        if not self.mapping.report_batch_item_failures or not isinstance(result.payload, dict):
            return []
        failures = result.payload.get("batchItemFailures") or []
        positions = {record["dynamodb"]["SequenceNumber"]: index for index, record in enumerate(batch)}
        indexes = []
        for failure in failures:
            identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
            if identifier not in positions:
                console_line(f"{self.name}: invalid batchItemFailures entry {failure!r}; whole batch retried")
                return batch
            indexes.append(positions[identifier])
        # Checkpoint: everything before the lowest failed sequence number is done.
        return batch[min(indexes):] if indexes else []

    def _give_up(self, shard_id: str, records: list[dict[str, Any]], result: InvocationResult,
                 invoke_count: int) -> None:
        info = {
            "shardId": shard_id,
            "startSequenceNumber": records[0]["dynamodb"]["SequenceNumber"],
            "endSequenceNumber": records[-1]["dynamodb"]["SequenceNumber"],
            "approximateArrivalOfFirstRecord": _iso(records[0]["dynamodb"].get("ApproximateCreationDateTime")),
            "approximateArrivalOfLastRecord": _iso(records[-1]["dynamodb"].get("ApproximateCreationDateTime")),
            "batchSize": len(records),
            "streamArn": self.mapping.stream_arn,
        }
        function_arn = self.model.functions[self.mapping.function].arn
        failure_record = {
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": function_arn,
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": invoke_count,
            },
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled",
            },
            "version": "1.0",
            "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "DDBStreamBatchInfo": info,
        }
        destination = self.mapping.on_failure_arn
        summary = (f"{self.name}: gave up on {len(records)} record(s) "
                   f"{info['startSequenceNumber']}..{info['endSequenceNumber']} after {invoke_count} "
                   f"invocation(s) ({result.error_type or 'batch item failure'})")
        if destination is None:
            console_line(f"{summary}; no OnFailure destination, records skipped")
            return
        try:
            send_to_destination(self.model, destination, failure_record)
        except Exception as exc:  # a broken destination must not stop the shard
            console_line(f"{summary}; could not send the failure record to {destination}: {exc}")
            return
        console_line(f"{summary}; failure record sent to {destination}")


def send_to_destination(model: CloudModel, arn: str, payload: dict[str, Any]) -> None:
    """Deliver an on-failure record to an SQS queue or SNS topic ARN."""
    body = json.dumps(payload)
    service = arn.split(":")[2] if arn.count(":") >= 5 else ""
    if service == "sqs":
        sqs = aws_client(model, "sqs")
        queue_url = sqs.get_queue_url(QueueName=arn.rsplit(":", 1)[-1])["QueueUrl"]
        sqs.send_message(QueueUrl=queue_url, MessageBody=body)
    elif service == "sns":
        aws_client(model, "sns").publish(TopicArn=arn, Message=body)
    else:
        raise LocalCloudError(f"OnFailure destination {arn!r} is neither an SQS queue nor an SNS topic ARN")


def _event_pattern(mapping_id: str, index: int, pattern: dict[str, Any]) -> EventPattern:
    # moto's EventBridge matcher implements the same pattern language Lambda uses for FilterCriteria.
    try:
        return EventPattern.load(json.dumps(pattern))
    except Exception as exc:
        raise LocalCloudError(f"{mapping_id}: FilterCriteria pattern {index + 1} is invalid: {exc}") from exc


def _json_safe(value: Any) -> Any:
    """Binary attribute values (B, BS) come from boto3 as bytes; Lambda events carry them base64."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_safe(item) for item in value]
    if isinstance(value, dt.datetime):
        return int(value.timestamp())
    return value


def _iso(epoch_s: Any) -> str | None:
    if not isinstance(epoch_s, int | float):
        return None
    return dt.datetime.fromtimestamp(epoch_s, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------------------------------
# Schedules

# How often the schedules made at run time through the Scheduler API (CreateSchedule, DeleteSchedule)
# are read back from moto, which stores them but never fires them.
SCHEDULER_SYNC_S = 1.0


class _Timetable:
    """When one schedule fires, on the scaled clock (`scale` virtual seconds per real second)."""

    def __init__(self, schedule: ScheduleSpec, virtual_start: float) -> None:
        try:
            self.expression = schedule_expressions.parse(schedule.expression, schedule.timezone)
        except InvalidScheduleExpression as error:
            raise LocalCloudError(f"{schedule.logical_id}: {error}") from None
        if schedule.service == "events" and self.expression.kind == "at":
            raise LocalCloudError(f"{schedule.logical_id}: an EventBridge rule takes rate() or cron(), not at()")
        start = dt.datetime.fromtimestamp(virtual_start, dt.UTC)
        if self.expression.period_s is not None:
            # A Scheduler rate schedule without a StartDate fires at once; a rule's first firing is one period on.
            first: dt.datetime | None = start
            if schedule.service == "events":
                first = start + dt.timedelta(seconds=self.expression.period_s)
        else:
            first = self.expression.first_run(start)
        self.next_virtual = first.timestamp() if first is not None else math.inf

    def advance(self) -> None:
        if self.expression.period_s is not None:
            self.next_virtual += self.expression.period_s
            return
        upcoming = self.expression.next_after(dt.datetime.fromtimestamp(self.next_virtual, dt.UTC))
        self.next_virtual = upcoming.timestamp() if upcoming is not None else math.inf


class Scheduler(EventSource):
    """The template's schedule rules and Scheduler schedules, plus every Scheduler schedule created at run
    time (read back from moto every SCHEDULER_SYNC_S): each fires its Lambda target on the scaled clock."""

    def __init__(self, model: CloudModel, runtime: FunctionRuntime, chaos: ChaosConfig | None,
                 schedule_scale: float = 1.0) -> None:
        super().__init__()
        if schedule_scale <= 0:
            raise LocalCloudError(f"schedule scale must be positive, got {schedule_scale}")
        self.model = model
        self.runtime = runtime
        self.chaos = chaos
        self.scale = schedule_scale
        self.name = "scheduler"
        self.schedules = [schedule for schedule in model.schedules if schedule.enabled]
        self._real_start = time.monotonic()
        self._virtual_start = time.time()
        self._lock = threading.Lock()
        # Parse now, so a bad expression is reported when the cloud starts.
        self._timetables = [_Timetable(schedule, self._virtual_start) for schedule in self.schedules]
        self._template_names = {schedule.name for schedule in model.schedules if schedule.name}
        self._next_sync = 0.0
        self._client: Any = None  # made at the first sync (the AWS endpoint is known by then), then kept

    def start(self) -> None:
        self._real_start = time.monotonic()
        self._virtual_start = time.time()
        self._timetables = [_Timetable(schedule, self._virtual_start) for schedule in self.schedules]
        self._spawn(self._loop, name="scheduler")

    def _virtual_now(self) -> float:
        return self._virtual_start + (time.monotonic() - self._real_start) * self.scale

    def _loop(self) -> None:
        while not self._stopping.is_set():
            if self.model.endpoints.aws and time.monotonic() >= self._next_sync:
                self._next_sync = time.monotonic() + SCHEDULER_SYNC_S
                self._sync_runtime_schedules()
            with self._lock:
                if not self._timetables:
                    due = None
                else:
                    due = min(self._timetables, key=lambda timetable: timetable.next_virtual)
            if due is None or math.isinf(due.next_virtual):
                self._stopping.wait(SCHEDULER_SYNC_S)
                continue
            wait_s = (due.next_virtual - self._virtual_now()) / self.scale
            if wait_s > 0:
                self._stopping.wait(min(wait_s, SCHEDULER_SYNC_S))
                continue
            with self._lock:
                if due not in self._timetables:
                    continue  # deleted meanwhile
                schedule = self.schedules[self._timetables.index(due)]
            fire_time = due.next_virtual
            due.advance()
            event = self._event(schedule, fire_time)
            self._spawn(self._fire, schedule, event, name=f"schedule-{schedule.logical_id}")
            if self.chaos is not None and self.chaos.roll("duplicate"):
                self.chaos.record("duplicate")
                self._spawn(self._fire, schedule, event, name=f"schedule-duplicate-{schedule.logical_id}")

    def _sync_runtime_schedules(self) -> None:
        """Add the enabled Lambda-target schedules moto holds that are not known yet; drop deleted ones."""
        try:
            if self._client is None:
                self._client = aws_client(self.model, "scheduler")
            client = self._client
            listed = [
                summary
                for page in client.get_paginator("list_schedules").paginate()
                for summary in page.get("Schedules", [])
            ]
            current = {f"{summary.get('GroupName', 'default')}/{summary['Name']}" for summary in listed}
            with self._lock:
                known = {schedule.name for schedule in self.schedules if schedule.name}
            added: list[tuple[ScheduleSpec, _Timetable]] = []
            for summary in listed:
                name = f"{summary.get('GroupName', 'default')}/{summary['Name']}"
                if name in known or name in self._template_names:
                    continue
                spec = self._runtime_schedule(client, summary, name)
                if spec is not None:
                    added.append((spec, _Timetable(spec, self._virtual_now())))
        except LocalCloudError as error:
            console_line(f"scheduler: {error}")
            return
        except Exception as error:  # moto unreachable for a moment: the next sync tries again
            if not self._stopping.is_set():
                console_line(f"scheduler: cannot read the schedules: {type(error).__name__}: {error}")
            return
        with self._lock:
            for spec, timetable in added:
                self.schedules.append(spec)
                self._timetables.append(timetable)
            for index in reversed(range(len(self.schedules))):
                name = self.schedules[index].name
                if name and name not in self._template_names and name not in current:
                    del self.schedules[index]
                    del self._timetables[index]

    def _runtime_schedule(self, client: Any, summary: dict[str, Any], name: str) -> ScheduleSpec | None:
        detail = client.get_schedule(Name=summary["Name"], GroupName=summary.get("GroupName", "default"))
        if detail.get("State", "ENABLED") != "ENABLED":
            return None
        target = detail.get("Target") or {}
        function = next(
            (spec.logical_id for spec in self.model.functions.values() if spec.arn == target.get("Arn")), None
        )
        if function is None:
            raise LocalCloudError(
                f"schedule {name}: target {target.get('Arn')!r} is not a function of this template; "
                "the local cloud only runs scheduled functions"
            )
        return ScheduleSpec(
            logical_id=name,
            function=function,
            expression=detail["ScheduleExpression"],
            input=target.get("Input"),
            rule_arn=detail.get("Arn", ""),
            name=name,
            timezone=detail.get("ScheduleExpressionTimezone") or "UTC",
            service="scheduler",
        )

    def _event(self, schedule: ScheduleSpec, fire_time: float) -> Any:
        if schedule.service == "scheduler":
            return _scheduler_input(schedule, fire_time)
        if schedule.input is not None:
            return schedule.input
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": self.model.account_id,
            "time": dt.datetime.fromtimestamp(math.floor(fire_time), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": self.model.region,
            "resources": [schedule.rule_arn] if schedule.rule_arn else [],
            "detail": {},
        }

    def _fire(self, schedule: ScheduleSpec, event: Any) -> None:
        # EventBridge invokes asynchronously; Lambda retries a failed async invocation twice
        # (after about 1 and 2 minutes, here on the scaled clock).
        for attempt in range(3):
            result = self.runtime.invoke(schedule.function, event, trigger=f"schedule:{schedule.logical_id}")
            if result.ok or attempt == 2:
                return
            if self._stopping.wait(min(60.0, max(0.5, 60.0 * (attempt + 1) / self.scale))):
                return


def _scheduler_input(schedule: ScheduleSpec, fire_time: float) -> Any:
    """The target's Input with Scheduler's context attributes filled in, as a Lambda target receives it
    (an absent Input arrives as an empty object). Attempts are not counted locally: always 1."""
    if schedule.input is None:
        return {}
    text = schedule.input if isinstance(schedule.input, str) else json.dumps(schedule.input)
    scheduled = dt.datetime.fromtimestamp(math.floor(fire_time), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    context = {
        "<aws.scheduler.schedule-arn>": schedule.rule_arn,
        "<aws.scheduler.scheduled-time>": scheduled,
        "<aws.scheduler.execution-id>": str(uuid.uuid4()),
        "<aws.scheduler.attempt-number>": "1",
    }
    for placeholder, value in context.items():
        text = text.replace(placeholder, value)
    try:
        return json.loads(text)
    except ValueError:
        return text  # Input need not be JSON; Lambda is then handed the string
