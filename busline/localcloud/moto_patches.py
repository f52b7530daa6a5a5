"""Make moto's server behave as AWS does where Busline relies on it: DynamoDB's atomicity, and S3 keeping
the body of a PUT (keep_put_bodies); and let the local cloud's pollers, which run in moto's process, hear
of new work instead of asking on a timer (wake_stream_readers_on_writes, make_sqs_long_polls_endable).

DynamoDB applies each single-item request atomically. moto evaluates conditions, applies updates and
builds responses in plain Python under a multi-threaded server, so two concurrent UpdateItems can
interleave: measured here, 8 threads x 50 `ADD` updates ended at 399 instead of 400, and copying an
item while another request updated it raised "dictionary changed size during iteration". Fan-in
counters and exactly-once phase transitions depend on that atomicity, so DynamoDB and its streams
(which read the same tables) are served one request at a time. Other services keep their concurrency:
SQS long polls would otherwise block everything.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Final

_DYNAMODB_LOCK = threading.RLock()
_applied = False


def _serialized(method: Callable[..., Any], lock: threading.RLock) -> Callable[..., Any]:
    @functools.wraps(method)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return method(*args, **kwargs)

    return locked


def _dynamodb_handlers() -> tuple[type[Any], ...]:
    from moto.dynamodb.responses import DynamoHandler
    from moto.dynamodbstreams.responses import DynamoDBStreamsHandler

    return DynamoHandler, DynamoDBStreamsHandler


def make_dynamodb_atomic() -> None:
    """For the rest of the process: the local cloud's moto server never runs without it."""
    global _applied
    if _applied:
        return
    for handler in _dynamodb_handlers():
        handler.call_action = _serialized(handler.call_action, _DYNAMODB_LOCK)
    _applied = True


@contextlib.contextmanager
def atomic_dynamodb() -> Iterator[None]:
    """The same serialization for the block only, undone on exit: for tests that run moto in-process
    (mock_aws) from several threads and must see AWS's per-item atomicity, without changing moto for
    the tests that follow."""
    lock = threading.RLock()
    originals = [(handler, handler.__dict__.get("call_action")) for handler in _dynamodb_handlers()]
    for handler, _ in originals:
        handler.call_action = _serialized(handler.call_action, lock)
    try:
        yield
    finally:
        for handler, own in originals:
            if own is None:
                del handler.call_action  # it was inherited: let the base class's show through again
            else:
                handler.call_action = own


_put_bodies_kept = False


def keep_put_bodies() -> None:
    """For the rest of the process: a PUT's body is the object, whatever its Content-Type says.

    moto's server hands every request with a form Content-Type to werkzeug's form parser, which eats
    the body. Python's urllib sends `application/x-www-form-urlencoded` with any PUT that names no
    type, so a file PUT through a presigned upload URL (POST /uploads) was stored empty, where S3
    stores the bytes. No AWS API sends an HTML form with PUT, so PUT bodies are never parsed as one.
    """
    global _put_bodies_kept
    if _put_bodies_kept:
        return
    from moto.core.request import Request

    wants_form = Request.want_form_data_parsed

    def want_form_data_parsed(self: Any) -> bool:
        return self.method != "PUT" and bool(wants_form.__get__(self))

    Request.want_form_data_parsed = property(want_form_data_parsed)  # type: ignore[method-assign,assignment]
    _put_bodies_kept = True


# -- DynamoDB streams: wake the readers on writes ---------------------------------------------------


class StreamWrites:
    """How many records this process's moto has appended to each table's stream, and a wait for the next.

    A stream reader notes the count before GetRecords and afterwards waits for it to move: a write that
    lands during GetRecords (or while the batch is being processed) still wakes it, and an idle reader
    asks again only when its wait times out.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._counts: dict[str, int] = {}

    def count(self, table_name: str) -> int:
        with self._changed:
            return self._counts.get(table_name, 0)

    def appended(self, table_name: str) -> None:
        with self._changed:
            self._counts[table_name] = self._counts.get(table_name, 0) + 1
            self._changed.notify_all()

    def wait_beyond(self, table_name: str, seen: int, timeout_s: float,
                    stop: threading.Event | None = None) -> bool:
        """Until the table's count is no longer `seen`, `stop` is set or the time is up; True if written."""
        with self._changed:
            self._changed.wait_for(
                lambda: self._counts.get(table_name, 0) != seen or (stop is not None and stop.is_set()),
                timeout=timeout_s,
            )
            return self._counts.get(table_name, 0) != seen

    def wake_all(self) -> None:
        """Make every waiter look at its `stop` again (a reader is stopping)."""
        with self._changed:
            self._changed.notify_all()


