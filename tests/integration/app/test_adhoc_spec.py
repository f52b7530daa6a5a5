"""An ad-hoc task spec end to end: NDJSON.gz source + CSV reference in S3, casts, a filter, a required join,
an upsert into a new table. Every expected number comes from the generator below, not from the app."""

from __future__ import annotations

import csv
import gzip
import io
import json
import uuid
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from busline_core.tenancy import owner_table
from psycopg import sql

pytestmark = pytest.mark.integration

UNIQUE_ORDERS = 3_800
# the first 200 orders again, at the end of the file: the upsert must not duplicate them
REPEATED_ORDERS = 200
CHUNK_ROWS = 1_000
PRODUCTS = [f"SKU-{number:03d}" for number in range(20)]


def order(order_id: int) -> dict[str, Any]:
    """Order `order_id`, a pure function of the id so a repeated order is the same row again."""
    quantity: Any = "lots" if order_id % 97 == 0 else order_id % 7 + 1  # cast failure: not an int
    # cast failure: not a bool
    shipped = "maybe" if order_id % 151 == 0 else ("true" if order_id % 2 else "false")
    return {
        "id": order_id,
        "sku": "SKU-UNKNOWN" if order_id % 89 == 0 else PRODUCTS[order_id % len(PRODUCTS)],
        "qty": quantity,
        "price": f"{order_id % 50}.25",
        "shipped": shipped,
        "day": f"2026-01-{order_id % 28 + 1:02d}",
        "status": "void" if order_id % 10 == 3 else "ok",
    }


@dataclass
class Expected:
    read: int = 0
    filtered: int = 0
    reject_reasons: dict[int, str] = field(default_factory=dict)  # source row -> reason
    loaded_ids: set[int] = field(default_factory=set)
    transformed: int = 0


def classify(rows: list[dict[str, Any]]) -> Expected:
    """What the spec below must do with each row: casts (spec column order), then filter, then join."""
    expected = Expected(read=len(rows))
    for number, row in enumerate(rows, start=1):
        if row["qty"] == "lots":
            expected.reject_reasons[number] = "qty"
        elif row["shipped"] == "maybe":
            expected.reject_reasons[number] = "shipped"
        elif row["status"] == "void":
            expected.filtered += 1
        elif row["sku"] not in PRODUCTS:
            expected.reject_reasons[number] = f"join products: no match for sku={row['sku']}"
        else:
            expected.transformed += 1
            expected.loaded_ids.add(row["id"])
    return expected


def build_source() -> list[dict[str, Any]]:
    ids = list(range(1, UNIQUE_ORDERS + 1)) + list(range(1, REPEATED_ORDERS + 1))
    return [order(order_id) for order_id in ids]


def ndjson_gz(rows: list[dict[str, Any]]) -> bytes:
    return gzip.compress("".join(json.dumps(row) + "\n" for row in rows).encode())


def products_csv() -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["sku", "product_name", "category"])
    for number, sku in enumerate(PRODUCTS):
        writer.writerow([sku, f"Product {number}", "even" if number % 2 == 0 else "odd"])
    return buffer.getvalue().encode()


def spec_for(bucket: str, prefix: str, table: str) -> dict[str, Any]:
    return {
        "source": {"uri": f"s3://{bucket}/{prefix}/orders.ndjson.gz", "format": "ndjson"},
        "columns": [
            {"name": "id", "type": "int", "required": True},
            {"name": "sku", "type": "string", "required": True},
            {"name": "qty", "type": "int"},
            {"name": "price", "type": "decimal"},
            {"name": "shipped", "type": "bool"},
            {"name": "day", "type": "date"},
            {"name": "status", "type": "string"},
        ],
        "filters": [{"column": "status", "op": "ne", "value": "void"}],
        "joins": [
            {
                "name": "products",
                "uri": f"s3://{bucket}/{prefix}/products.csv",
                "format": "csv",
                "on": {"sku": "sku"},
                "columns": [
                    {"name": "product_name", "as": "product_name", "type": "string"},
                    {"name": "category", "as": "category", "type": "string"},
                ],
                "required": True,
            }
        ],
        "target": {"table": table, "key": ["id"], "mode": "upsert"},
        "chunkRows": CHUNK_ROWS,
    }


