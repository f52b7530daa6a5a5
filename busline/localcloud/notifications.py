"""S3 event notifications and SNS `lambda` subscriptions, delivered as AWS delivers them.

moto keeps each bucket's notification configuration and each topic's subscriptions and decides what matches
(event type, key prefix and suffix; filter policy, message structure). moto_patches.route_notifications hands
every match to `Notifications`, which shapes it as AWS does and sends it on, inside moto's process:

- S3 to a function, queue or topic: one event message (`Records`, eventVersion 2.1) per matching
  configuration, its `configurationId` that configuration's; the key URL-encoded as S3 encodes it
  (`+` for a space, `/` kept); `versionId` only for a versioned bucket; a sequencer that grows with every
  change, the same for every destination of one change. To a topic with the subject "Amazon S3 Notification".
- S3 to EventBridge (the bucket's EventBridgeConfiguration): an "Object Created" / "Object Deleted" event
  from `aws.s3` on the default bus, the key as it is.
- SNS to a function: `Records[].Sns` as Lambda receives it, signed by moto's key.

A function is invoked asynchronously, as S3 and SNS invoke it (`AsyncInvoker`): the sender never waits; a
failed invocation is retried twice (or the EventInvokeConfig's MaximumRetryAttempts), after 1 and 2 seconds
where Lambda waits about 1 and 2 minutes; then the event goes to the OnFailure destination (an invocation
record) or else the dead-letter queue (the event itself, with RequestID, ErrorCode and ErrorMessage
attributes). A success goes to the OnSuccess destination.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote_plus

from busline.localcloud.event_sources import STOP_GRACE_S
from busline.localcloud.model import AsyncInvokeConfig, CloudModel, LocalCloudError
from busline.localcloud.moto_patches import route_notifications
from busline.localcloud.runtime import FunctionRuntime, InvocationResult, console_line

# Lambda waits about a minute before the first retry and two before the second; locally, seconds.
RETRY_DELAYS_S: tuple[float, ...] = (1.0, 2.0)
S3_TOPIC_SUBJECT = "Amazon S3 Notification"
LOCAL_SOURCE_IP = "127.0.0.1"
_EVENTBRIDGE_REASONS = {
    "ObjectCreated:Put": "PutObject",
    "ObjectCreated:Post": "POST Object",
    "ObjectCreated:Copy": "CopyObject",
    "ObjectCreated:CompleteMultipartUpload": "CompleteMultipartUpload",
    "ObjectRemoved:Delete": "DeleteObject",
    "ObjectRemoved:DeleteMarkerCreated": "DeleteObject",
}
_DELETION_TYPES = {"ObjectRemoved:Delete": "Permanently Deleted", "ObjectRemoved:DeleteMarkerCreated": "Delete Marker Created"}


# ---------------------------------------------------------------------------------------------------
# Shapes


def s3_object_change(event_name: str, bucket: Any, key: Any, sequencer: str) -> dict[str, Any]:
    """What one S3 change is, from moto's bucket and key: the facts both notification shapes are made of."""
    version_id = getattr(key, "version_id", None)
    return {
        "eventName": event_name.removeprefix("s3:"),
        "eventTime": dt.datetime.now(dt.UTC),
        "region": bucket.region_name,
        "account": bucket.account_id,
        "bucket": bucket.name,
        "bucketArn": bucket.arn,
        "key": key.name,
        "size": key.size,
        "eTag": key.etag.strip('"'),
        # "null" is how moto (and S3's API) names the one version of an unversioned object
        "versionId": version_id if bucket.is_versioned and version_id not in (None, "null") else None,
        "sequencer": sequencer,
        "requestId": _request_id(),
    }


def s3_event_message(change: dict[str, Any], configuration_id: str) -> dict[str, Any]:
    """The event message S3 sends a function, queue or topic
    (https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html)."""
    s3_object: dict[str, Any] = {"key": quote_plus(change["key"], safe="/")}
    if change["eventName"].startswith("ObjectCreated:"):
        s3_object.update(size=change["size"], eTag=change["eTag"])
    if change["versionId"] is not None:
        s3_object["versionId"] = change["versionId"]
    s3_object["sequencer"] = change["sequencer"]
    principal = _principal_id(change["account"])
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": change["region"],
                "eventTime": change["eventTime"].isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "eventName": change["eventName"],
                "userIdentity": {"principalId": f"AWS:{principal}"},
                "requestParameters": {"sourceIPAddress": LOCAL_SOURCE_IP},
                "responseElements": {
                    "x-amz-request-id": change["requestId"],
                    "x-amz-id-2": _host_id(change["requestId"]),
                },
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": configuration_id,
                    "bucket": {
                        "name": change["bucket"],
                        "ownerIdentity": {"principalId": principal},
                        "arn": change["bucketArn"],
                    },
                    "object": s3_object,
                },
            }
        ]
    }


