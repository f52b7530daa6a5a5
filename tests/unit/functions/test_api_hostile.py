"""Hostile requests to src/api/app.py: each gets its 4xx naming the field or the limit, never a 5xx, and
nothing is recorded or published; anything unexpected is a 500 with a request id and no internals; and
every status an operation answers is declared in the OpenAPI document it serves."""

from __future__ import annotations

import base64
import copy
import json
import re
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from busline_core import task_api
from busline_core.errors import PublishFailed
from busline_core.limits import MAX_SPEC_BYTES, MAX_TASK_ID_LENGTH
from busline_core.spec import TaskSpec
from handler_kit import REGION, Cloud, FakeLambdaContext, event_file

# the requestContext.requestId of events/api_post_task.json, which every request here starts from
REQUEST_ID = "3c1b7d1e-2a57-4f0b-8d0e-7a6f2c9b1d20"


@dataclass
class Hostile:
    name: str
    method: str
    path: str
    status: int
    answer: dict[str, Any]
    body: str | None = None
    base64_encoded: bool = False
    content_type: str = "application/json"
    query: dict[str, str] = field(default_factory=dict)


def call(api: Any, context: FakeLambdaContext, request: Hostile) -> tuple[int, dict[str, Any]]:
    """The request as API Gateway's proxy integration hands it over, signed in as OWNER."""
    event = copy.deepcopy(event_file("api_post_task.json"))
    event.update(
        httpMethod=request.method, path=request.path, body=request.body, isBase64Encoded=request.base64_encoded,
        pathParameters={"proxy": request.path.lstrip("/")},
        queryStringParameters=request.query or None,
        multiValueQueryStringParameters={k: [v] for k, v in request.query.items()} or None,
    )
    event["requestContext"].update(httpMethod=request.method, path=f"/dev{request.path}")
    event["headers"]["Content-Type"] = request.content_type
    event["multiValueHeaders"]["Content-Type"] = [request.content_type]
    response = api.lambda_handler(event, context)
    return int(response["statusCode"]), json.loads(response["body"])


def _invalid(location: list[Any], kind: str, message: str, status: int = 422) -> dict[str, Any]:
    return {"statusCode": status, "detail": [{"loc": location, "type": kind, "msg": message}]}


def _not_json(message: str, *offset: int) -> dict[str, Any]:
    return _invalid(["body", *offset], "json_invalid", f"not JSON text: {message}")


def _refusal(status_field: str, message: str) -> dict[str, Any]:
    return {"message": f"{status_field}: {message}", "errors": [{"field": status_field, "message": message}]}


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


LONG_ID = "a" * 10_000
_columns_501 = [{"name": f"c{i}", "type": "int"} for i in range(501)]
_spec_501 = {"source": {"uri": "s3://b/shared/x.csv", "format": "csv"}, "columns": _columns_501,
             "target": {"table": "t", "key": ["c0"]}}

