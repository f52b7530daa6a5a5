"""The DynamoDB target on the local cloud (moto's DynamoDB), under the chaos of test_chaos.py: an upsert and
a delete task end with exact counts and exact items, and a table not assigned to the owner is refused.

Expected items and counts come from resilience_support's generator alone, as in test_chaos.py.
"""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from busline.localcloud.testing import RunningCloud

from .resilience_support import (
    Api,
    aws_client,
    aws_resource,
    expect,
    generate_orders,
    local_cloud,
    upload_task,
)
from .test_chaos import CHAOS_CLOUD_ARGS

pytestmark = pytest.mark.integration

CHAOS = "duplicate=0.3,fail=0.2,timeout=0.05,kill=0.02"
BOUND_S = 240.0
PREFILLED_IDS = range(1, 1501)  # the delete task's table before it runs
OWNER_TAG = "busline:owner"  # what an operator sets (docs/runbook.md), spelled out here on purpose


def _dynamodb_target(spec: dict[str, Any], table: str, mode: str) -> dict[str, Any]:
    return {**spec, "target": {"kind": "dynamodb", "table": table, "key": ["id"], "mode": mode}}


def _create_table(cloud: RunningCloud, name: str, owner: str) -> Any:
    aws_client(cloud.endpoints, "dynamodb").create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "N"}],
        BillingMode="PAY_PER_REQUEST",
        Tags=[{"Key": OWNER_TAG, "Value": owner}],
    )
    return aws_resource(cloud.endpoints, "dynamodb").Table(name)


def _items(table: Any) -> dict[int, tuple[Any, ...]]:
    """The table as resilience_support.Expectation.table spells rows (an absent attribute is a null)."""
    items: list[dict[str, Any]] = []
    scan: dict[str, Any] = {"ConsistentRead": True}
    while True:
        page = table.scan(**scan)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            break
        scan["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def number(item: dict[str, Any], name: str) -> int | None:
        return int(item[name]) if name in item else None

    return {
        int(item["id"]): (
            int(item["id"]),
            item.get("region"),
            number(item, "qty"),
            Decimal(item["amount"]) if "amount" in item else None,
            date.fromisoformat(item["day"]) if "day" in item else None,
            item.get("flag"),
            item.get("status"),
            item.get("region_name"),
            number(item, "tier"),
        )
        for item in items
    }


def test_upsert_and_delete_into_assigned_tables_end_exact_under_chaos() -> None:
    run = uuid.uuid4().hex[:8]
    with local_cloud("dynamodb", [*CHAOS_CLOUD_ARGS, "--chaos", CHAOS]) as cloud:
        api = Api(cloud.endpoints)
        upserted_rows = generate_orders(unique=2400, repeated=120, salt=1)
        deleted_rows = generate_orders(unique=2600, repeated=0, salt=2)
        upsert_spec = upload_task(cloud, "ddb-upsert", upserted_rows)
        delete_spec = upload_task(cloud, "ddb-delete", deleted_rows)

        # Given a table that is nobody's: a task loading it fails at once, saying it is not assigned
        refused_id = api.submit(_dynamodb_target(upsert_spec, f"unassigned-{run}", "upsert"))
        refused = api.wait_terminal([refused_id], timeout_s=BOUND_S)[refused_id]
        assert (refused["status"], refused["error"]["phase"], refused["error"]["message"]) == (
            "FAILED",
            "load",
            f"dynamodb table unassigned-{run} is not assigned to this owner (an operator tags a "
            f"table {OWNER_TAG} = <owner> to assign it; see the runbook)",
        )
        owner = refused["owner"]
        # and two tables assigned to this owner, the second holding orders 1..1500
        upsert_table = _create_table(cloud, f"orders-{run}", owner)
        delete_table = _create_table(cloud, f"orders-gone-{run}", owner)
        with delete_table.batch_writer() as writer:
            for order_id in PREFILLED_IDS:
                writer.put_item(Item={"id": order_id, "note": "before"})

        # When an upsert task and a delete task run at once under chaos
        upsert_id = api.submit(_dynamodb_target(upsert_spec, f"orders-{run}", "upsert"))
        delete_id = api.submit(_dynamodb_target(delete_spec, f"orders-gone-{run}", "delete"))
        final = api.wait_terminal([upsert_id, delete_id], timeout_s=BOUND_S)

        # Then the upsert holds exactly the expected rows, counted as each chunk put them
        upserted = expect(upserted_rows)
        assert (final[upsert_id]["status"], final[upsert_id]["error"]) == ("SUCCEEDED", None), final[upsert_id]
        assert final[upsert_id]["counts"] == upserted.counts(commit="chunk")
        assert _items(upsert_table) == upserted.table
        # and the delete removed exactly the prefilled orders that reached load, counting each once
        gone = expect(deleted_rows)
        deleted_ids = set(gone.table) & set(PREFILLED_IDS)
        assert (final[delete_id]["status"], final[delete_id]["error"]) == ("SUCCEEDED", None), final[delete_id]
        assert final[delete_id]["counts"] == {**gone.counts(commit="chunk"), "loaded": 0, "deleted": len(deleted_ids)}
        assert sorted(_items(delete_table)) == sorted(set(PREFILLED_IDS) - deleted_ids)
        # and the faults did strike
        injected = (cloud.data_dir / "chaos.json").read_text()
        print(f"\n[dynamodb target, chaos {CHAOS}] injected {injected}; deleted {len(deleted_ids)}")
