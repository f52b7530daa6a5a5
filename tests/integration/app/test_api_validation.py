"""Bad POST /tasks bodies: a 4xx naming the field at fault, and nothing recorded."""

from __future__ import annotations

import copy
from typing import Any

import pytest

pytestmark = pytest.mark.integration

# request-union tags Powertools puts in a location; they are not fields of the body
_TAGS = {"body", "spec", "pipeline"}


def valid_spec(bucket: str) -> dict[str, Any]:
    return {
        "source": {"uri": f"s3://{bucket}/shared/validation/orders.csv", "format": "csv"},
        "columns": [{"name": "id", "type": "int", "required": True}, {"name": "note", "type": "string"}],
        "target": {"table": "validation_orders", "key": ["id"], "mode": "upsert"},
    }


def named_fields(body: Any) -> set[str]:
    """Every field path the error body names: Powertools' `detail[].loc`, the API's `errors[].field`,
    and the field prefixes of messages such as "target.key[0]: column 'x' is not among the columns"."""
    names: set[str] = set()
    if not isinstance(body, dict):
        return names
    for item in body.get("detail") or []:
        path = [str(part) for part in item.get("loc", []) if str(part) not in _TAGS]
        names.add(".".join(path))
        if item.get("msg"):
            names.add(str(item["msg"]))
    for item in body.get("errors") or []:
        names.add(str(item.get("field", "")))
        names.add(str(item.get("message", "")))
    if body.get("message"):
        names.add(str(body["message"]))
    return names


def mentions(body: Any, field: str) -> bool:
    return any(field in name for name in named_fields(body))


def _unknown_type(spec: dict[str, Any]) -> None:
    spec["columns"][0]["type"] = "integer"


def _missing_target(spec: dict[str, Any]) -> None:
    del spec["target"]


def _key_not_a_column(spec: dict[str, Any]) -> None:
    spec["target"]["key"] = ["order_id"]


def _remote_plain_http(spec: dict[str, Any]) -> None:
    spec["source"]["uri"] = "http://example.com/orders.csv"


@pytest.mark.parametrize(
    ("break_spec", "field"),
    [
        (_unknown_type, "columns.0.type"),
        (_missing_target, "target"),
        (_key_not_a_column, "target.key"),
        (_remote_plain_http, "source.uri"),
    ],
    ids=["unknown-column-type", "missing-target", "key-not-among-columns", "http-non-loopback"],
)
def test_bad_spec_is_refused_naming_the_field_and_records_nothing(
    api: Any, data_bucket: str, break_spec: Any, field: str
) -> None:
    # Given the tasks recorded so far and a spec broken in one field
    before = len(api.all_tasks())
    spec = copy.deepcopy(valid_spec(data_bucket))
    break_spec(spec)
    # When it is submitted
    response = api.call("POST", "/tasks", spec)
    # Then it is refused as a client error naming that field
    assert response.status in (400, 422), response.text
    assert mentions(response.body, field), f"{field} not named in {response.text}"
    # and no task was recorded
    assert len(api.all_tasks()) == before


def test_unknown_pipeline_is_refused_naming_the_pipeline_and_records_nothing(api: Any) -> None:
    # Given the tasks recorded so far
    before = len(api.all_tasks())
    # When a pipeline that does not exist is requested
    response = api.call("POST", "/tasks", {"pipeline": "no_such_pipeline", "params": {}})
    # Then the answer is a 400 naming the field and the known pipelines
    assert response.status == 400, response.text
    assert {
        "field": "pipeline",
        "message": "unknown pipeline 'no_such_pipeline' (known: airports, deliveries, flights)",
    } in response.body["errors"]
    # and no task was recorded
    assert len(api.all_tasks()) == before


def test_the_valid_spec_used_above_is_accepted(api: Any, s3: Any, data_bucket: str) -> None:
    # Given the unbroken spec the cases above start from, with its three-row source in S3
    s3.put_object(Bucket=data_bucket, Key="shared/validation/orders.csv", Body=b"id,note\n1,a\n2,b\n3,NA\n")
    before = len(api.all_tasks())
    # When it is submitted
    response = api.call("POST", "/tasks", valid_spec(data_bucket))
    # Then it is accepted and recorded (so the refusals above were about the broken field)
    assert response.status == 202, response.text
    assert response.body["links"]["self"] == f"/tasks/{response.body['taskId']}"
    assert len(api.all_tasks()) == before + 1
    # and it runs to the end
    final = api.wait_terminal(response.body["taskId"], timeout_s=120)
    assert final["status"] == "SUCCEEDED", final
    assert final["counts"] == {"read": 3, "filtered": 0, "rejected": 0, "loaded": 3, "deleted": 0}


@pytest.mark.parametrize(
    ("target", "field", "message"),
    [
        (
            {"schema": "public"},
            "target.schema",
            "a spec names a table, never a schema: Busline writes each owner's tables into the owner's own "
            "schema; remove target.schema",
        ),
        (
            {"table": "public.validation_orders"},
            "target.table",
            "'public.validation_orders' is not a plain table name: a spec names a table, never a schema "
            "(Busline writes your tables into your own schema)",
        ),
        (
            {"table": "busline_ledger"},
            "target.table",
            "'busline_ledger': table names starting with 'busline_' are reserved for Busline's own tables",
        ),
    ],
    ids=["schema", "schema-qualified-table", "reserved-table"],
)
def test_a_target_outside_the_submitters_schema_is_400_naming_the_field(
    api: Any, data_bucket: str, target: dict[str, str], field: str, message: str
) -> None:
    # Given the tasks recorded so far and a spec that says where its table goes
    before = len(api.all_tasks())
    spec = copy.deepcopy(valid_spec(data_bucket))
    spec["target"].update(target)
    # When it is submitted
    response = api.call("POST", "/tasks", spec)
    # Then it is a 400 (well-formed, but not a task Busline will run) naming exactly that field, and why
    assert response.status == 400, response.text
    assert response.body["errors"] == [{"field": field, "message": message}]
    # and no task was recorded
    assert len(api.all_tasks()) == before


def test_a_pipeline_table_outside_the_submitters_schema_is_400_naming_the_parameter(api: Any) -> None:
    # Given the tasks recorded so far / When the flights pipeline is asked to load into public.flights
    before = len(api.all_tasks())
    response = api.call("POST", "/tasks", {"pipeline": "flights", "params": {"table": "public.flights"}})
    # Then it is a 400 naming the parameter, and nothing was recorded
    assert response.status == 400, response.text
    assert response.body["errors"] == [
        {
            "field": "params.table",
            "message": "'public.flights' is not a plain table name: a spec names a table, never a schema "
            "(Busline writes your tables into your own schema)",
        }
    ]
    assert len(api.all_tasks()) == before