HOSTILE: list[Hostile] = [
    Hostile("invalid-utf8", "POST", "/tasks", 422, _not_json("byte 16 is not UTF-8 (JSON text is UTF-8)", 16),
            body=_b64(b'{"pipeline": "fl\xffights"}'), base64_encoded=True),
    Hostile("not-base64", "POST", "/tasks", 422, _not_json("the body is marked as base64 but is not valid base64"),
            body="!!!not base64", base64_encoded=True),
    Hostile("lone-surrogate", "POST", "/tasks", 422,
            _not_json("a \\u escape is half a surrogate pair, not a character", 14), body='{"pipeline": "\\ud800"}'),
    Hostile("10000-deep-arrays", "POST", "/tasks", 422, _not_json("nested deeper than the limit of 16 levels", 16),
            body="[" * 10_000 + "]" * 10_000),
    Hostile("1e400", "POST", "/tasks", 422, _not_json("the number 1e400 is out of range (beyond a double's)"),
            body='{"pipeline": "flights", "params": {"chunkRows": 1e400}}'),
    Hostile("5000-digit-integer", "POST", "/tasks", 422,
            _not_json("a number of 5,000 characters, over the limit of 100"),
            body='{"pipeline": "flights", "params": {"chunkRows": ' + "9" * 5000 + "}}"),
    Hostile("NaN", "POST", "/tasks", 422, _not_json("NaN is not a JSON value"),
            body='{"pipeline": "flights", "params": {"chunkRows": NaN}}'),
    Hostile("Infinity", "POST", "/tasks", 422, _not_json("Infinity is not a JSON value"),
            body='{"pipeline": "flights", "params": {"chunkRows": Infinity}}'),
    Hostile("duplicate-key", "POST", "/tasks", 422, _not_json("the key 'pipeline' appears twice in one object"),
            body='{"pipeline": "flights", "pipeline": "nope"}'),
    Hostile("2MB-string", "POST", "/tasks", 413, _refusal("body", "2,000,016 bytes, over the limit of 131,072 bytes"),
            body=json.dumps({"pipeline": "x" * 2_000_000})),
    Hostile("empty-body", "POST", "/tasks", 422, _invalid(["body"], "missing", "Field required"), body=""),
    Hostile("array-body", "POST", "/tasks", 422,
            _invalid(["body", "spec"], "model_attributes_type",
                     "Input should be a valid dictionary or object to extract fields from"), body="[]"),
    Hostile("form-body", "POST", "/tasks", 415,
            _invalid(["header", "Content-Type"], "unsupported_content_type",
                     "application/x-www-form-urlencoded is not application/json", 415),
            body="pipeline=flights", content_type="application/x-www-form-urlencoded"),
    Hostile("multipart-without-boundary", "POST", "/tasks", 415,
            _invalid(["header", "Content-Type"], "unsupported_content_type",
                     "multipart/form-data is not application/json", 415),
            body='{"pipeline": "flights"}', content_type="multipart/form-data"),
    Hostile("501-columns", "POST", "/tasks", 422,
            _invalid(["body", "spec", "columns"], "too_long", "List should have at most 500 items after validation, not 501"),
            body=json.dumps(_spec_501)),
    Hostile("long-pipeline-name", "POST", "/tasks", 422,
            _invalid(["body", "pipeline", "pipeline"], "string_too_long", "String should have at most 64 characters"),
            body=json.dumps({"pipeline": "p" * 65})),
    Hostile("upload-2MB", "POST", "/uploads", 413, _refusal("body", "2,000,016 bytes, over the limit of 131,072 bytes"),
            body=json.dumps({"fileName": "x" * 2_000_000})),
    Hostile("upload-deep", "POST", "/uploads", 422, _not_json("nested deeper than the limit of 16 levels", 42),
            body='{"fileName": "a.csv", "x": ' + "[" * 100 + "]" * 100 + "}"),
    Hostile("10000-char-task-id", "GET", f"/tasks/{LONG_ID}", 422,
            _invalid(["path", "taskId"], "string_too_long", "String should have at most 64 characters")),
    Hostile("10000-char-task-id-rejects", "GET", f"/tasks/{LONG_ID}/rejects", 422,
            _invalid(["path", "taskId"], "string_too_long", "String should have at most 64 characters")),
    Hostile("64-char-task-id", "GET", "/tasks/" + "a" * MAX_TASK_ID_LENGTH, 404,
            {"message": f"task {'a' * MAX_TASK_ID_LENGTH} not found"}),
    Hostile("limit-0", "GET", "/tasks", 422,
            _invalid(["query", "limit"], "greater_than_equal", "Input should be greater than or equal to 1"),
            query={"limit": "0"}),
    Hostile("limit-minus-1", "GET", "/tasks", 422,
            _invalid(["query", "limit"], "greater_than_equal", "Input should be greater than or equal to 1"),
            query={"limit": "-1"}),
    Hostile("limit-10e30", "GET", "/tasks", 422,
            _invalid(["query", "limit"], "less_than_equal", "Input should be less than or equal to 1000"),
            query={"limit": "1" + "0" * 30}),
    Hostile("limit-not-a-number", "GET", "/tasks", 422,
            _invalid(["query", "limit"], "int_parsing", "Input should be a valid integer, unable to parse string as an integer"),
            query={"limit": "ten"}),
    Hostile("forged-page-token", "GET", "/tasks", 400,
            _refusal("nextToken", "not a token this API returned"), query={"nextToken": "eyJ0YXNrSWQiOiJ4In0"}),
    Hostile("3000-char-page-token", "GET", "/tasks", 400,
            _refusal("nextToken", "longer than 2048 characters"), query={"nextToken": "t" * 3000}),
    Hostile("unknown-route", "GET", "/nope", 404, {"message": "Not found"}),
]


