"""src/api/app.py: the REST API handler, driven with the API Gateway proxy events in events/."""

from __future__ import annotations

import copy
import json
from typing import Any

import boto3
from busline_core.dashboards import Dashboard, DashboardChart
from handler_kit import OWNER, REGION, Cloud, FakeLambdaContext, event_file, of_type

SAMPLE_REQUEST_ID = "3c1b7d1e-2a57-4f0b-8d0e-7a6f2c9b1d20"  # requestContext.requestId of events/api_post_task.json


def post(
    api: Any, context: FakeLambdaContext, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], dict[str, list[str]]]:
    event = copy.deepcopy(event_file("api_post_task.json"))
    event["body"] = json.dumps(body)
    for name, value in (headers or {}).items():
        event["headers"][name] = value
        event["multiValueHeaders"][name] = [value]
    # a browser's cross-origin request (the web page is served from another port)
    event["headers"]["Origin"] = "http://127.0.0.1:3002"
    event["multiValueHeaders"]["Origin"] = ["http://127.0.0.1:3002"]
    response = api.lambda_handler(event, context)
    return response["statusCode"], json.loads(response["body"]), response["multiValueHeaders"]


def get(api: Any, context: FakeLambdaContext, path: str, query: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    event = copy.deepcopy(event_file("api_get_task.json"))
    event["path"] = path
    event["pathParameters"] = {"proxy": path.lstrip("/")}
    event["requestContext"]["path"] = f"/dev{path}"
    event["queryStringParameters"] = query
    event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} if query else None
    response = api.lambda_handler(event, context)
    return response["statusCode"], json.loads(response["body"])


def test_post_task_answers_202_and_publishes_exactly_one_task_submitted(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext
) -> None:
    # Given the API function and a POST /tasks of the flights pipeline
    api = load_handler("api")
    # When it is invoked
    status, body, headers = post(api, context, {"pipeline": "flights", "params": {}})
    # Then the task is accepted, with links, for the signed-in caller (the claims' sub)
    assert status == 202
    task_id = body["taskId"]
    assert body == {
        "taskId": task_id,
        "status": "ACCEPTED",
        "links": {"self": f"/tasks/{task_id}", "progress": json.dumps({"action": "subscribe", "taskId": task_id})},
    }
    # answered for the one allowed origin (template parameter WebOrigin), never "*"
    assert headers["Access-Control-Allow-Origin"] == ["http://127.0.0.1:3002"]
    assert cloud.task(task_id)["owner"] == OWNER
    # And exactly one TaskSubmitted went to the bus, naming that task and, as its correlation id, API
    # Gateway's id of the request
    published = cloud.published()
    assert [(e["detail-type"], e["source"], e["detail"]) for e in published] == [
        ("TaskSubmitted", "busline", {"taskId": task_id, "staging": None, "reading": None, "correlationId": SAMPLE_REQUEST_ID})
    ]
    assert cloud.task(task_id)["correlationId"] == SAMPLE_REQUEST_ID


def test_a_client_correlation_id_becomes_the_tasks_and_a_malformed_one_is_400_naming_the_header(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext
) -> None:
    # Given the API function
    api = load_handler("api")
    # When a task is posted with X-Correlation-Id, and another with one holding a space
    status, body, _ = post(api, context, {"pipeline": "flights", "params": {}}, {"X-Correlation-Id": "order-sync:42"})
    refused, refusal, _ = post(api, context, {"pipeline": "flights", "params": {}}, {"X-Correlation-Id": "two words"})
    # Then the first task and its event carry the client's id
    assert status == 202
    assert cloud.task(body["taskId"])["correlationId"] == "order-sync:42"
    assert [e["detail"]["correlationId"] for e in cloud.published()] == ["order-sync:42"]
    # and the second is refused, naming the header, with no task recorded
    assert refused == 400
    assert refusal["errors"] == [
        {
            "field": "X-Correlation-Id",
            "message": "must be 1 to 128 characters: letters, digits and - _ . : / (not starting with a punctuation "
            "mark)",
        }
    ]
    tasks = boto3.resource("dynamodb", region_name=REGION).Table(cloud.tasks_table).scan()["Items"]
    assert [task["taskId"] for task in tasks] == [body["taskId"]]


