"""POST/GET/DELETE /schedules (src/api/app.py) and the function a schedule invokes (src/api/scheduled.py),
against moto with template.yaml's table, schedule group and environment."""

from __future__ import annotations

import copy
import json
from typing import Any

import boto3
from handler_kit import OWNER, REGION, Cloud, FakeLambdaContext, event_file

OTHER_OWNER = "0b6c2d9e-1f3a-4c5b-8d7e-9f0a1b2c3d4e"


def call(
    api: Any, context: FakeLambdaContext, method: str, path: str, body: Any = None, owner: str = OWNER
) -> tuple[int, Any]:
    event = copy.deepcopy(event_file("api_post_task.json"))
    event["httpMethod"] = method
    event["requestContext"]["httpMethod"] = method
    event["path"] = path
    event["pathParameters"] = {"proxy": path.lstrip("/")}
    event["requestContext"]["path"] = f"/dev{path}"
    event["requestContext"]["authorizer"]["claims"]["sub"] = owner
    event["body"] = None if body is None else json.dumps(body)
    response = api.lambda_handler(event, context)
    return response["statusCode"], json.loads(response["body"]) if response.get("body") else None


def scheduler_names(cloud: Cloud) -> list[str]:
    assert cloud.stack is not None
    scheduler = boto3.client("scheduler", region_name=REGION)
    listed = scheduler.list_schedules(GroupName=cloud.stack.name("ScheduleGroup"))["Schedules"]
    return sorted(summary["Name"] for summary in listed)


def test_a_schedule_is_created_listed_with_its_next_runs_and_deleted_by_its_owner_only(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext
) -> None:
    # Given the API function
    api = load_handler("api")
    # When the owner schedules flights every day at 06:00 in Paris
    status, created = call(api, context, "POST", "/schedules", {
        "pipeline": "flights", "params": {}, "expression": "cron(0 6 * * ? *)", "timezone": "Europe/Paris",
        "description": "morning load",
    })
    # Then it is created with three next runs, each 06:00 Paris time (05:00 UTC in December)
    assert status == 201, created
    schedule_id = created["scheduleId"]
    assert len(schedule_id) == 12
    assert created["pipeline"] == "flights"
    assert created["expression"] == "cron(0 6 * * ? *)"
    assert created["timezone"] == "Europe/Paris"
    assert created["description"] == "morning load"
    assert len(created["nextRuns"]) == 3
    assert {run[10:] for run in created["nextRuns"]} == {"T05:00:00Z"}
    # And EventBridge Scheduler holds one schedule targeting ScheduledRunFunction, whose Input runs as the owner
    assert cloud.stack is not None
    (name,) = scheduler_names(cloud)
    assert name.endswith(f".{schedule_id}")
    assert OWNER not in name
    detail = boto3.client("scheduler", region_name=REGION).get_schedule(
        Name=name, GroupName=cloud.stack.name("ScheduleGroup")
    )
    assert detail["Target"]["Arn"] == cloud.stack.environment("ApiFunction")["SCHEDULED_RUN_FUNCTION_ARN"]
    assert detail["ScheduleExpressionTimezone"] == "Europe/Paris"
    assert json.loads(detail["Target"]["Input"]) == {
        "owner": OWNER, "scheduleId": schedule_id, "pipeline": "flights", "params": {},
        "scheduledTime": "<aws.scheduler.scheduled-time>", "scheduleArn": "<aws.scheduler.schedule-arn>",
        "retryRejects": False, "expression": "cron(0 6 * * ? *)", "timezone": "Europe/Paris",
    }

    # When the owner lists and reads it, and another owner tries the same
    listed_status, listed = call(api, context, "GET", "/schedules")
    read_status, read = call(api, context, "GET", f"/schedules/{schedule_id}")
    foreign_status, foreign = call(api, context, "GET", f"/schedules/{schedule_id}", owner=OTHER_OWNER)
    foreign_delete, _ = call(api, context, "DELETE", f"/schedules/{schedule_id}", owner=OTHER_OWNER)
    other_list_status, other_list = call(api, context, "GET", "/schedules", owner=OTHER_OWNER)
    missing_status, missing = call(api, context, "GET", "/schedules/000000000000")
    # Then the owner sees it; to the other owner it answers exactly like a missing one and is not deleted
    assert (listed_status, [item["scheduleId"] for item in listed["items"]]) == (200, [schedule_id])
    assert (read_status, read) == (200, listed["items"][0])
    assert (foreign_status, foreign) == (404, {"message": f"schedule {schedule_id} not found"})
    assert (missing_status, missing) == (404, {"message": "schedule 000000000000 not found"})
    assert foreign_delete == 404
    assert (other_list_status, other_list) == (200, {"items": []})
    assert scheduler_names(cloud) == [name]

    # When the owner deletes it
    deleted, _ = call(api, context, "DELETE", f"/schedules/{schedule_id}")
    # Then it is gone from the list and from EventBridge Scheduler
    assert deleted == 204
    assert call(api, context, "GET", "/schedules") == (200, {"items": []})
    assert scheduler_names(cloud) == []