def _operation(request: Hostile) -> tuple[str, str] | None:
    """The OpenAPI operation a request is for (None for a path no route serves)."""
    template = re.sub(r"^/tasks/[^/]+", "/tasks/{taskId}", request.path)
    if template not in ("/tasks", "/tasks/{taskId}", "/tasks/{taskId}/cancel", "/tasks/{taskId}/rejects",
                        "/tasks/{taskId}/rejects/summary", "/uploads"):
        return None
    return template, request.method.lower()


def _declared(api: Any, context: FakeLambdaContext) -> dict[tuple[str, str], set[int]]:
    status, schema = call(api, context, Hostile("swagger", "GET", "/swagger", 200, {}, query={"format": "json"}))
    assert status == 200
    return {
        (path, method): {int(code) for code in operation["responses"]}
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
    }


def test_every_hostile_request_gets_its_4xx_naming_the_field_or_limit_and_nothing_is_recorded(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext
) -> None:
    # Given the API function, the statuses its OpenAPI document declares per operation, and an empty table
    api = load_handler("api")
    declared = _declared(api, context)
    answers: dict[str, tuple[int, dict[str, Any]]] = {}
    # When each hostile request is sent
    for request in HOSTILE:
        answers[request.name] = call(api, context, request)
    # Then each gets exactly its status and body (the field or the limit named), none a 5xx
    assert answers == {request.name: (request.status, request.answer) for request in HOSTILE}
    assert [name for name, (status, _) in answers.items() if status >= 500] == []
    # And every status answered is one its operation declares
    for request in HOSTILE:
        operation = _operation(request)
        if operation is not None:
            assert request.status in declared[operation], (request.name, operation)
    # And nothing was recorded or published
    assert cloud.published() == []
    assert boto3.resource("dynamodb", region_name=REGION).Table(cloud.tasks_table).scan(Select="COUNT")["Count"] == 0


