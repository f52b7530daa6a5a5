"""DynamoDB stream event source: FilterCriteria drops records before the function sees them."""

from __future__ import annotations

from typing import Any

import pytest
from conformance_support import Aws, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def set_status(table: Any, item_id: str, status: str) -> None:
    table.update_item(
        Key={"id": item_id},
        UpdateExpression="SET #status = :status",
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues={":status": status},
    )


def test_filter_criteria_delivers_only_modify_with_status_done(aws: Aws, run_id: str) -> None:
    # Given StreamFunction's filter: eventName MODIFY and NewImage.status = "done"
    table = aws.dynamodb_resource.Table(aws.outputs["StreamTableName"])
    a, b, c, last = (f"{run_id}-{name}" for name in ("a", "b", "c", "last"))

    # When we make 10 changes of which 3 match (the last one is a matching sentinel: streams keep order)
    table.put_item(Item={"id": a, "run": run_id, "status": "new"})  # INSERT
    table.put_item(Item={"id": b, "run": run_id, "status": "done"})  # INSERT, even though status is done
    table.put_item(Item={"id": c, "run": run_id, "status": "new"})  # INSERT
    set_status(table, a, "done")  # MODIFY -> done: match
    set_status(table, b, "archived")  # MODIFY -> archived
    set_status(table, c, "pending")  # MODIFY -> pending
    table.delete_item(Key={"id": a})  # REMOVE
    set_status(table, c, "done")  # MODIFY -> done: match
    table.put_item(Item={"id": last, "run": run_id, "status": "new"})  # INSERT
    set_status(table, last, "done")  # MODIFY -> done: match, and the last record of the shard

    def delivered_through_sentinel() -> list[dict[str, Any]] | None:
        records = aws.records(f"stream#{run_id}")
        return records if any(item["itemId"] == last for item in records) else None

    records = wait_until(delivered_through_sentinel, 30, "the sentinel stream record to be delivered")

    # Then exactly the 3 matching records reached the function, in stream order
    records.sort(key=lambda item: int(item["sequenceNumber"]))
    assert [(item["itemId"], item["eventName"], item["status"]) for item in records] == [
        (a, "MODIFY", "done"),
        (c, "MODIFY", "done"),
        (last, "MODIFY", "done"),
    ]
    assert {item["eventSource"] for item in records} == {"aws:dynamodb"}