STREAM_WRITES = StreamWrites()
_stream_writes_announced = False
_patch_lock = threading.Lock()


def wake_stream_readers_on_writes() -> None:
    """For the rest of the process: every record moto appends to a table's stream counts in STREAM_WRITES.

    Only readers in moto's own process hear it (the local cloud's StreamPoller); against a moto elsewhere
    the count never moves and a reader falls back to its timeout.
    """
    global _stream_writes_announced
    with _patch_lock:
        if _stream_writes_announced:
            return
        try:
            from moto.dynamodb.models.table import StreamShard
        except ImportError:  # another moto layout: readers fall back to their timeout, nothing breaks
            return

        add = StreamShard.add

        @functools.wraps(add)
        def add_and_announce(self: Any, old: Any, new: Any) -> None:
            add(self, old, new)
            STREAM_WRITES.appended(self.table.name)

        StreamShard.add = add_and_announce  # type: ignore[method-assign]
        _stream_writes_announced = True


# -- SQS: long polls that a stopping poller can end -------------------------------------------------

# A ReceiveMessage whose MessageAttributeNames hold a name with this prefix comes from a poller that may
# end its long poll early (end_long_polls). Any other ReceiveMessage is moto's own, unchanged. The name is
# a valid attribute name that no message carries, so it selects nothing.
LONG_POLL_TOKEN_PREFIX: Final = "BuslinePoller_"
# moto's own long poll also looks again at least this often: a message whose visibility timeout or
# delay ran out becomes receivable without any notification.
_RESCAN_S: Final = 1.0

_long_polls_lock = threading.Lock()
_long_polls_seen: set[str] = set()
_long_polls_ended: set[str] = set()
_long_polls_waiting: dict[str, threading.Condition] = {}
_long_polls_endable = False


def long_polls_are_endable(token: str) -> bool:
    """Whether a ReceiveMessage carrying `token` has reached this process's moto (patched): only then
    can end_long_polls cut its long polls short, so only then is a long wait safe for its poller."""
    with _long_polls_lock:
        return token in _long_polls_seen


def end_long_polls(token: str) -> None:
    """End the long poll carrying `token` now (it returns no messages), and any it starts later."""
    with _long_polls_lock:
        _long_polls_ended.add(token)
        condition = _long_polls_waiting.get(token)
    if condition is not None:
        with condition:
            condition.notify_all()


def _ended(token: str) -> bool:
    with _long_polls_lock:
        return token in _long_polls_ended


def make_sqs_long_polls_endable() -> None:
    """For the rest of the process: a long poll carrying a poller token (LONG_POLL_TOKEN_PREFIX) waits on
    the queue the way moto does, but also returns as soon as end_long_polls(token) is called.

    Without it a poller's stop() would have to outwait its ReceiveMessage (up to 20 s), or a poll left
    running after stop() would take a message and hide it for its visibility timeout, so the pollers
    could only afford 1 s long polls, i.e. one ReceiveMessage per idle second per queue.
    """
    global _long_polls_endable
    with _patch_lock:
        if _long_polls_endable:
            return
        try:
            from moto.sqs.models import SQSBackend
        except ImportError:  # another moto layout: pollers never see their token and keep 1 s polls
            return

        receive = SQSBackend.receive_message

        @functools.wraps(receive)
        def receive_message(self: Any, queue_name: str, count: int, wait_seconds_timeout: int,
                            visibility_timeout: int, message_attribute_names: list[str] | None = None) -> Any:
            token = next((name for name in message_attribute_names or []
                          if name.startswith(LONG_POLL_TOKEN_PREFIX)), None)
            if token is None or not wait_seconds_timeout:
                return receive(self, queue_name, count, wait_seconds_timeout, visibility_timeout,
                               message_attribute_names)
            queue = self.get_queue(queue_name)
            arrived = getattr(queue, "_messages_lock", None)  # the condition moto notifies on a new message
            if not isinstance(arrived, threading.Condition):
                return receive(self, queue_name, count, wait_seconds_timeout, visibility_timeout,
                               message_attribute_names)
            deadline = time.monotonic() + wait_seconds_timeout
            with _long_polls_lock:
                _long_polls_seen.add(token)
                _long_polls_waiting[token] = arrived
            try:
                while True:
                    # moto's receive without a wait: one look at the queue (visibility, FIFO groups, DLQ)
                    result = receive(self, queue_name, count, 0, visibility_timeout, message_attribute_names)
                    remaining = deadline - time.monotonic()
                    if result or remaining <= 0 or _ended(token):
                        return result
                    with arrived:
                        arrived.wait_for(lambda: bool(queue.messages) or _ended(token),
                                         timeout=min(remaining, _RESCAN_S))
            finally:
                with _long_polls_lock:
                    _long_polls_waiting.pop(token, None)

        SQSBackend.receive_message = receive_message  # type: ignore[method-assign]
        _long_polls_endable = True