def test_sample_post_event_as_is_is_accepted(cloud: Cloud, load_handler: Any, context: FakeLambdaContext) -> None:
    # Given the unmodified events/api_post_task.json / When the API handles it
    response = load_handler("api").lambda_handler(event_file("api_post_task.json"), context)
    # Then 202 and one TaskSubmitted
    assert response["statusCode"] == 202
    assert len(of_type(cloud.published(), "TaskSubmitted")) == 1


def test_get_task_returns_the_snapshot_and_the_list_contains_it(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext
) -> None:
    # Given a submitted task
    api = load_handler("api")
    _, submitted, _ = post(api, context, {"pipeline": "flights"})
    task_id = submitted["taskId"]
    # When it is read, and the tasks are listed
    status, snapshot = get(api, context, f"/tasks/{task_id}")
    list_status, page = get(api, context, "/tasks", {"limit": "10"})
    # Then both show it as ACCEPTED with zero counts
    assert status == 200
    assert snapshot["taskId"] == task_id
    assert snapshot["pipeline"] == "flights"
    assert snapshot["status"] == "ACCEPTED"
    assert snapshot["counts"] == {"read": 0, "filtered": 0, "rejected": 0, "loaded": 0, "deleted": 0}
    assert list_status == 200
    assert [item["taskId"] for item in page["items"]] == [task_id]
    assert page["nextToken"] is None


def test_bad_body_is_422_naming_the_field_and_publishes_nothing(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext
) -> None:
    # Given an ad-hoc spec whose first column has an unknown type
    api = load_handler("api")
    spec = {
        "source": {"uri": "s3://busline-data/x.csv", "format": "csv"},
        "columns": [{"name": "id", "type": "integer"}],
        "target": {"table": "t", "key": ["id"]},
    }
    # When it is posted
    status, body, _ = post(api, context, spec)
    # Then 422 lists exactly that field, and nothing was recorded or published
    assert status == 422
    locations = [tuple(str(part) for part in error["loc"]) for error in body["detail"]]
    assert len(locations) == 1
    assert locations[0][-3:] == ("columns", "0", "type")
    assert cloud.published() == []


def test_unknown_pipeline_is_400_naming_the_field(cloud: Cloud, load_handler: Any, context: FakeLambdaContext) -> None:
    # Given a pipeline name that does not exist / When it is posted
    status, body, _ = post(load_handler("api"), context, {"pipeline": "nope", "params": {}})
    # Then 400 names the pipeline field and nothing was published
    assert status == 400
    assert [error["field"] for error in body["errors"]] == ["pipeline"]
    assert "nope" in body["message"]
    assert cloud.published() == []


def test_unknown_task_is_404(cloud: Cloud, load_handler: Any, context: FakeLambdaContext) -> None:
    # Given the sample GET event, whose task was never submitted / When it is handled
    response = load_handler("api").lambda_handler(event_file("api_get_task.json"), context)
    # Then 404 with a message naming the task
    assert response["statusCode"] == 404
    assert json.loads(response["body"]) == {"message": "task 5f0c2a7e-8d41-4b9a-9a3e-6c1d2b7f4e10 not found"}


def test_rejects_of_unknown_task_is_404_and_bad_limit_is_422(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext
) -> None:
    api = load_handler("api")
    # When the rejects of an unknown task are asked for
    status, _ = get(api, context, "/tasks/does-not-exist/rejects")
    # Then 404
    assert status == 404
    # When a limit out of range is given / Then 422 naming the limit query parameter
    status, body = get(api, context, "/tasks", {"limit": "0"})
    assert status == 422
    assert [error["loc"] for error in body["detail"]] == [["query", "limit"]]


