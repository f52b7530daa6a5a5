"""src/api/app.py, POST /uploads and the source rule of POST /tasks, driven with signed-in API Gateway events.

In-process moto cannot take a real HTTP PUT (urllib goes to the network); `requests` is intercepted by
mock_aws, so it stands in for the uploader here. The urllib PUT against a moto server is in
tests/unit/core/test_storage.py, and against the local cloud in tests/integration/app/test_uploads.py (the real PUT).
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import requests
from handler_kit import REGION, Cloud, FakeLambdaContext, event_file

ALICE = "0c5b2f6e-8a31-4c1e-9d3a-2f7b6a1e4d90"
BOB = "7e2d9c41-1b6f-4a8e-b3d5-90c8e2f1a6b7"
UUID = "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


def post(api: Any, context: FakeLambdaContext, path: str, body: Any, owner: str) -> tuple[int, dict[str, Any]]:
    """POST `body` to `path` as the signed-in `owner` (the Cognito authorizer's verified claims)."""
    event = copy.deepcopy(event_file("api_post_task.json"))
    event["path"] = path
    event["pathParameters"] = {"proxy": path.lstrip("/")}
    event["requestContext"]["path"] = f"/dev{path}"
    event["requestContext"]["authorizer"] = {"claims": {"sub": owner, "token_use": "access",
                                                        "scope": "aws.cognito.signin.user.admin"}}
    event["body"] = json.dumps(body)
    response = api.lambda_handler(event, context)
    return response["statusCode"], json.loads(response["body"])


def orders_spec(uri: str, *join_uris: str) -> dict[str, Any]:
    return {
        "source": {"uri": uri, "format": "csv"},
        "columns": [{"name": "id", "type": "int", "required": True}, {"name": "note", "type": "string"}],
        "joins": [
            {"name": f"notes{index}", "uri": join, "on": {"note": "note"}, "columns": [{"name": "label", "as": f"label{index}"}]}
            for index, join in enumerate(join_uris)
        ],
        "target": {"table": "orders", "key": ["id"]},
    }


def tasks_recorded(cloud: Cloud) -> int:
    return int(boto3.client("dynamodb", region_name=REGION).scan(TableName=cloud.tasks_table, Select="COUNT")["Count"])


def test_post_uploads_answers_201_with_a_put_url_under_the_owners_prefix(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext
) -> None:
    # Given the API function and alice, signed in
    api = load_handler("api")
    # When she asks to upload orders.csv
    status, ticket = post(api, context, "/uploads", {"fileName": "orders.csv"}, ALICE)
    # Then 201 with a presigned PUT URL for uploads/<alice>/<uuid>/orders.csv in the data bucket, valid 900 s
    assert status == 201
    assert sorted(ticket) == ["expiresIn", "headers", "method", "uploadUrl", "uri"]
    assert (ticket["method"], ticket["expiresIn"], ticket["headers"]) == ("PUT", 900, {})
    match = re.fullmatch(rf"s3://{cloud.bucket}/(uploads/{ALICE}/{UUID}/orders\.csv)", ticket["uri"])
    assert match is not None, ticket["uri"]
    key = match.group(1)
    url = urlsplit(ticket["uploadUrl"])
    assert (url.scheme, url.netloc, url.path) == ("https", f"{cloud.bucket}.s3.amazonaws.com", f"/{key}")
    query = parse_qs(url.query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Expires"] == ["900"]
    assert query["X-Amz-SignedHeaders"] == ["host"]
    # And a PUT of the file's bytes to that URL stores them at exactly that key
    response = requests.put(ticket["uploadUrl"], data=b"id,note\n1,a\n2,b\n", timeout=10)
    assert response.status_code == 200
    stored = boto3.client("s3", region_name=REGION).get_object(Bucket=cloud.bucket, Key=key)
    assert stored["Body"].read() == b"id,note\n1,a\n2,b\n"


def test_each_upload_gets_its_own_folder(cloud: Cloud, load_handler: Any, context: FakeLambdaContext) -> None:
    # Given two uploads of the same file name by the same owner / Then two different URIs
    api = load_handler("api")
    first = post(api, context, "/uploads", {"fileName": "orders.csv"}, ALICE)[1]["uri"]
    second = post(api, context, "/uploads", {"fileName": "orders.csv"}, ALICE)[1]["uri"]
    assert first != second
    assert first.rsplit("/", 2)[0] == second.rsplit("/", 2)[0] == f"s3://{cloud.bucket}/uploads/{ALICE}"


def test_a_content_type_is_signed_and_returned_as_a_header_to_send(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext
) -> None:
    # When alice names the content type
    status, ticket = post(load_handler("api"), context, "/uploads", {"fileName": "o.csv", "contentType": "text/csv"}, ALICE)
    # Then the URL signs it, and the answer says to send it
    assert status == 201
    assert ticket["headers"] == {"Content-Type": "text/csv"}
    assert parse_qs(urlsplit(ticket["uploadUrl"]).query)["X-Amz-SignedHeaders"] == ["content-type;host"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"fileName": "../orders.csv"}, "fileName"),
        ({"fileName": "a/orders.csv"}, "fileName"),
        ({"fileName": "a\\orders.csv"}, "fileName"),
        ({"fileName": ".hidden"}, "fileName"),
        ({"fileName": "orders 2026.csv"}, "fileName"),
        ({"fileName": "x" * 201}, "fileName"),
        ({"fileName": ""}, "fileName"),
        ({}, "fileName"),
        ({"fileName": "o.csv", "contentType": "text/csv\r\nX-Amz-Acl: public-read"}, "contentType"),
        ({"fileName": "o.csv", "folder": "x"}, "folder"),
    ],
)
def test_a_bad_upload_request_is_422_naming_the_field(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext, body: dict[str, Any], field: str
) -> None:
    # When the request is posted / Then 422 names exactly that field, and nothing was written
    status, answer = post(load_handler("api"), context, "/uploads", body, ALICE)
    assert status == 422
    assert [error["loc"][-1] for error in answer["detail"]] == [field]
    assert "Contents" not in boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=cloud.bucket, Prefix="uploads/")