# -- S3: a ranged GET reads its bytes only -----------------------------------------------------------

_ranges_sliced = False
_wanted = threading.local()
_SIMPLE_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


def serve_ranges_without_reading_whole_objects() -> None:
    """For the rest of the process: a GET with one `bytes=a-b` (or `a-`) range reads those bytes only.

    moto answers a ranged GET by reading the whole object (and copying it) and slicing afterwards, under the
    object's lock: a 2 MiB range of a 300 MB source cost two 300 MB copies from disk, so ranges read in
    parallel queued behind each other, where S3 serves each in constant time. The answer is unchanged:
    206, the bytes, Content-Range and Content-Length, no checksum headers for a part of the object; any other
    Range form (suffix, several ranges, past the end) still goes through moto's own handling.
    """
    global _ranges_sliced
    if _ranges_sliced:
        return
    from moto.s3.models import FakeKey
    from moto.s3.responses import S3Response

    whole_value: Any = FakeKey.value

    def value(self: Any) -> bytes:
        wanted = getattr(_wanted, "range", None)
        if wanted is None or wanted[0] >= self.size:
            read: bytes = whole_value.fget(self)
            return read
        begin, end = wanted[0], self.size - 1 if wanted[1] is None else min(wanted[1], self.size - 1)
        with self.lock:
            self._value_buffer.seek(begin)
            part: bytes = self._value_buffer.read(end - begin + 1)
        _wanted.served = (begin, end, self.size)
        return part

    FakeKey.value = property(value, whole_value.fset)  # type: ignore[method-assign,assignment]
    get_object = S3Response.get_object

    def ranged_get_object(self: Any) -> Any:
        match = _SIMPLE_RANGE.fullmatch(self.headers.get("range") or "")
        if match is None or "partNumber" in self.querystring:
            return get_object(self)
        _wanted.range = (int(match[1]), int(match[2]) if match[2] else None)
        _wanted.served = None
        try:
            status, headers, body = get_object(self)
        finally:
            _wanted.range = None
        served, _wanted.served = _wanted.served, None
        if served is None or status != 200:
            return status, headers, body
        begin, end, size = served
        if begin or end < size - 1:
            for name in [h for h in headers if h.startswith("x-amz-checksum-")]:
                del headers[name]
        headers["content-range"] = f"bytes {begin}-{end}/{size}"
        headers["content-length"] = str(len(body))
        return 206, headers, body

    S3Response.get_object = ranged_get_object  # type: ignore[method-assign]
    _ranges_sliced = True


# -- SNS e-mail: an outbox instead of a mail server -------------------------------------------------

_outbox: list[Any] = []  # [Path] once set: where deliveries go (a cloud per process, so one folder)
_outbox_lock = threading.Lock()