def test_openapi_schema_is_served(cloud: Cloud, load_handler: Any, context: FakeLambdaContext) -> None:
    # When the schema is asked for / Then it lists the ten paths
    status, schema = get(load_handler("api"), context, "/swagger", {"format": "json"})
    assert status == 200
    assert sorted(schema["paths"]) == [
        "/pipelines", "/pipelines/{name}/dashboard", "/schedules", "/schedules/{scheduleId}", "/tasks",
        "/tasks/{taskId}", "/tasks/{taskId}/cancel", "/tasks/{taskId}/rejects", "/tasks/{taskId}/rejects/summary",
        "/uploads",
    ]  # fmt: skip
    assert sorted(schema["paths"]["/tasks"]) == ["get", "post"]


def test_a_forged_or_foreign_page_token_is_400_naming_next_token(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext
) -> None:
    # Given three tasks, listed one per page, with tokens signed by the stack's generated secret
    api = load_handler("api")
    for _ in range(3):
        assert post(api, context, {"pipeline": "flights", "params": {}})[0] == 202
    status, first = get(api, context, "/tasks", {"limit": "1"})
    assert (status, len(first["items"])) == (200, 1)
    status, second = get(api, context, "/tasks", {"limit": "1", "nextToken": first["nextToken"]})
    assert (status, len(second["items"])) == (200, 1)
    assert second["items"][0]["taskId"] != first["items"][0]["taskId"]
    task_id = first["items"][0]["taskId"]
    # When a made-up token, a list token used for rejects, and a token with a flipped byte are sent
    forged = get(api, context, "/tasks", {"nextToken": "eyJ0YXNrSWQiOiJ4In0"})
    foreign = get(api, context, f"/tasks/{task_id}/rejects", {"nextToken": first["nextToken"]})
    payload, signature = first["nextToken"].split(".")
    flipped = get(api, context, "/tasks", {"nextToken": f"{payload}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"})
    # Then each is a 400 naming nextToken, never a 500
    for status, body in (forged, foreign, flipped):
        assert status == 400
        assert [error["field"] for error in body["errors"]] == ["nextToken"]


def _adhoc(target: dict[str, Any]) -> dict[str, Any]:
    return {
        "source": {"uri": "s3://busline-data/x.csv", "format": "csv"},
        "columns": [{"name": "id", "type": "int"}],
        "target": target,
    }


def test_a_target_outside_the_owners_schema_is_400_naming_the_field(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext
) -> None:
    # Given ad-hoc specs that say where their table goes: a schema, a qualified table, a reserved name
    api = load_handler("api")
    refused = {
        "target.schema": {"table": "flights", "key": ["id"], "schema": "public"},
        "target.table": {"table": "t_9317b9cde9a5df1b1125d065.flights", "key": ["id"]},
    }
    for field, target in refused.items():
        # When each is posted
        status, body, _ = post(api, context, _adhoc(target))
        # Then 400 (a well-formed request Busline will not run, not a malformed one) names exactly that field
        assert status == 400, body
        assert [error["field"] for error in body["errors"]] == [field]
        assert body["message"].startswith(f"invalid task: {field}: ")
    status, body, _ = post(api, context, _adhoc({"table": "busline_tables", "key": ["id"]}))
    assert (status, body["errors"]) == (
        400,
        [{"field": "target.table", "message": "'busline_tables': table names starting with 'busline_' are reserved for Busline's own tables"}],
    )
    # And nothing was recorded or published
    assert cloud.published() == []


def test_a_refused_target_lists_the_bodys_other_errors_too(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext
) -> None:
    # Given a spec with a schema and a column of an unknown type
    spec = _adhoc({"table": "flights", "key": ["id"], "schema": "alice"})
    spec["columns"][0]["type"] = "integer"
    # When it is posted
    status, body, _ = post(load_handler("api"), context, spec)
    # Then one 400 lists both fields, so the user can fix them at once
    assert status == 400
    assert sorted(error["field"] for error in body["errors"]) == ["columns.0.type", "target.schema"]
    assert cloud.published() == []