def test_bob_gets_400_for_a_spec_reading_alices_upload(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext
) -> None:
    # Given alice's uploaded orders.csv
    api = load_handler("api")
    ticket = post(api, context, "/uploads", {"fileName": "orders.csv"}, ALICE)[1]
    assert requests.put(ticket["uploadUrl"], data=b"id,note\n1,a\n", timeout=10).status_code == 200
    cloud.published()
    # When bob submits a spec that reads it
    status, body = post(api, context, "/tasks", orders_spec(ticket["uri"]), BOB)
    # Then 400 names source.uri, and nothing was recorded or published
    assert status == 400
    assert [error["field"] for error in body["errors"]] == ["source.uri"]
    assert body["errors"][0]["message"].startswith(f"'{ticket['uri']}' is another owner's upload; ")
    assert tasks_recorded(cloud) == 0
    assert cloud.published() == []
    # And the same spec from alice is accepted
    status, body = post(api, context, "/tasks", orders_spec(ticket["uri"]), ALICE)
    assert status == 202, body
    assert tasks_recorded(cloud) == 1


def test_a_join_reading_task_chunks_is_400_naming_that_join(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext
) -> None:
    # Given a spec over the shared data whose second join reads a task's typed chunk
    spec = orders_spec(
        f"s3://{cloud.bucket}/shared/orders.csv",
        f"s3://{cloud.bucket}/shared/notes.csv",
        f"s3://{cloud.bucket}/tasks/3f1c/transform/000000.jsonl.gz",
    )
    # When alice submits it / Then 400 names joins[1].uri only, and nothing was recorded
    status, body = post(load_handler("api"), context, "/tasks", spec, ALICE)
    assert status == 400
    assert [error["field"] for error in body["errors"]] == ["joins[1].uri"]
    assert tasks_recorded(cloud) == 0
