"""EventBridge: a content-based rule (string + numeric matching) delivers only matching events to its queue."""

from __future__ import annotations

import json

import pytest
from conformance_support import Aws

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_content_based_rule_delivers_only_matching_events(aws: Aws, run_id: str) -> None:
    # Given WantedRule: source fixture.items, detail-type ItemChanged, detail.kind = wanted, detail.size >= 10
    bus, rule_queue = aws.outputs["BusName"], aws.outputs["RuleQueueUrl"]
    events = [
        ("at-threshold", "fixture.items", "ItemChanged", {"kind": "wanted", "size": 10}),
        ("above", "fixture.items", "ItemChanged", {"kind": "wanted", "size": 42.5}),
        ("below", "fixture.items", "ItemChanged", {"kind": "wanted", "size": 9.99}),
        ("other-kind", "fixture.items", "ItemChanged", {"kind": "unwanted", "size": 50}),
        ("other-source", "fixture.other", "ItemChanged", {"kind": "wanted", "size": 50}),
        ("other-type", "fixture.items", "ItemDeleted", {"kind": "wanted", "size": 50}),
    ]

    # When the 6 events are put on the bus
    response = aws.events.put_events(
        Entries=[
            {
                "EventBusName": bus,
                "Source": source,
                "DetailType": detail_type,
                "Detail": json.dumps({"run": run_id, "id": event_id, **detail}),
            }
            for event_id, source, detail_type, detail in events
        ]
    )
    assert response["FailedEntryCount"] == 0

    # Then the queue receives exactly the 2 matching events, as EventBridge envelopes
    delivered: list[dict[str, object]] = []
    while True:  # delivery happens inside PutEvents, so an empty long poll means the queue is drained
        batch = aws.sqs.receive_message(QueueUrl=rule_queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        messages = batch.get("Messages", [])
        if not messages:
            break
        delivered.extend(json.loads(message["Body"]) for message in messages)
        aws.sqs.delete_message_batch(
            QueueUrl=rule_queue,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
        )
    ours = [event for event in delivered if event["detail"]["run"] == run_id]  # type: ignore[index]
    assert sorted(event["detail"]["id"] for event in ours) == ["above", "at-threshold"]  # type: ignore[index]
    assert {(event["source"], event["detail-type"]) for event in ours} == {("fixture.items", "ItemChanged")}