def deliver_email_to_outbox(folder: Any) -> None:
    """For the rest of the process: what an SNS e-mail subscription would be mailed is appended to
    `<folder>/<address>.jsonl` (to, subject, body, topic, message id), after the subscription's filter
    policy and the message's per-protocol form (MessageStructure json), as SNS would mail it.

    moto keeps e-mail subscriptions but delivers nothing; a local cloud sends no mail off the machine."""
    from pathlib import Path

    from moto.sns.models import Subscription

    with _outbox_lock:
        first = not _outbox
        _outbox[:] = [Path(folder)]
    if not first:
        return
    publish = Subscription.publish

    def publish_and_keep_mail(self: Any, message: str, message_id: str, *args: Any, **kwargs: Any) -> None:
        publish(self, message, message_id, *args, **kwargs)
        if self.protocol not in ("email", "email-json"):
            return
        attributes = kwargs.get("message_attributes")
        if self._filter_policy_matcher is not None and not self._filter_policy_matcher.matches(attributes, message):
            return
        body = message
        if kwargs.get("message_structure") == "json":
            body = self._parse_message_structure(message, self.protocol)
        mail = {"to": self.endpoint, "subject": kwargs.get("subject"), "body": body,
                "topicArn": self.topic.arn, "messageId": message_id}  # fmt: skip
        address = re.sub(r"[^A-Za-z0-9@._+-]", "_", self.endpoint)
        with _outbox_lock:
            folder_now = _outbox[0]
            folder_now.mkdir(parents=True, exist_ok=True)
            with (folder_now / f"{address}.jsonl").open("a", encoding="utf-8") as outbox:
                outbox.write(json.dumps(mail) + "\n")

    Subscription.publish = publish_and_keep_mail  # type: ignore[method-assign]


# -- S3 event notifications and SNS `lambda` subscriptions: handed to the local cloud -----------------

# (event name such as "s3:ObjectCreated:Put", moto's bucket, moto's key)
S3EventSink = Callable[[str, Any, Any], None]
# (moto's subscription, message as the subscription gets it, message id, subject, message attributes)
SnsLambdaSink = Callable[[Any, str, str, str | None, dict[str, Any]], None]
# moto reports these correctly; it also reports tagging and ACL "events" for every PutObject (its PutObject
# applies the request's tags and ACL through the calls that notify), which S3 never sends.
_ROUTED_S3_EVENT_FAMILIES: Final = ("s3:ObjectCreated:", "s3:ObjectRemoved:")
_notification_sinks: dict[str, Any] = {"s3": None, "sns-lambda": None}
_notification_routes_installed = False


def route_notifications(s3_events: S3EventSink | None, sns_lambda: SnsLambdaSink | None) -> None:
    """From now on S3's event notifications (ObjectCreated and ObjectRemoved) go to `s3_events`, and each
    message a `lambda` subscription lets through (its filter policy and message structure applied by moto)
    goes to `sns_lambda`, instead of moto's own sending: moto would invoke functions through its Docker-only
    Lambda and shapes S3's records only in part. Call again with None, None to detach (a cloud stopping):
    S3 then notifies as moto does and `lambda` subscriptions receive nothing.

    moto's CompleteMultipartUpload stores the object through its PutObject, which notifies
    `ObjectCreated:Put` before `ObjectCreated:CompleteMultipartUpload`; S3 sends only the latter, so a Put
    event for an object assembled from parts is dropped here.
    """
    global _notification_routes_installed
    with _patch_lock:
        _notification_sinks["s3"] = s3_events
        _notification_sinks["sns-lambda"] = sns_lambda
        if _notification_routes_installed:
            return
        from moto.s3 import notifications as s3_notifications
        from moto.sns.models import Subscription

        send_event = s3_notifications.send_event

        @functools.wraps(send_event)
        def send_to_sink(account_id: str, event_name: Any, bucket: Any, key: Any) -> None:
            sink = _notification_sinks["s3"]
            if sink is None:
                send_event(account_id, event_name, bucket, key)
                return
            name = str(getattr(event_name, "value", event_name))
            if not name.startswith(_ROUTED_S3_EVENT_FAMILIES) or key is None:
                return
            if name == "s3:ObjectCreated:Put" and getattr(key, "multipart", None) is not None:
                return
            sink(name, bucket, key)

        s3_notifications.send_event = send_to_sink  # type: ignore[assignment]
        publish = Subscription.publish

        @functools.wraps(publish)
        def publish_to_sink(self: Any, message: str, message_id: str, **kwargs: Any) -> None:
            if self.protocol != "lambda":
                publish(self, message, message_id, **kwargs)
                return
            sink = _notification_sinks["sns-lambda"]
            if sink is None:
                return
            attributes = kwargs.get("message_attributes") or {}
            if self._filter_policy_matcher is not None and not self._filter_policy_matcher.matches(attributes, message):
                return
            if kwargs.get("message_structure") == "json":
                message = self._parse_message_structure(message, self.protocol)
            sink(self, message, message_id, kwargs.get("subject"), dict(attributes))

        Subscription.publish = publish_to_sink  # type: ignore[method-assign,assignment]
        _notification_routes_installed = True