def s3_eventbridge_detail(change: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(detail-type, detail) of the event S3 puts on the default bus
    (https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html)."""
    created = change["eventName"].startswith("ObjectCreated:")
    s3_object: dict[str, Any] = {"key": change["key"]}
    if created:
        s3_object.update(size=change["size"], etag=change["eTag"])
    if change["versionId"] is not None:
        s3_object["version-id"] = change["versionId"]
    s3_object["sequencer"] = change["sequencer"]
    detail: dict[str, Any] = {
        "version": "0",
        "bucket": {"name": change["bucket"]},
        "object": s3_object,
        "request-id": change["requestId"],
        "requester": change["account"],
        "source-ip-address": LOCAL_SOURCE_IP,
        "reason": _EVENTBRIDGE_REASONS[change["eventName"]],
    }
    if not created:
        detail["deletion-type"] = _DELETION_TYPES[change["eventName"]]
    return ("Object Created" if created else "Object Deleted"), detail


def sns_lambda_event(subscription: Any, message: str, message_id: str, subject: str | None,
                     attributes: dict[str, Any]) -> dict[str, Any]:
    """The event SNS invokes a subscribed function with
    (https://docs.aws.amazon.com/lambda/latest/dg/with-sns.html), signed as moto signs its HTTP deliveries."""
    signed = subscription.get_post_data(message, message_id, subject, message_attributes=attributes)
    region = subscription.topic_arn.split(":")[3]
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "EventSubscriptionArn": subscription.arn,
                "Sns": {
                    "Type": "Notification",
                    "MessageId": message_id,
                    "TopicArn": subscription.topic_arn,
                    "Subject": subject or None,
                    "Message": message,
                    "Timestamp": signed["Timestamp"],
                    "SignatureVersion": signed["SignatureVersion"],
                    "Signature": signed["Signature"],
                    "SigningCertUrl": signed["SigningCertURL"],
                    "UnsubscribeUrl": f"https://sns.{region}.amazonaws.com/?Action=Unsubscribe&SubscriptionArn="
                                      f"{subscription.arn}",
                    "MessageAttributes": {name: {"Type": value["Type"], "Value": value["Value"]}
                                          for name, value in attributes.items()},
                },
            }
        ]
    }


def invocation_record(function_arn: str, request_id: str, event: Any, result: InvocationResult,
                      condition: str, attempts: int) -> dict[str, Any]:
    """What an asynchronous invocation's destination receives
    (https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html)."""
    response: dict[str, Any] = {"statusCode": 200, "executedVersion": "$LATEST"}
    if not result.ok:
        response["functionError"] = "Unhandled"
    return {
        "version": "1.0",
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "requestContext": {
            "requestId": request_id,
            "functionArn": f"{function_arn}:$LATEST",
            "condition": condition,
            "approximateInvokeCount": attempts,
        },
        "requestPayload": event,
        "responseContext": response,
        "responsePayload": result.payload if result.ok or result.payload is not None
        else {"errorMessage": result.error, "errorType": result.error_type},
    }