def test_an_over_long_task_id_is_refused_before_any_dynamodb_call(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the API function whose tasks repository records every read
    api = load_handler("api")
    reads: list[str] = []
    monkeypatch.setattr(api.deps.tasks, "get", lambda task_id: reads.append(task_id))
    # When a 10,000-character task id is asked for
    status, _ = call(api, context, Hostile("long", "GET", f"/tasks/{LONG_ID}", 422, {}))
    # Then 422, and the repository was never asked
    assert (status, reads) == (422, [])


def _spec_of_stored_size(cloud: Cloud, stored_bytes: int) -> dict[str, Any]:
    """A valid ad-hoc spec whose stored JSON (defaults filled in) is exactly `stored_bytes` long."""
    spec: dict[str, Any] = {
        "source": {"uri": f"s3://{cloud.bucket}/shared/sized.csv", "format": "csv"},
        "columns": [{"name": "id", "type": "int"}, {"name": "note", "type": "string"}],
        "filters": [{"column": "note", "op": "ne", "value": ""}],
        "target": {"table": "sized", "key": ["id"]},
        "chunkRows": 20_000,
    }
    overhead = len(TaskSpec.model_validate(spec).model_dump_json(by_alias=True).encode())
    spec["filters"][0]["value"] = "v" * (stored_bytes - overhead)
    return spec


def test_a_spec_over_the_stored_size_limit_is_413_and_one_at_it_is_accepted(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext
) -> None:
    # Given two specs whose stored JSON is 65,537 and 65,536 bytes (their bodies are under the body limit)
    api = load_handler("api")
    over, at_limit = _spec_of_stored_size(cloud, MAX_SPEC_BYTES + 1), _spec_of_stored_size(cloud, MAX_SPEC_BYTES)
    # When both are submitted
    refused = call(api, context, Hostile("over", "POST", "/tasks", 413, {}, body=json.dumps(over)))
    accepted = call(api, context, Hostile("at", "POST", "/tasks", 202, {}, body=json.dumps(at_limit)))
    # Then the bigger one is a 413 naming its size and the limit, and only the other one is recorded
    assert refused == (413, _refusal(
        "body", "the spec is 65,537 bytes as stored (defaults filled in), over the limit of 65,536 bytes"))
    assert accepted[0] == 202
    assert len(cloud.task(accepted[1]["taskId"])["spec"]) == MAX_SPEC_BYTES
    assert [event["detail"]["taskId"] for event in cloud.published()] == [accepted[1]["taskId"]]


def test_anything_unexpected_is_a_500_with_the_request_id_and_no_internals(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a tasks table that fails with a message full of internals
    api = load_handler("api")

    def broken(task_id: str) -> None:
        raise RuntimeError("connect to db.internal:5432 as admin:hunter2 failed")

    monkeypatch.setattr(api.deps.tasks, "get", broken)
    # When a task is read
    status, body = call(api, context, Hostile("broken", "GET", "/tasks/" + "a" * 36, 500, {}))
    # Then 500 with API Gateway's request id and nothing else
    assert (status, body) == (500, {"message": "internal error", "requestId": REQUEST_ID})
    # And the failure is logged with its stack under that id
    [record] = [record for record in caplog.records if record.getMessage() == "request failed"]
    assert (record.levelname, record.requestId) == ("ERROR", REQUEST_ID)
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError
    assert "hunter2" in str(record.exc_info[1]) and record.exc_info[2] is not None


def test_a_busline_error_without_a_client_status_is_a_500_without_its_message(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a bus that refuses the TaskSubmitted event, saying which ARN
    api = load_handler("api")

    def refuse(*args: Any) -> None:
        raise PublishFailed("arn:aws:events:us-east-1:123456789012:event-bus/busline refused 1 entry")

    monkeypatch.setattr(api.deps.publisher, "publish", refuse)
    # When a task is submitted
    status, body = call(api, context, Hostile("unpublished", "POST", "/tasks", 500, {}, body='{"pipeline": "flights"}'))
    # Then 500 with the request id, and the ARN stays in the logs
    assert (status, body) == (500, {"message": "internal error", "requestId": REQUEST_ID})


def test_a_task_list_whose_index_is_being_built_is_a_503_to_try_again(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the tasks table answering for its owner index as DynamoDB does while an upgrade builds it again
    api = load_handler("api")

    def backfilling(**query: Any) -> None:
        raise ClientError(
            {"Error": {"Code": "ValidationException",
                       "Message": "Cannot read from backfilling global secondary index: byOwner"}}, "Query",
        )  # fmt: skip

    monkeypatch.setattr(api.deps.tasks._table, "query", backfilling)
    # When the caller lists their tasks
    status, body = call(api, context, Hostile("index building", "GET", "/tasks", 503, {}))
    # Then 503, to try again, with the request id and nothing of DynamoDB's words
    assert status == 503
    assert body == {"message": api._FAILURES[503][0], "requestId": REQUEST_ID}
    assert "backfilling" not in json.dumps(body)


def test_without_api_gateways_request_id_the_500_carries_the_lambda_request_id(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an event without requestContext.requestId and a failing read
    api = load_handler("api")
    monkeypatch.setattr(api.deps.tasks, "get", lambda task_id: 1 / 0)
    event = copy.deepcopy(event_file("api_get_task.json"))
    del event["requestContext"]["requestId"]
    # When it is handled
    response = api.lambda_handler(event, context)
    # Then the 500 names the Lambda invocation's id
    assert (response["statusCode"], json.loads(response["body"])) == (
        500, {"message": "internal error", "requestId": context.aws_request_id})


def test_an_answer_that_breaks_its_own_model_is_a_500_not_a_422(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a use case that returns something that is not a TaskSnapshot
    api = load_handler("api")
    monkeypatch.setattr(task_api, "get_task", lambda task_id, owner, deps: {"taskId": task_id})
    # When a task is read / Then the server's mistake is not blamed on the request
    status, body = call(api, context, Hostile("bad answer", "GET", "/tasks/" + "a" * 36, 500, {}))
    assert (status, body) == (500, {"message": "internal error", "requestId": REQUEST_ID})


ERROR_BODIES = {
    400: "Refusal", 401: "Message", 403: "Message", 404: "Message", 409: "Message", 413: "Refusal", 415: "ValidationFailure",
    422: "ValidationFailure", 429: "Message", 500: "InternalError", 503: "Message",
}


def test_the_openapi_document_declares_every_status_of_every_operation_with_its_body(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext
) -> None:
    # When the served OpenAPI document is read
    status, schema = call(load_handler("api"), context, Hostile("swagger", "GET", "/swagger", 200, {}, query={"format": "json"}))
    assert status == 200
    declared = {
        (path, method): {int(code): response["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
                         for code, response in operation["responses"].items()}
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
    }
    # Then each operation declares its success (202 on submit, 201 on upload) and exactly the failures it can
    # answer, each with its body: API Gateway's {"message"} for 401, 403 and 429
    gateway_and_catch_all = {401: "Message", 403: "Message", 429: "Message", 500: "InternalError"}

    def expected(success: tuple[int, str], *failures: int) -> dict[int, str]:
        return {success[0]: success[1], **gateway_and_catch_all, **{code: ERROR_BODIES[code] for code in failures}}

    assert declared == {
        ("/tasks", "post"): expected((202, "TaskAccepted"), 400, 413, 415, 422),
        ("/schedules", "post"): expected((201, "Schedule"), 400, 413, 415, 422),
        ("/schedules", "get"): expected((200, "ScheduleList"), 422),
        ("/schedules/{scheduleId}", "get"): expected((200, "Schedule"), 404, 422),
        ("/schedules/{scheduleId}", "delete"): expected((204, "Message"), 404, 422),
        ("/tasks", "get"): expected((200, "TaskPage"), 400, 422, 503),
        ("/tasks/{taskId}", "get"): expected((200, "TaskSnapshot"), 404, 422),
        ("/tasks/{taskId}/cancel", "post"): expected((202, "TaskSnapshot"), 404, 409, 422),
        ("/tasks/{taskId}/rejects", "get"): expected((200, "RejectPage"), 400, 404, 422),
        ("/tasks/{taskId}/rejects/summary", "get"): expected((200, "RejectSummary"), 404, 422),
        ("/uploads", "post"): expected((201, "UploadTicket"), 413, 415, 422),
        ("/pipelines/{name}/dashboard", "get"): expected((200, "Dashboard"), 400, 404, 422, 503),
        ("/pipelines", "get"): expected((200, "PipelineList"), 422),
    }
    # And the bodies say what a client reads
    schemas = schema["components"]["schemas"]
    assert schemas["Message"]["required"] == ["message"]
    assert schemas["InternalError"]["required"] == ["message", "requestId"]
    assert schemas["Refusal"]["required"] == ["message"]
    assert schemas["ValidationFailure"]["required"] == ["statusCode", "detail"]
    assert schema["paths"]["/tasks/{taskId}"]["get"]["parameters"][0]["schema"]["maxLength"] == MAX_TASK_ID_LENGTH