# -- AWS-exact edges the peer comparison found (tests/conformance_peer) ------------------------------

_edges_applied = False
# AWS's documented forms (Scheduler API, ScheduleExpression): at(yyyy-mm-ddThh:mm:ss), rate(value unit),
# cron(six fields). The fields themselves are Scheduler's to check; a shape moto takes and AWS refuses
# ("every night") would otherwise only fail when a schedule is due, which the local scheduler cannot say.
_SCHEDULE_EXPRESSION = re.compile(
    r"at\(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\)"
    r"|rate\(\s*[1-9]\d*\s+(minute|minutes|hour|hours|day|days)\s*\)"
    r"|cron\(\s*\S+(\s+\S+){5}\s*\)"
)


def apply_aws_edges() -> None:
    """For the rest of the process: where moto answers otherwise than AWS documents.

    - DynamoDB Streams: a write that leaves the item as it was (PutItem of the same item, an UpdateItem
      setting the values it holds) writes no stream record (Streams developer guide: "only if the item
      is actually modified"); moto writes a MODIFY.
    - EventBridge InputTransformer: a variable placed where a JSON value goes takes the value's JSON form,
      so a string arrives quoted (`{"kind": <kind>}` gives `{"kind": "created"}`); moto inserted it bare
      and PutEvents failed with a 500. Inside a string literal (`"is <kind>"`) the text goes in as is.
    - Scheduler: CreateSchedule and UpdateSchedule refuse an expression of none of AWS's three forms with
      a ValidationException, as AWS does.
    - DynamoDB Streams forget as AWS does: a record after 24 hours, a shard iterator 15 minutes after it was
      returned. moto kept both for ever, and every state snapshot of a long-lived local cloud pickled them
      all (an idle stream reader alone leaves one iterator a second). Reading a trimmed record is a
      TrimmedDataAccessException, an expired iterator an ExpiredIteratorException, as on AWS.
    """
    global _edges_applied
    with _patch_lock:
        if _edges_applied:
            return
        _skip_unchanged_stream_records()
        _input_transformer_quotes_json_values()
        _scheduler_checks_expression_forms()
        _streams_forget_like_aws()
        _edges_applied = True


def _skip_unchanged_stream_records() -> None:
    from moto.dynamodb.models.table import StreamShard

    add = StreamShard.add

    @functools.wraps(add)
    def add_if_changed(self: Any, old: Any, new: Any) -> None:
        if old is not None and new is not None and old.to_json() == new.to_json():
            return
        add(self, old, new)

    StreamShard.add = add_if_changed  # type: ignore[method-assign]


# DynamoDB Streams developer guide: "stream records are … removed automatically after 24 hours";
# GetShardIterator: "A shard iterator expires 15 minutes after it is returned to the requester".
STREAM_RECORD_RETENTION = dt.timedelta(hours=24)
SHARD_ITERATOR_LIFETIME_S = 15 * 60.0


