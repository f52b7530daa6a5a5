"""POST /uploads on the local cloud: the presigned URL takes a plain HTTP PUT into moto, the returned URI runs
as a task's source, and another owner's upload prefix is refused before anything is recorded."""

from __future__ import annotations

import re
import urllib.request
import uuid
from typing import Any

import pytest

pytestmark = pytest.mark.integration

ORDERS = b"id,note\n1,first\n2,NA\n3,third\n"


def orders_spec(uri: str, table: str) -> dict[str, Any]:
    return {
        "source": {"uri": uri, "format": "csv"},
        "columns": [{"name": "id", "type": "int", "required": True}, {"name": "note", "type": "string"}],
        "target": {"table": table, "key": ["id"], "mode": "upsert"},
    }


def upload(api: Any, file_name: str, body: bytes) -> dict[str, Any]:
    """POST /uploads, then PUT `body` to the URL with urllib as a user's script would (no AWS SDK)."""
    answer = api.call("POST", "/uploads", {"fileName": file_name})
    assert answer.status == 201, answer.text
    ticket = dict(answer.body)
    request = urllib.request.Request(ticket["uploadUrl"], data=body, method=ticket["method"], headers=ticket["headers"])
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
    return ticket


def test_an_upload_put_to_its_presigned_url_is_stored_and_runs_as_a_source(
    api: Any, s3: Any, data_bucket: str
) -> None:
    # Given a file uploaded through POST /uploads and a plain urllib PUT
    ticket = upload(api, "orders.csv", ORDERS)
    # Then the object is in the data bucket under the caller's own upload prefix, byte for byte
    match = re.fullmatch(rf"s3://{re.escape(data_bucket)}/(uploads/[^/]+/[0-9a-f-]{{36}}/orders\.csv)", ticket["uri"])
    assert match is not None, ticket["uri"]
    assert s3.get_object(Bucket=data_bucket, Key=match.group(1))["Body"].read() == ORDERS
    assert ticket["expiresIn"] == 900
    # When a task reads it
    task_id = api.submit(orders_spec(ticket["uri"], f"uploaded_orders_{uuid.uuid4().hex[:8]}"))
    final = api.wait_terminal(task_id, timeout_s=120)
    # Then it succeeds with its three rows
    assert final["status"] == "SUCCEEDED", final
    assert final["counts"] == {"read": 3, "filtered": 0, "rejected": 0, "loaded": 3, "deleted": 0}


def test_a_spec_reading_another_owners_upload_is_400_naming_source_uri(
    api: Any, s3: Any, data_bucket: str
) -> None:
    # Given the caller's own upload prefix, and an object in another owner's prefix
    mine = upload(api, "mine.csv", ORDERS)["uri"].split("/")[4]
    other = "0e9c7a52-3d1b-4f6e-8a20-5b7c9d1e3f46"
    assert other != mine
    key = f"uploads/{other}/{uuid.uuid4()}/orders.csv"
    s3.put_object(Bucket=data_bucket, Key=key, Body=ORDERS)
    tasks_before = len(api.all_tasks())
    # When the caller submits a spec that reads it
    answer = api.call("POST", "/tasks", orders_spec(f"s3://{data_bucket}/{key}", "stolen_orders"))
    # Then 400 names source.uri, and no task was recorded
    assert answer.status == 400, answer.text
    assert [error["field"] for error in answer.body["errors"]] == ["source.uri"]
    assert "another owner's upload" in answer.body["errors"][0]["message"]
    assert len(api.all_tasks()) == tasks_before


def test_a_join_reading_task_chunks_is_400_naming_that_join(api: Any, data_bucket: str) -> None:
    # Given a spec over the shared demo data whose join names a task's raw chunk
    spec = orders_spec(f"s3://{data_bucket}/shared/nycflights13/airlines.csv", "joined")
    spec["joins"] = [
        {"name": "chunk", "uri": f"s3://{data_bucket}/tasks/{uuid.uuid4()}/extract/000000.jsonl.gz",
         "format": "ndjson", "on": {"note": "note"}, "columns": [{"name": "x", "as": "x"}]}
    ]
    # When it is submitted / Then 400 names joins[0].uri
    answer = api.call("POST", "/tasks", spec)
    assert answer.status == 400, answer.text
    assert [error["field"] for error in answer.body["errors"]] == ["joins[0].uri"]


def test_a_file_name_with_a_folder_is_422_naming_file_name(api: Any) -> None:
    answer = api.call("POST", "/uploads", {"fileName": "../orders.csv"})
    assert answer.status == 422, answer.text
    assert [item["loc"][-1] for item in answer.body["detail"]] == ["fileName"]