def test_a_bad_schedule_is_400_naming_the_field_and_creates_nothing(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext
) -> None:
    # Given the API function
    api = load_handler("api")
    base = {"pipeline": "flights", "params": {}, "expression": "rate(1 day)", "timezone": "UTC"}
    # When schedules with a bad expression, time zone, param, pipeline and a past at() are posted
    answers = {
        field: call(api, context, "POST", "/schedules", {**base, **change})
        for field, change in {
            "expression": {"expression": "cron(0 6 * * *)"},
            "timezone": {"timezone": "Mars/Olympus_Mons"},
            "params.chunkRows": {"params": {"chunkRows": "many"}},
            "pipeline": {"pipeline": "nope"},
            "past": {"expression": "at(2020-01-01T00:00:00)"},
            "retryRejects": {"retryRejects": True},  # flights commits "task": its merge cannot tell them apart
        }.items()
    }
    # Then each is a 400 naming the field at fault
    fields = {name: (status, [error["field"] for error in body.get("errors", [])]) for name, (status, body) in answers.items()}
    assert fields == {
        "expression": (400, ["expression"]),
        "timezone": (400, ["timezone"]),
        "params.chunkRows": (400, ["params.chunkRows"]),
        "pipeline": (400, ["pipeline"]),
        "past": (400, ["expression"]),
        "retryRejects": (400, ["retryRejects"]),
    }
    assert "must have 6 fields" in answers["expression"][1]["message"]
    assert "is in the past" in answers["past"][1]["message"]
    # And nothing was created
    assert call(api, context, "GET", "/schedules") == (200, {"items": []})
    assert scheduler_names(cloud) == []


def test_a_scheduled_run_is_submitted_once_as_the_owner_however_often_it_is_delivered(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext
) -> None:
    # Given the function a schedule invokes, and the Input Scheduler hands it (context attributes filled in)
    scheduled = load_handler("api/scheduled")
    run = event_file("scheduled_run.json")
    # When Scheduler delivers it twice (it delivers at least once)
    first = scheduled.lambda_handler(copy.deepcopy(run), context)
    second = scheduled.lambda_handler(copy.deepcopy(run), context)
    # Then one task was recorded for the owner, saying which schedule started it and when it was due
    assert first == second
    task = cloud.task(first["taskId"])
    assert task["owner"] == OWNER
    assert task["pipeline"] == "flights"
    assert task["scheduledBy"] == {"scheduleId": "3f9a1c2b7d4e", "scheduledTime": "2026-12-01T06:00:00Z"}
    # and its TaskSubmitted was published again only while it was still ACCEPTED (extract takes it once)
    assert [event["detail"]["taskId"] for event in cloud.published()] == [first["taskId"], first["taskId"]]
    # And the next due time is another task
    later = scheduled.lambda_handler({**run, "scheduledTime": "2026-12-02T06:00:00Z"}, context)
    assert later["taskId"] != first["taskId"]


def test_a_scheduled_run_whose_pipeline_is_gone_is_refused_once_not_retried(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext
) -> None:
    # Given a schedule's Input naming a pipeline that no longer exists
    scheduled = load_handler("api/scheduled")
    run = {**event_file("scheduled_run.json"), "pipeline": "retired"}
    # When it fires
    answer = scheduled.lambda_handler(run, context)
    # Then the invocation succeeds (Scheduler does not retry what cannot change), saying why nothing ran
    assert answer["scheduleId"] == "3f9a1c2b7d4e"
    assert "retired" in answer["refused"]
    assert cloud.published() == []


def test_a_run_with_retry_rejects_offers_the_previous_run_once_that_run_has_ended(
    cloud: Cloud, load_handler: Any, context: FakeLambdaContext
) -> None:
    # Given the Input of a rate(15 minutes) schedule that retries rejects, and its run due at 06:00
    scheduled = load_handler("api/scheduled")
    run = {**event_file("scheduled_run.json"), "retryRejects": True, "expression": "rate(15 minutes)"}
    first = scheduled.lambda_handler({**run, "scheduledTime": "2026-12-01T06:00:00Z"}, context)["taskId"]
    table = boto3.resource("dynamodb", region_name=REGION).Table(cloud.tasks_table)
    # When the 06:15 run fires while the 06:00 one still runs, and the 06:30 one after the 06:15 one ended
    second = scheduled.lambda_handler({**run, "scheduledTime": "2026-12-01T06:15:00Z"}, context)["taskId"]
    table.update_item(Key={"taskId": second}, UpdateExpression="SET #s = :s",
                      ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":s": "SUCCEEDED"})  # fmt: skip
    third = scheduled.lambda_handler({**run, "scheduledTime": "2026-12-01T06:30:00Z"}, context)["taskId"]
    # Then the first offers nothing (no run before it), the second nothing (the first had not ended: its
    # rejects were not all known), and the third offers the second's
    assert [cloud.task(task_id).get("retryOf") for task_id in (first, second, third)] == [None, None, second]