def _streams_forget_like_aws() -> None:
    from moto.core.exceptions import JsonRESTError
    from moto.core.utils import utcnow
    from moto.dynamodb.models.table import StreamShard
    from moto.dynamodbstreams.models import DynamoDBStreamsBackend, ShardIterator

    add, get = StreamShard.add, StreamShard.get

    @functools.wraps(add)
    def add_and_trim(self: Any, old: Any, new: Any) -> None:
        add(self, old, new)
        oldest_kept = utcnow() - STREAM_RECORD_RETENTION
        expired = 0
        for record in self.items:  # in the order written: the expired ones lead
            if record.record["dynamodb"]["ApproximateCreationDateTime"] >= oldest_kept:
                break
            expired += 1
        if expired:
            del self.items[:expired]
            self.starting_sequence_number += expired  # a record keeps its sequence number

    @functools.wraps(get)
    def get_untrimmed(self: Any, start: int, quantity: int) -> Any:
        if start < self.starting_sequence_number:
            raise JsonRESTError(
                "TrimmedDataAccessException",
                f"the records from sequence number {start} were trimmed (older than the stream's 24 hours)",
            )
        return get(self, start, quantity)

    iterator_init = ShardIterator.__init__

    @functools.wraps(iterator_init)
    def stamped_iterator(self: Any, *args: Any, **kwargs: Any) -> None:
        iterator_init(self, *args, **kwargs)
        self.returned_at = time.time()

    get_records = DynamoDBStreamsBackend.get_records

    @functools.wraps(get_records)
    def get_records_of_live_iterators(self: Any, iterator_arn: str, limit: int) -> Any:
        # Iterators are kept in the order they were returned, so the expired ones lead.
        expired_before = time.time() - SHARD_ITERATOR_LIFETIME_S
        while self.shard_iterators:
            oldest = next(iter(self.shard_iterators))
            if getattr(self.shard_iterators[oldest], "returned_at", 0.0) >= expired_before:
                break
            del self.shard_iterators[oldest]
        if iterator_arn not in self.shard_iterators:
            raise JsonRESTError("ExpiredIteratorException", "the shard iterator has expired (15 minutes)")
        return get_records(self, iterator_arn, limit)

    StreamShard.add = add_and_trim  # type: ignore[method-assign]
    StreamShard.get = get_untrimmed  # type: ignore[method-assign]
    ShardIterator.__init__ = stamped_iterator  # type: ignore[method-assign]
    DynamoDBStreamsBackend.get_records = get_records_of_live_iterators  # type: ignore[method-assign]


def _template_with_values(template: str, values: dict[str, Any]) -> str:
    """`template` with each `<name>` of `values` replaced: as text inside a JSON string literal, as its JSON
    form elsewhere (EventBridge's rule for JSON input templates)."""
    out: list[str] = []
    in_string = False
    index = 0
    while index < len(template):
        char = template[index]
        if char == "<":
            end = template.find(">", index)
            name = template[index + 1 : end] if end > 0 else ""
            if name in values:
                value = values[name]
                if in_string:
                    text = value if isinstance(value, str) else json.dumps(value)
                    out.append(json.dumps(text)[1:-1])  # escaped for the literal it sits in
                else:
                    out.append(json.dumps(value))
                index = end + 1
                continue
        if char == "\\" and in_string:
            out.append(template[index : index + 2])
            index += 2
            continue
        if char == '"':
            in_string = not in_string
        out.append(char)
        index += 1
    return "".join(out)


def _input_transformer_quotes_json_values() -> None:
    import jsonpath_ng.ext
    from moto.events.utils import EventTemplateParser

    original = EventTemplateParser.parse
    # Parsing a path builds jsonpath_ng's whole grammar (PLY tables) again: an eighth of the local cloud's
    # time in the flights run, for the same few paths (the rules' and moto's default target input). A parsed
    # path is immutable; moto's own parse imports `parse` at each call, so it gets the remembered ones too.
    compiled_path = functools.lru_cache(maxsize=512)(jsonpath_ng.ext.parse)
    jsonpath_ng.ext.parse = compiled_path

    def parse(input_template: str, input_paths_map: dict[str, Any], event: Any) -> Any:
        if not input_template or not input_paths_map:  # the whole event, or moto's own archive template
            return original(input_template, input_paths_map, event)
        values: dict[str, Any] = {}
        for name, path in input_paths_map.items():
            matches = compiled_path(path).find(event)
            values[name] = matches[0].value if matches else None
        values["aws.events.event.json"] = event
        values["aws.events.event.ingestion-time"] = event.get("ingestion-time")
        return json.loads(_template_with_values(input_template, values))

    EventTemplateParser.parse = staticmethod(parse)  # type: ignore[method-assign,assignment]


def _scheduler_checks_expression_forms() -> None:
    from moto.scheduler.exceptions import ValidationException
    from moto.scheduler.models import EventBridgeSchedulerBackend

    for method_name in ("create_schedule", "update_schedule"):
        method = getattr(EventBridgeSchedulerBackend, method_name)

        def checked(self: Any, *args: Any, _method: Any = method, **kwargs: Any) -> Any:
            expression = str(kwargs.get("schedule_expression") or "")
            if not _SCHEDULE_EXPRESSION.fullmatch(expression.strip()):
                raise ValidationException(f"Invalid Schedule Expression {expression}.")
            return _method(self, *args, **kwargs)

        setattr(EventBridgeSchedulerBackend, method_name, functools.wraps(method)(checked))