class _Sequencer:
    """S3's sequencer: hexadecimal, one length, greater for every later change (S3 promises that per key)."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> str:
        with self._lock:
            self._last = max(self._last + 1, time.time_ns())
            return f"{self._last:018X}"


def _request_id() -> str:
    return secrets.token_hex(8).upper()


def _host_id(request_id: str) -> str:
    return hashlib.sha256(request_id.encode()).hexdigest()


def _principal_id(account_id: str) -> str:
    # S3 names the requester and the bucket owner by opaque ids; locally one stable id per account.
    return "A" + hashlib.sha1(account_id.encode()).hexdigest()[:13].upper()


# ---------------------------------------------------------------------------------------------------
# Sending, inside moto's process


def send_to_arn(arn: str, body: str, *, subject: str | None = None,
                attributes: dict[str, tuple[str, str]] | None = None) -> None:
    """Put `body` on an SQS queue or publish it to an SNS topic through moto's own backends, as moto's
    notifications do: the caller runs inside moto's process, with or without its HTTP server.
    `attributes`: name -> (DataType, value)."""
    parts = arn.split(":")
    service, region, account = (parts[2], parts[3], parts[4]) if len(parts) >= 6 else ("", "", "")
    if service == "sqs":
        from moto.sqs.models import sqs_backends

        sqs_attributes = {name: {"DataType": kind, "StringValue": value}
                          for name, (kind, value) in (attributes or {}).items()}
        sqs_backends[account][region].send_message(parts[5], body, message_attributes=sqs_attributes)
    elif service == "sns":
        from moto.sns.models import sns_backends

        sns_attributes = {name: {"Type": kind, "Value": value} for name, (kind, value) in (attributes or {}).items()}
        sns_backends[account][region].publish(body, arn=arn, subject=subject, message_attributes=sns_attributes)
    else:
        raise LocalCloudError(f"{arn!r} is neither an SQS queue nor an SNS topic ARN")


class AsyncInvoker:
    """Lambda's asynchronous invocation: `submit` returns at once; each event is retried, aged and sent to
    its destinations or dead-letter queue as the function's AsyncInvokeConfig says."""

    def __init__(self, model: CloudModel, runtime: FunctionRuntime,
                 retry_delays_s: Sequence[float] = RETRY_DELAYS_S) -> None:
        self.model = model
        self.runtime = runtime
        self.retry_delays_s = tuple(retry_delays_s)
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._submitted = 0
        self._settled = 0

    @property
    def submitted(self) -> int:
        """How many events were handed over (a chaos duplicate counts once): S3 and SNS submit inside the
        request that caused them, so a caller can count right after it."""
        with self._lock:
            return self._submitted

    @property
    def settled(self) -> int:
        """How many deliveries are done with: succeeded, or given up and sent where the config says (a chaos
        duplicate is a delivery of its own)."""
        with self._lock:
            return self._settled

    def submit(self, function: str, event: Any, trigger: str) -> None:
        if self._stopping.is_set():
            console_line(f"{trigger}: the local cloud is stopping; event for {function} dropped")
            return
        with self._lock:
            self._submitted += 1
        copies = 1
        chaos = self.runtime.chaos
        if chaos is not None and chaos.roll("duplicate"):
            chaos.record("duplicate")  # Lambda's asynchronous queue may run one event twice
            copies = 2
        for _ in range(copies):
            thread = threading.Thread(target=self._deliver, args=(function, event, trigger, time.monotonic()),
                                      name=f"async-{function}", daemon=True)
            with self._lock:
                self._threads = [alive for alive in self._threads if alive.is_alive()]
                self._threads.append(thread)
            thread.start()

    def stop(self) -> None:
        self._stopping.set()
        deadline = time.monotonic() + STOP_GRACE_S
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def _deliver(self, function: str, event: Any, trigger: str, queued_at: float) -> None:
        config = self.model.async_invoke.get(function) or AsyncInvokeConfig()
        request_id = str(uuid.uuid4())
        attempts = 0
        try:
            while True:
                try:
                    result = self.runtime.invoke(function, event, trigger=trigger)
                except LocalCloudError as error:  # the runtime closed under us: the cloud is stopping
                    if not self._stopping.is_set():
                        console_line(f"{trigger}: {error}")
                    return
                attempts += 1
                if result.ok:
                    self._conclude(function, request_id, event, result, "Success", attempts, config)
                    return
                if attempts > config.max_retry_attempts:
                    self._conclude(function, request_id, event, result, "RetriesExhausted", attempts, config)
                    return
                delay = self.retry_delays_s[min(attempts, len(self.retry_delays_s)) - 1]
                if time.monotonic() - queued_at + delay > config.max_event_age_s:
                    self._conclude(function, request_id, event, result, "EventAgeExceeded", attempts, config)
                    return
                if self._stopping.wait(delay):
                    return
        finally:
            with self._lock:
                self._settled += 1

    def _conclude(self, function: str, request_id: str, event: Any, result: InvocationResult, condition: str,
                  attempts: int, config: AsyncInvokeConfig) -> None:
        function_arn = self.model.functions[function].arn
        destination = config.on_success_arn if result.ok else config.on_failure_arn
        try:
            if destination is not None:
                record = invocation_record(function_arn, request_id, event, result, condition, attempts)
                send_to_arn(destination, json.dumps(record))
            elif not result.ok and config.dead_letter_arn is not None:
                destination = config.dead_letter_arn
                send_to_arn(destination, json.dumps(event), attributes={
                    "RequestID": ("String", request_id),
                    "ErrorCode": ("Number", "200"),
                    "ErrorMessage": ("String", (result.error or result.error_type or "")[:1024] or "Unhandled"),
                })
        except Exception as error:  # a destination gone missing must not take the invoker down
            console_line(f"async {function}: could not send to {destination}: {type(error).__name__}: {error}")
            return
        if not result.ok:
            where = f"sent to {destination}" if destination else "dropped (no OnFailure destination or DLQ)"
            console_line(f"async {function}: gave up after {attempts} attempt(s) ({condition}); event {where}")


