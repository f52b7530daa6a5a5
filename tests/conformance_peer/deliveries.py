"""What the conformance fixture's functions receive from their event sources: the scenarios of
tests/integration/localcloud/test_conformance_{sqs,streams,events}.py, observed through RecordsTable (every
fixture function records what it was handed there) on each peer that runs the fixture app.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from boto3.dynamodb.conditions import Key

from .messaging import EVENT_FIELDS, drain
from .model import Aws, Observation, Scenario, poll

LAMBDA_SQS_ERRORS_DOC = "https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html"
LAMBDA_SQS_SCALING_DOC = "https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html"
LAMBDA_FILTER_DOC = "https://docs.aws.amazon.com/lambda/latest/dg/invocation-eventfiltering.html"
LAMBDA_TIMEOUT_DOC = "https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html"
EB_EVENT_DOC = "https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-events-structure.html"

DELIVERY_TIMEOUT_S = 90.0
BAD_MESSAGES = [1, 4, 8]


def records(aws: Aws, pk: str) -> list[dict[str, Any]]:
    table = aws.resource("dynamodb").Table(aws.outputs["RecordsTableName"])
    items: list[dict[str, Any]] = []
    query: dict[str, Any] = {"KeyConditionExpression": Key("pk").eq(pk), "ConsistentRead": True}
    while True:
        page = table.query(**query)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            return items
        query["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def depth(aws: Aws, url: str) -> tuple[int, int]:
    attributes = aws.client("sqs").get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


def send_json(aws: Aws, url: str, bodies: list[dict[str, Any]]) -> None:
    for start in range(0, len(bodies), 10):
        aws.client("sqs").send_message_batch(QueueUrl=url, Entries=[
            {"Id": str(index), "MessageBody": json.dumps(body)} for index, body in enumerate(bodies[start:start + 10])
        ])  # fmt: skip


def run_id() -> str:
    return uuid.uuid4().hex[:12]


_warmed: set[str] = set()


def warm_batch_function(aws: Aws) -> None:
    """BatchFunction's workers started once per peer before counting, as the conformance suite does: a cold
    start can outlast the queue's 2 s visibility timeout, and then SQS rightly hands a message out again.
    A warm-up message so redelivered may reach the DLQ, which is emptied by receiving, not PurgeQueue
    (SQS allows one purge a minute per queue)."""
    if aws.endpoint in _warmed:
        return
    work, dead = aws.outputs["WorkQueueUrl"], aws.outputs["WorkDeadLetterQueueUrl"]
    send_json(aws, work, [{"run": "warmup", "n": n, "sleep": 0.3} for n in range(10)])
    poll(lambda: len({item["n"] for item in records(aws, "batch-attempt#warmup")}) == 10, DELIVERY_TIMEOUT_S, 0.5)
    poll(lambda: depth(aws, work) == (0, 0), 30, 0.5)
    drain(aws, dead, expected=0, timeout_s=0)
    _warmed.add(aws.endpoint)


def lambda_sqs_partial_batch(aws: Aws) -> Observation:
    warm_batch_function(aws)
    run = run_id()
    work, dead = aws.outputs["WorkQueueUrl"], aws.outputs["WorkDeadLetterQueueUrl"]
    send_json(aws, work, [{"run": run, "n": n, "fail": n in BAD_MESSAGES} for n in range(10)])
    poll(lambda: depth(aws, dead)[0] >= len(BAD_MESSAGES), DELIVERY_TIMEOUT_S, 0.5)
    poll(lambda: depth(aws, work) == (0, 0), 30, 0.5)
    attempts: dict[str, list[int]] = {}
    for item in records(aws, f"batch-attempt#{run}"):
        attempts.setdefault(str(int(item["n"])), []).append(int(item["receiveCount"]))
    dead_letters = drain(aws, dead, expected=len(BAD_MESSAGES))
    return {
        "receiveCountsByMessage": {n: sorted(counts) for n, counts in sorted(attempts.items(), key=lambda kv: int(kv[0]))},
        "deadLetters": sorted(json.loads(message["Body"])["n"] for message in dead_letters),
        "workQueueLeft": list(depth(aws, work)),
    }


def lambda_sqs_max_concurrency(aws: Aws) -> Observation:
    warm_batch_function(aws)
    run = run_id()
    work = aws.outputs["WorkQueueUrl"]
    send_json(aws, work, [{"run": run, "n": n, "sleep": 0.5} for n in range(30)])
    poll(lambda: len(records(aws, f"batch-attempt#{run}")) >= 30, DELIVERY_TIMEOUT_S, 0.5)
    poll(lambda: depth(aws, work) == (0, 0), 30, 0.5)
    invocations = records(aws, f"batch-invocation#{run}")
    edges = sorted([(int(item["started"]), 1) for item in invocations] + [(int(item["ended"]), -1) for item in invocations])
    running = peak = 0
    for _, change in edges:
        running += change
        peak = max(peak, running)
    return {
        "handled": sorted(int(item["n"]) for item in records(aws, f"batch-attempt#{run}")) == list(range(30)),
        "batchSizesWithin1To5": all(1 <= int(item["size"]) <= 5 for item in invocations),
        "mostAtOnce": peak,
    }


def lambda_sqs_timeout(aws: Aws) -> Observation:
    run = run_id()
    aws.client("sqs").send_message(QueueUrl=aws.outputs["TimeoutQueueUrl"], MessageBody=json.dumps({"run": run}))
    poll(lambda: any(item["sk"] == "done" for item in records(aws, f"timeout#{run}")), DELIVERY_TIMEOUT_S, 0.5)
    poll(lambda: depth(aws, aws.outputs["TimeoutQueueUrl"]) == (0, 0), 30, 0.5)
    found = {item["sk"]: item for item in records(aws, f"timeout#{run}")}
    return {
        "records": sorted(found),
        "finishedOnAttempt": int(found["done"]["attempt"]) if "done" in found else None,
        "receiveCounts": [int(found[sk]["receiveCount"]) for sk in ("attempt#1", "attempt#2") if sk in found],
        "firstAttemptSawItsTimeout": "attempt#1" in found and 0 < int(found["attempt#1"]["remainingMs"]) <= 1000,
        "deadLetterQueue": list(depth(aws, aws.outputs["TimeoutDeadLetterQueueUrl"])),
    }


def set_status(aws: Aws, item_id: str, status: str) -> None:
    aws.client("dynamodb").update_item(
        TableName=aws.outputs["StreamTableName"], Key={"id": {"S": item_id}}, UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":s": {"S": status}},
    )  # fmt: skip


def lambda_stream_filter(aws: Aws) -> Observation:
    dynamodb = aws.client("dynamodb")
    table = aws.outputs["StreamTableName"]
    run = run_id()

    def put(item_id: str, status: str) -> None:
        dynamodb.put_item(TableName=table, Item={"id": {"S": item_id}, "run": {"S": run}, "status": {"S": status}})

    put("a", "new")
    put("b", "done")  # an INSERT, even though its status is done
    put("c", "new")
    set_status(aws, "a", "done")  # the first match
    set_status(aws, "b", "archived")
    set_status(aws, "c", "pending")
    dynamodb.delete_item(TableName=table, Key={"id": {"S": "a"}})
    set_status(aws, "c", "done")  # the second match
    put("last", "new")
    set_status(aws, "last", "done")  # the third, and the shard's last record: a sentinel

    def through_sentinel() -> list[dict[str, Any]] | None:
        found = records(aws, f"stream#{run}")
        return found if any(item["itemId"] == "last" for item in found) else None

    delivered = poll(through_sentinel, DELIVERY_TIMEOUT_S, 0.5) or records(aws, f"stream#{run}")
    delivered.sort(key=lambda item: int(item["sequenceNumber"]))
    return {
        "delivered": [[item["itemId"], item["eventName"], item["status"]] for item in delivered],
        "eventSource": sorted({item["eventSource"] for item in delivered}),
    }


def events_fixture_rule(aws: Aws) -> Observation:
    run = run_id()
    entries = [
        ("at-threshold", "fixture.items", "ItemChanged", {"kind": "wanted", "size": 10}),
        ("above", "fixture.items", "ItemChanged", {"kind": "wanted", "size": 42.5}),
        ("below", "fixture.items", "ItemChanged", {"kind": "wanted", "size": 9.99}),
        ("other-kind", "fixture.items", "ItemChanged", {"kind": "unwanted", "size": 50}),
        ("other-source", "fixture.other", "ItemChanged", {"kind": "wanted", "size": 50}),
        ("other-type", "fixture.items", "ItemDeleted", {"kind": "wanted", "size": 50}),
    ]
    aws.client("events").put_events(Entries=[
        {"EventBusName": aws.outputs["BusName"], "Source": source, "DetailType": detail_type,
         "Detail": json.dumps({"run": run, "id": event_id, **detail})}
        for event_id, source, detail_type, detail in entries
    ])  # fmt: skip
    bodies = [json.loads(message["Body"]) for message in drain(aws, aws.outputs["RuleQueueUrl"], expected=2)]
    ours = [body for body in bodies if body.get("detail", {}).get("run") == run]
    return {
        "delivered": sorted(body["detail"]["id"] for body in ours),
        "fields": sorted({",".join(sorted(body)) for body in ours}),
    }


SCENARIOS = [
    Scenario("lambda.sqs-partial-batch",
             "fixture BatchFunction: 10 messages, 3 reported in batchItemFailures, maxReceiveCount 2",
             LAMBDA_SQS_ERRORS_DOC,
             {"receiveCountsByMessage": {str(n): ([1, 2] if n in BAD_MESSAGES else [1]) for n in range(10)},
              "deadLetters": BAD_MESSAGES, "workQueueLeft": [0, 0]}, lambda_sqs_partial_batch, needs_fixture=True),
    Scenario("lambda.sqs-max-concurrency", "fixture BatchFunction: BatchSize 5, MaximumConcurrency 2, 30 messages",
             LAMBDA_SQS_SCALING_DOC, {"handled": True, "batchSizesWithin1To5": True, "mostAtOnce": 2},
             lambda_sqs_max_concurrency, needs_fixture=True),
    Scenario("lambda.sqs-timeout", "fixture TimeoutFunction (Timeout 1 s) oversleeps once: killed, retried",
             LAMBDA_TIMEOUT_DOC,
             {"records": ["attempt#1", "attempt#2", "attempts", "done"], "finishedOnAttempt": 2,
              "receiveCounts": [1, 2], "firstAttemptSawItsTimeout": True, "deadLetterQueue": [0, 0]},
             lambda_sqs_timeout, needs_fixture=True),
    Scenario("lambda.stream-filter", "fixture StreamFunction: FilterCriteria MODIFY with NewImage.status done",
             LAMBDA_FILTER_DOC,
             {"delivered": [["a", "MODIFY", "done"], ["c", "MODIFY", "done"], ["last", "MODIFY", "done"]],
              "eventSource": ["aws:dynamodb"]}, lambda_stream_filter, needs_fixture=True),
    Scenario("events.fixture-rule", "fixture WantedRule (string + numeric pattern) into RuleQueue, whole event",
             EB_EVENT_DOC, {"delivered": ["above", "at-threshold"], "fields": [",".join(EVENT_FIELDS)]},
             events_fixture_rule, needs_fixture=True,
             ours_known="the provisioner gives a target without Input the whole event through "
                        "<aws.events.event.json>, to which moto adds `ingestion-time` (provision/events.py)"),
]

# What the conformance suite checks that this runner does not compare, and why.
NOT_COMPARED = {
    "rest-authorizers": "test_conformance_rest and the app's suites: the REST API's Cognito and Lambda "
                        "authorizers are ours; only the fixture's routes without an authorizer are deployed to "
                        "MiniStack (rest.* scenarios)",
    "notifications-http-api": "test_conformance_notifications, _http_api, _edges: the fixture's S3-notified, "
                              "SNS-subscribed and HTTP API functions are not deployed to MiniStack by this runner",
    "websocket-gateway": "test_conformance_websocket: the $connect authorizer, routes and @connections are "
                         "ours; not deployed to MiniStack by this runner",
    "schedule-rule": "test_conformance_schedule: a rate(1 minute) rule fires once a minute; the local cloud "
                     "scales its clock (--schedule-scale), MiniStack cannot, so one comparison costs minutes",
    "local-cloud-only": "test_conformance_endpoints/_shutdown: endpoints.json, outputs, the static site and a "
                        "clean stop are the local cloud's own features, not AWS behaviour",
}
