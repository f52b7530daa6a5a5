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