# ---------------------------------------------------------------------------------------------------
# The part cloud.py starts


class Notifications:
    """Receives what moto matched (moto_patches.route_notifications) and delivers it; one per running cloud."""

    def __init__(self, model: CloudModel, runtime: FunctionRuntime,
                 retry_delays_s: Sequence[float] = RETRY_DELAYS_S) -> None:
        self.model = model
        self.invoker = AsyncInvoker(model, runtime, retry_delays_s)
        self._sequencer = _Sequencer()
        self._functions_by_name = {spec.name: spec.logical_id for spec in model.functions.values()}

    def start(self) -> None:
        route_notifications(self._on_s3_event, self._on_sns_lambda)

    def stop(self) -> None:
        route_notifications(None, None)
        self.invoker.stop()

    def _function(self, arn: str) -> str | None:
        name = arn.split(":function:", 1)[1].split(":", 1)[0] if ":function:" in arn else arn
        return self._functions_by_name.get(name)

    def _on_s3_event(self, event_name: str, bucket: Any, key: Any) -> None:
        configuration = bucket.notification_configuration
        if configuration is None:
            return
        change = s3_object_change(event_name, bucket, key, self._sequencer.next())
        for notification in configuration.cloud_function:
            if notification.matches(event_name, key.name):
                function = self._function(notification.arn)
                if function is None:
                    console_line(f"s3:{bucket.name}: {notification.arn} is not a function of this template; "
                                 f"{change['eventName']} of {key.name} not delivered")
                    continue
                self.invoker.submit(function, s3_event_message(change, notification.id), f"s3:{bucket.name}")
        for notification in [*configuration.queue, *configuration.topic]:
            if notification.matches(event_name, key.name):
                self._send(notification.arn, s3_event_message(change, notification.id), bucket.name)
        if configuration.event_bridge is not None and change["eventName"] in _EVENTBRIDGE_REASONS:
            self._put_on_default_bus(change)

    def _send(self, arn: str, message: dict[str, Any], bucket_name: str) -> None:
        # S3 drops an event its destination refuses, as here; it never fails the request that caused it.
        try:
            send_to_arn(arn, json.dumps(message), subject=S3_TOPIC_SUBJECT if ":sns:" in arn else None)
        except Exception as error:
            console_line(f"s3:{bucket_name}: notification to {arn} lost: {type(error).__name__}: {error}")

    def _put_on_default_bus(self, change: dict[str, Any]) -> None:
        from moto.events.models import events_backends

        detail_type, detail = s3_eventbridge_detail(change)
        entry = {"Source": "aws.s3", "DetailType": detail_type, "Detail": json.dumps(detail),
                 "Resources": [change["bucketArn"]], "EventBusName": "default"}
        try:
            events_backends[change["account"]][change["region"]].put_events([entry])
        except Exception as error:
            console_line(f"s3:{change['bucket']}: EventBridge notification lost: {type(error).__name__}: {error}")

    def _on_sns_lambda(self, subscription: Any, message: str, message_id: str, subject: str | None,
                       attributes: dict[str, Any]) -> None:
        function = self._function(subscription.endpoint)
        topic_name = subscription.topic_arn.rsplit(":", 1)[-1]
        if function is None:
            console_line(f"sns:{topic_name}: {subscription.endpoint} is not a function of this template; "
                         f"message {message_id} not delivered")
            return
        event = sns_lambda_event(subscription, message, message_id, subject, attributes)
        self.invoker.submit(function, event, f"sns:{topic_name}")
