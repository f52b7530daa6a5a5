"""SQS, SNS and EventBridge at the API level: what the steps' queues, the bus's rules and the notification
topic do for Busline, observed the same way on every peer."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from botocore.exceptions import ClientError

from .model import Aws, Observation, Scenario, error_code, poll, unique

SQS_DLQ_DOC = "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-dead-letter-queues.html"
SQS_VISIBILITY_DOC = "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-visibility-timeout.html"
SQS_POLLING_DOC = (
    "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-short-and-long-polling.html"
)
SQS_BATCH_DOC = "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_DeleteMessageBatch.html"
EB_OPERATORS_DOC = "https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-create-pattern-operators.html"
EB_TARGET_DOC = "https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_Target.html"
EB_TRANSFORM_DOC = "https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-transform-target-input.html"
EB_EVENT_DOC = "https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-events-structure.html"
EB_INPUT_TRANSFORMER_DOC = "https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_InputTransformer.html"
SNS_FILTER_DOC = "https://docs.aws.amazon.com/sns/latest/dg/sns-message-filtering.html"
SNS_RAW_DOC = "https://docs.aws.amazon.com/sns/latest/dg/sns-large-payload-raw-message-delivery.html"
SNS_SCOPE_DOC = "https://docs.aws.amazon.com/sns/latest/dg/sns-message-filtering-scope.html"

# The fields of an SNS notification as an SQS subscriber receives it (raw delivery off).
SNS_ENVELOPE_FIELDS = ["Message", "MessageId", "Signature", "SignatureVersion", "SigningCertURL", "Timestamp",
                       "TopicArn", "Type", "UnsubscribeURL"]  # fmt: skip
# The top-level fields of every EventBridge event.
EVENT_FIELDS = ["account", "detail", "detail-type", "id", "region", "resources", "source", "time", "version"]


# -- helpers -----------------------------------------------------------------------------------------


def queue(aws: Aws, name: str, **attributes: str) -> tuple[str, str]:
    """A new queue: (url, arn)."""
    sqs = aws.client("sqs")
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def drain(aws: Aws, url: str, expected: int, timeout_s: float = 10.0, **receive: Any) -> list[dict[str, Any]]:
    """Receive (and delete) until `expected` messages arrived or the time is up, then once more: a peer
    that delivers more than AWS would is seen delivering it."""
    sqs = aws.client("sqs")
    got: list[dict[str, Any]] = []

    def receive_some() -> bool:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, **receive)
        for message in messages.get("Messages", []):
            got.append(message)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return len(got) >= expected

    poll(receive_some, timeout_s, interval_s=0)
    receive_some()
    return got


def allow_from(aws: Aws, url: str, arn: str, service: str, source_arn: str) -> None:
    """The queue policy AWS requires before a service may send to a queue (emulators may not check it)."""
    policy = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": service}, "Action": "sqs:SendMessage", "Resource": arn,
        "Condition": {"ArnEquals": {"aws:SourceArn": source_arn}},
    }]}  # fmt: skip
    aws.client("sqs").set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})


# -- SQS ---------------------------------------------------------------------------------------------


def sqs_redrive(aws: Aws) -> Observation:
    sqs = aws.client("sqs")
    name = unique("redrive")
    _, dlq_arn = queue(aws, f"{name}-dlq")
    dlq_url = sqs.get_queue_url(QueueName=f"{name}-dlq")["QueueUrl"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"})
    url, _ = queue(aws, name, VisibilityTimeout="30", RedrivePolicy=redrive)
    sqs.send_message(QueueUrl=url, MessageBody="poison")
    counts = []
    for _ in range(2):
        messages = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=2, AttributeNames=["ApproximateReceiveCount"])
        for message in messages.get("Messages", []):
            counts.append(int(message["Attributes"]["ApproximateReceiveCount"]))
            sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
    third = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", [])
    dead = drain(aws, dlq_url, expected=1)
    return {"receiveCounts": counts, "thirdReceive": len(third), "deadLetters": [m["Body"] for m in dead]}


def sqs_visibility(aws: Aws) -> Observation:
    sqs = aws.client("sqs")
    url, _ = queue(aws, unique("visibility"))
    sqs.send_message(QueueUrl=url, MessageBody="m")
    first = sqs.receive_message(QueueUrl=url, VisibilityTimeout=30, WaitTimeSeconds=2)["Messages"][0]
    hidden = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages", [])
    depth = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"], VisibilityTimeout=0)
    again = sqs.receive_message(QueueUrl=url, VisibilityTimeout=1, WaitTimeSeconds=2,
                                AttributeNames=["ApproximateReceiveCount"]).get("Messages", [])
    # A 1 s visibility timeout that runs out makes the message receivable again, unasked.
    later = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5, AttributeNames=["ApproximateReceiveCount"])
    return {
        "whileHidden": len(hidden),
        "visible": int(depth["ApproximateNumberOfMessages"]),
        "inFlight": int(depth["ApproximateNumberOfMessagesNotVisible"]),
        "receiveCountAfterVisibility0": [int(m["Attributes"]["ApproximateReceiveCount"]) for m in again],
        "receiveCountAfterTimeout": [int(m["Attributes"]["ApproximateReceiveCount"])
                                     for m in later.get("Messages", [])],
    }


def sqs_long_poll(aws: Aws) -> Observation:
    sqs = aws.client("sqs")
    url, _ = queue(aws, unique("longpoll"))
    started = time.monotonic()
    empty = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=2).get("Messages", [])
    empty_waited = time.monotonic() - started
    sender = threading.Timer(1.0, lambda: aws.client("sqs").send_message(QueueUrl=url, MessageBody="late"))
    sender.start()
    started = time.monotonic()
    arrived = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=10).get("Messages", [])
    arrived_after = time.monotonic() - started
    sender.join()
    return {
        "emptyQueueAnswer": len(empty),
        # it waited for the message instead of answering at once (short polling would)...
        "emptyQueueWaitedAbout2s": empty_waited >= 1.5,
        "lateMessage": [m["Body"] for m in arrived],
        # ...and answered once the message was there, well before its 10 s were up
        "answeredBeforeWaitEnded": arrived_after < 8,
    }


def sqs_batch_partial(aws: Aws) -> Observation:
    sqs = aws.client("sqs")
    url, _ = queue(aws, unique("batch"))
    sqs.send_message(QueueUrl=url, MessageBody="one")
    handle = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=2)["Messages"][0]["ReceiptHandle"]
    answer = sqs.delete_message_batch(QueueUrl=url, Entries=[
        {"Id": "good", "ReceiptHandle": handle}, {"Id": "bad", "ReceiptHandle": "not-a-receipt-handle"},
    ])  # fmt: skip
    try:
        sqs.send_message_batch(QueueUrl=url, Entries=[
            {"Id": "same", "MessageBody": "a"}, {"Id": "same", "MessageBody": "b"},
        ])  # fmt: skip
        duplicate_ids = "ok"
    except ClientError as error:
        duplicate_ids = error_code(error)
    return {
        "deleted": [entry["Id"] for entry in answer.get("Successful", [])],
        "failed": [[entry["Id"], entry["Code"].rsplit(".", 1)[-1], entry["SenderFault"]]
                   for entry in answer.get("Failed", [])],
        "duplicateIds": duplicate_ids,
    }


# -- EventBridge -------------------------------------------------------------------------------------


def rule_deliveries(aws: Aws, pattern: dict[str, Any], entries: list[dict[str, Any]], expected: int,
                    target: dict[str, Any] | None = None) -> list[Any]:
    """Put `entries` on a new bus whose one rule (`pattern`) targets a new queue; the bodies delivered."""
    events = aws.client("events")
    name = unique("bus")
    events.create_event_bus(Name=name)
    url, arn = queue(aws, name)
    rule_arn = events.put_rule(Name=name, EventBusName=name, EventPattern=json.dumps(pattern))["RuleArn"]
    allow_from(aws, url, arn, "events.amazonaws.com", rule_arn)
    events.put_targets(Rule=name, EventBusName=name, Targets=[{"Id": "queue", "Arn": arn, **(target or {})}])
    answer = events.put_events(Entries=[{"EventBusName": name, **entry} for entry in entries])
    if answer.get("FailedEntryCount"):
        raise AssertionError(f"PutEvents refused entries: {answer['Entries']}")
    return [json.loads(message["Body"]) for message in drain(aws, url, expected)]


def item_event(event_id: str, source: str = "fixture.items", **detail: Any) -> dict[str, Any]:
    return {"Source": source, "DetailType": "ItemChanged", "Detail": json.dumps({"id": event_id, **detail})}


def delivered_ids(bodies: list[Any]) -> list[str]:
    return sorted(str(body["detail"]["id"]) for body in bodies)


def events_numeric(aws: Aws) -> Observation:
    pattern = {"source": ["fixture.items"], "detail": {"size": [{"numeric": [">=", 10, "<", 100]}]}}
    entries = [item_event("at-10", size=10), item_event("42.5", size=42.5), item_event("9.99", size=9.99),
               item_event("at-100", size=100), item_event("string-10", size="10")]  # fmt: skip
    return {"delivered": delivered_ids(rule_deliveries(aws, pattern, entries, expected=2))}


def events_prefix(aws: Aws) -> Observation:
    pattern = {"source": [{"prefix": "fixture."}]}
    entries = [item_event(source, source=source) for source in ("fixture.items", "fixture.more", "fixtureitems",
                                                                "other.fixture")]
    return {"delivered": delivered_ids(rule_deliveries(aws, pattern, entries, expected=2))}


def events_anything_but(aws: Aws) -> Observation:
    pattern = {"source": ["fixture.items"], "detail": {"kind": [{"anything-but": ["unwanted", "ignored"]}]}}
    entries = [item_event(kind, kind=kind) for kind in ("wanted", "unwanted", "ignored", "other")]
    return {"delivered": delivered_ids(rule_deliveries(aws, pattern, entries, expected=2))}


def events_exists(aws: Aws) -> Observation:
    pattern = {"source": ["fixture.items"], "detail": {"kind": [{"exists": True}], "error": [{"exists": False}]}}
    entries = [item_event("kind-only", kind="a"), item_event("kind-and-error", kind="a", error="boom"),
               item_event("neither")]  # fmt: skip
    return {"delivered": delivered_ids(rule_deliveries(aws, pattern, entries, expected=1))}


def events_input_path(aws: Aws) -> Observation:
    bodies = rule_deliveries(aws, {"source": ["fixture.items"]}, [item_event("x", kind="wanted")], expected=1,
                             target={"InputPath": "$.detail"})
    return {"bodies": bodies}


def events_input_transformer(aws: Aws) -> Observation:
    transformer = {
        "InputPathsMap": {"kind": "$.detail.kind", "source": "$.source", "id": "$.detail.id"},
        "InputTemplate": '{"what": <kind>, "from": <source>, "id": <id>}',
    }
    bodies = rule_deliveries(aws, {"source": ["fixture.items"]}, [item_event("x", kind="wanted")], expected=1,
                             target={"InputTransformer": transformer})
    return {"bodies": bodies}


def events_input_transformer_in_text(aws: Aws) -> Observation:
    transformer = {
        "InputPathsMap": {"kind": "$.detail.kind", "id": "$.detail.id"},
        "InputTemplate": '{"text": "<kind> item <id>"}',
    }
    bodies = rule_deliveries(aws, {"source": ["fixture.items"]}, [item_event("x", kind="wanted")], expected=1,
                             target={"InputTransformer": transformer})
    return {"bodies": bodies}


def events_envelope(aws: Aws) -> Observation:
    account = aws.client("sts").get_caller_identity()["Account"]
    bodies = rule_deliveries(aws, {"source": ["fixture.items"]}, [item_event("x", kind="wanted")], expected=1)
    return {
        "fields": [sorted(body) for body in bodies],
        "account": [body.get("account") == account for body in bodies],
        "detail": [body.get("detail") for body in bodies],
        "detailType": [body.get("detail-type") for body in bodies],
    }


def events_whole_event_variable(aws: Aws) -> Observation:
    # the variable "can only be used as the value of a JSON field"
    bodies = rule_deliveries(aws, {"source": ["fixture.items"]}, [item_event("x", kind="wanted")], expected=1,
                             target={"InputTransformer": {"InputTemplate": '{"event": <aws.events.event.json>}'}})
    events = [body.get("event") if isinstance(body, dict) else None for body in bodies]
    return {"fields": [sorted(event) if isinstance(event, dict) else event for event in events],
            "detail": [event.get("detail") if isinstance(event, dict) else None for event in events]}


def events_sns_target(aws: Aws) -> Observation:
    events, sns = aws.client("events"), aws.client("sns")
    name = unique("snsbus")
    events.create_event_bus(Name=name)
    topic = sns.create_topic(Name=name)["TopicArn"]
    url = subscribed_queue(aws, topic, name, RawMessageDelivery="true")
    events.put_rule(Name=name, EventBusName=name, EventPattern=json.dumps({"source": ["fixture.items"]}))
    events.put_targets(Rule=name, EventBusName=name, Targets=[{"Id": "topic", "Arn": topic}])
    events.put_events(Entries=[{"EventBusName": name, **item_event("x", kind="wanted")}])
    return {"delivered": [json.loads(message["Body"]).get("detail") for message in drain(aws, url, expected=1)]}


# -- SNS ---------------------------------------------------------------------------------------------


def subscribed_queue(aws: Aws, topic_arn: str, name: str, **attributes: str) -> str:
    url, arn = queue(aws, name)
    allow_from(aws, url, arn, "sns.amazonaws.com", topic_arn)
    aws.client("sns").subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn, Attributes=attributes,
                                ReturnSubscriptionArn=True)
    return url


def sns_filter_and_raw(aws: Aws) -> Observation:
    sns = aws.client("sns")
    name = unique("topic")
    topic = sns.create_topic(Name=name)["TopicArn"]
    raw = subscribed_queue(aws, topic, f"{name}-raw", RawMessageDelivery="true",
                           FilterPolicy=json.dumps({"kind": ["wanted"]}))
    envelope = subscribed_queue(aws, topic, f"{name}-all")
    for body, kind in (("m-wanted", "wanted"), ("m-unwanted", "unwanted"), ("m-none", None)):
        attributes = {"kind": {"DataType": "String", "StringValue": kind}} if kind else {}
        sns.publish(TopicArn=topic, Message=body, MessageAttributes=attributes)
    raw_messages = drain(aws, raw, expected=1, MessageAttributeNames=["All"])
    notifications = [json.loads(message["Body"]) for message in drain(aws, envelope, expected=3)]
    return {
        "rawBodies": [message["Body"] for message in raw_messages],
        "rawAttributes": [{name: value.get("StringValue") for name, value in message.get("MessageAttributes", {}).items()}
                          for message in raw_messages],
        "notified": sorted(str(note.get("Message")) for note in notifications),
        "envelopeFields": sorted({field for note in notifications for field in SNS_ENVELOPE_FIELDS if field in note}),
        "envelopeType": sorted({str(note.get("Type")) for note in notifications}),
        "envelopeAttributes": sorted(
            json.dumps(note.get("MessageAttributes"), sort_keys=True) for note in notifications
            if note.get("Message") == "m-wanted"
        ),
    }


def sns_filter_on_body(aws: Aws) -> Observation:
    sns = aws.client("sns")
    name = unique("bodytopic")
    topic = sns.create_topic(Name=name)["TopicArn"]
    url = subscribed_queue(aws, topic, name, RawMessageDelivery="true", FilterPolicyScope="MessageBody",
                           FilterPolicy=json.dumps({"kind": ["wanted"], "size": [{"numeric": [">", 5]}]}))
    for kind, size in (("wanted", 9), ("wanted", 1), ("unwanted", 9)):
        sns.publish(TopicArn=topic, Message=json.dumps({"kind": kind, "size": size}))
    sns.publish(TopicArn=topic, Message="not json")
    return {"delivered": [json.loads(message["Body"]) for message in drain(aws, url, expected=1)]}


SCENARIOS = [
    Scenario("sqs.redrive", "after maxReceiveCount receives the next receive moves the message to the DLQ",
             SQS_DLQ_DOC, {"receiveCounts": [1, 2], "thirdReceive": 0, "deadLetters": ["poison"]}, sqs_redrive),
    Scenario("sqs.visibility", "a received message is hidden until its visibility timeout ends or is set to 0",
             SQS_VISIBILITY_DOC,
             {"whileHidden": 0, "visible": 0, "inFlight": 1, "receiveCountAfterVisibility0": [2],
              "receiveCountAfterTimeout": [3]}, sqs_visibility),
    Scenario("sqs.long-poll", "a long poll waits on an empty queue and answers as soon as a message arrives",
             SQS_POLLING_DOC, {"emptyQueueAnswer": 0, "emptyQueueWaitedAbout2s": True, "lateMessage": ["late"],
                               "answeredBeforeWaitEnded": True}, sqs_long_poll),
    Scenario("sqs.batch-partial", "a batch reports each entry apart; duplicate entry ids refuse the batch",
             SQS_BATCH_DOC, {"deleted": ["good"], "failed": [["bad", "ReceiptHandleIsInvalid", True]],
                             "duplicateIds": "BatchEntryIdsNotDistinct"}, sqs_batch_partial),
    Scenario("events.numeric", "numeric range matches JSON numbers only (10 <= size < 100)", EB_OPERATORS_DOC,
             {"delivered": ["42.5", "at-10"]}, events_numeric),
    Scenario("events.prefix", "prefix matching on source", EB_OPERATORS_DOC,
             {"delivered": ["fixture.items", "fixture.more"]}, events_prefix),
    Scenario("events.anything-but", "anything-but a list of strings", EB_OPERATORS_DOC,
             {"delivered": ["other", "wanted"]}, events_anything_but),
    Scenario("events.exists", "exists true / exists false", EB_OPERATORS_DOC,
             {"delivered": ["kind-only"]}, events_exists),
    Scenario("events.input-path", "a target's InputPath delivers only that part of the event", EB_TARGET_DOC,
             {"bodies": [{"id": "x", "kind": "wanted"}]}, events_input_path,
             ours_known="moto ignores InputPath; the local cloud refuses a template target with InputPath "
                        "at start-up (provision/events.py), so no function sees the wrong input"),
    Scenario("events.input-transformer", "InputPathsMap + InputTemplate: a string variable as a JSON value is quoted",
             EB_INPUT_TRANSFORMER_DOC,
             {"bodies": [{"what": "wanted", "from": "fixture.items", "id": "x"}]}, events_input_transformer),
    Scenario("events.input-transformer-in-text", "variables inside a template's string are put in as text",
             EB_TRANSFORM_DOC, {"bodies": [{"text": "wanted item x"}]}, events_input_transformer_in_text),
    Scenario("events.whole-event-variable", "<aws.events.event.json> as a JSON field's value is the whole event",
             EB_TRANSFORM_DOC, {"fields": [EVENT_FIELDS], "detail": [{"id": "x", "kind": "wanted"}]},
             events_whole_event_variable,
             ours_known="moto adds `ingestion-time` to the whole event; the provisioner relies on this variable for "
                        "template rule targets without Input (provision/events.py)"),
    Scenario("events.sns-target", "a rule whose target is an SNS topic publishes the event to it", EB_TARGET_DOC,
             {"delivered": [{"id": "x", "kind": "wanted"}]}, events_sns_target,
             ours_known="moto cannot deliver to an SNS target (here PutEvents fails with a 500); the local cloud "
                        "points a template rule's SNS target at a bridge queue that it forwards to the topic "
                        "(provision/events.py, cloud.py SnsForwarder); rules created at run time get no bridge"),
    Scenario("events.envelope", "a target without Input receives the whole event", EB_EVENT_DOC,
             {"fields": [EVENT_FIELDS], "account": [True], "detail": [{"id": "x", "kind": "wanted"}],
              "detailType": ["ItemChanged"]}, events_envelope,
             ours_known="moto's default delivery drops `account`; the local cloud gives template rules the "
                        "whole event (plus moto's `ingestion-time`) through an InputTransformer "
                        "(provision/events.py), see events.fixture-rule"),
    Scenario("sns.filter-and-raw", "attribute filter policy + raw delivery vs the JSON envelope", SNS_FILTER_DOC,
             {"rawBodies": ["m-wanted"], "rawAttributes": [{"kind": "wanted"}],
              "notified": ["m-none", "m-unwanted", "m-wanted"], "envelopeFields": SNS_ENVELOPE_FIELDS,
              "envelopeType": ["Notification"],
              "envelopeAttributes": [json.dumps({"kind": {"Type": "String", "Value": "wanted"}})]},
             sns_filter_and_raw),
    Scenario("sns.filter-on-body", "FilterPolicyScope MessageBody (string + numeric), non-JSON body dropped",
             SNS_SCOPE_DOC, {"delivered": [{"kind": "wanted", "size": 9}]}, sns_filter_on_body),
]