def test_the_task_list_filters_by_pipeline_and_status_and_refuses_an_unknown_status(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext
) -> None:
    # Given one ACCEPTED flights task
    api = load_handler("api")
    _, accepted, _ = post(api, context, {"pipeline": "flights", "params": {}})
    # When the list is asked for by pipeline and status, for another pipeline, and for no such status
    matching = get(api, context, "/tasks", {"pipeline": "flights", "status": "ACCEPTED"})
    other = get(api, context, "/tasks", {"pipeline": "daily"})
    unknown = get(api, context, "/tasks", {"status": "DONE"})
    # Then the first lists it, the second nothing, and the third is a 422 naming the parameter
    assert (matching[0], [task["taskId"] for task in matching[1]["items"]]) == (200, [accepted["taskId"]])
    assert (other[0], other[1]["items"]) == (200, [])
    assert unknown[0] == 422
    assert [issue["loc"] for issue in unknown[1]["detail"]] == [["query", "status"]]


class RecordingDashboards:
    """The warehouse side of GET /pipelines/{name}/dashboard (dashboard_reader.py has its own tests against
    Postgres): records what it was asked for and answers one empty chart."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str, str, list[str]]] = []

    def dashboard(self, pipeline: str, owner: str, table: str, queries: Any) -> Dashboard:
        self.asked.append((pipeline, owner, table, [query.name for query in queries]))
        chart = DashboardChart(name="c", title="C", chart="bar", xLabel="x", yLabel="y", points=[])
        return Dashboard(pipeline=pipeline, table=table, loaded=True, charts=[chart])


def test_a_dashboard_reads_the_callers_table_of_a_known_pipeline(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext
) -> None:
    # Given the API with a warehouse that records what it is asked
    api = load_handler("api")
    warehouse = RecordingDashboards()
    api.deps.dashboard_source_factory = lambda: warehouse
    # When the flights dashboard is asked for, by default and for another table of the caller's
    status, body = get(api, context, "/pipelines/flights/dashboard")
    other_status, other = get(api, context, "/pipelines/flights/dashboard", {"table": "flights_2014"})
    # Then each reads the caller's table with the pipeline's three queries
    assert (status, other_status) == (200, 200)
    queries = ["departure_delay_by_carrier", "flights_per_month", "busiest_destinations"]
    assert warehouse.asked == [
        ("flights", OWNER, "flights", queries),
        ("flights", OWNER, "flights_2014", queries),
    ]
    assert (body["table"], other["table"], body["loaded"], len(body["charts"])) == ("flights", "flights_2014", True, 1)


def test_a_dashboard_of_an_unknown_pipeline_is_404_and_a_bad_table_400_naming_it(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext
) -> None:
    api = load_handler("api")
    warehouse = RecordingDashboards()
    api.deps.dashboard_source_factory = lambda: warehouse
    # When a pipeline that does not exist is asked for / Then 404 naming it
    assert get(api, context, "/pipelines/nope/dashboard") == (404, {"message": "pipeline nope not found"})
    # When a table is schema-qualified / Then 400 naming the table parameter, and nothing was read
    status, body = get(api, context, "/pipelines/flights/dashboard", {"table": "public.flights"})
    assert status == 400
    assert [error["field"] for error in body["errors"]] == ["table"]
    assert warehouse.asked == []


def test_get_pipelines_lists_the_folders_pipelines_with_their_params(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext
) -> None:
    # When the pipelines are listed
    status, body = get(load_handler("api"), context, "/pipelines")
    # Then each module of pipelines/ is there, its params' JSON Schema and its dashboard
    assert status == 200
    assert [item["name"] for item in body["items"]] == ["airports", "deliveries", "flights"]
    flights = body["items"][2]
    assert flights["params"]["properties"]["limit"] == {
        "anyOf": [{"minimum": 1, "type": "integer"}, {"type": "null"}],
        "default": None,
        "description": "load only the first N flights",
        "title": "Limit",
    }
    assert (flights["defaultTable"], len(flights["dashboard"])) == ("flights", 3)