@pytest.fixture(scope="module")
def adhoc_run(api: Any, s3: Any, data_bucket: str) -> dict[str, Any]:
    rows = build_source()
    prefix = f"shared/adhoc/{uuid.uuid4().hex[:10]}"  # shared/: data an operator seeded, readable by every owner
    table = f"adhoc_orders_{uuid.uuid4().hex[:8]}"
    s3.put_object(Bucket=data_bucket, Key=f"{prefix}/orders.ndjson.gz", Body=ndjson_gz(rows))
    s3.put_object(Bucket=data_bucket, Key=f"{prefix}/products.csv", Body=products_csv())
    task_id = api.submit(spec_for(data_bucket, prefix, table))
    final = api.wait_terminal(task_id, timeout_s=120)
    return {"task_id": task_id, "final": final, "table": table, "expected": classify(rows), "rows": rows}


def test_adhoc_task_succeeds_with_exact_counts(adhoc_run: dict[str, Any]) -> None:
    # Given an ad-hoc spec over 4,000 generated orders (3,800 unique + 200 repeated)
    expected: Expected = adhoc_run["expected"]
    # When the task has finished
    final = adhoc_run["final"]
    # Then it succeeded and counted each row exactly once
    assert final["status"] == "SUCCEEDED", final
    assert final["counts"] == {
        "read": expected.read,
        "filtered": expected.filtered,
        "rejected": len(expected.reject_reasons),
        # the task commits at once ("task", the default): each surviving order is written once, with
        # the last of its rows in the source
        "loaded": len(expected.loaded_ids),
        "deleted": 0,
    }
    chunks = -(-expected.read // CHUNK_ROWS)
    for phase in ("extract", "transform", "load"):
        assert final["phases"][phase] == {"done": chunks, "total": chunks, "status": "completed"}, phase


def test_adhoc_target_table_has_one_row_per_key(
    adhoc_run: dict[str, Any], pg: psycopg.Connection[Any]
) -> None:
    # Given the finished ad-hoc task
    expected: Expected = adhoc_run["expected"]
    table = owner_table(adhoc_run["final"]["owner"], adhoc_run["table"])
    # When the target table (in the submitter's schema) is read directly
    ids = [row[0] for row in pg.execute(sql.SQL("SELECT id FROM {} ORDER BY id").format(table)).fetchall()]
    # Then it holds each surviving order once: the 200 repeats were upserted, not duplicated
    assert ids == sorted(expected.loaded_ids)
    assert len(ids) == expected.transformed - sum(
        1 for row_id in range(1, REPEATED_ORDERS + 1) if row_id in expected.loaded_ids
    )


def test_adhoc_rows_are_typed_and_joined(adhoc_run: dict[str, Any], pg: psycopg.Connection[Any]) -> None:
    # Given the finished ad-hoc task and one order the generator knows
    expected: Expected = adhoc_run["expected"]
    order_id = min(expected.loaded_ids)
    source = order(order_id)
    # When its row is read back
    row = pg.execute(
        sql.SQL(
            "SELECT id, sku, qty, price, shipped, day, status, product_name, category FROM {} WHERE id = %s"
        ).format(owner_table(adhoc_run["final"]["owner"], adhoc_run["table"])),
        (order_id,),
    ).fetchone()
    # Then every column has its Postgres type and the joined values
    product_number = PRODUCTS.index(source["sku"])
    assert row == (
        order_id,
        source["sku"],
        source["qty"],
        Decimal(source["price"]),
        source["shipped"] == "true",
        date.fromisoformat(source["day"]),
        "ok",
        f"Product {product_number}",
        "even" if product_number % 2 == 0 else "odd",
    )


def test_adhoc_rejects_list_each_rejected_row_with_its_reason(adhoc_run: dict[str, Any], api: Any) -> None:
    # Given the finished ad-hoc task
    expected: Expected = adhoc_run["expected"]
    rows = adhoc_run["rows"]
    # When its rejects are paged through in small pages
    rejects = api.all_rejects(adhoc_run["task_id"], page_size=25)
    # Then each rejected source row is listed exactly once
    assert sorted(reject["row"] for reject in rejects) == sorted(expected.reject_reasons)
    for reject in rejects:
        want = expected.reject_reasons[reject["row"]]
        source = rows[reject["row"] - 1]
        # with a reason naming the column and its value (casts) or the exact join message
        if want in ("qty", "shipped"):
            assert want in reject["reason"] and str(source[want]) in reject["reason"], reject
        else:
            assert reject["reason"] == want, reject
        # and with the row's source values
        assert reject["data"]["id"] == str(source["id"]), reject
