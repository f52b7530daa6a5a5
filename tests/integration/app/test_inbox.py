"""Files dropped in the inbox start tasks, on the local cloud of template.yaml: a CSV put under alice's
inbox/<alice>/airports/ in InboxBucket is delivered by S3's notification to InboxFunction, which runs the airports
pipeline over it as alice; the same object version delivered again starts nothing more."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import boto3
import psycopg
import pytest
from busline_core.bus import EventPublisher
from busline_core.deps import ScheduledRunDeps
from busline_core.inbox import Drop, InboxDeps, start_tasks
from busline_core.inbox_store import InboxStore
from busline_core.tasks_repo import TasksRepository
from busline_core.tenancy import owner_table
from psycopg import sql

from busline.localcloud.testing import RunningCloud

pytestmark = pytest.mark.integration

RECORDED_S = 60.0  # S3 -> InboxFunction (a cold start on a busy box) -> the task recorded


def owner_of(api: Any) -> str:
    """The `sub` of the API user's access token: the owner its tasks run as."""
    payload = api.token.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"])


def recorded(api: Any, task_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + RECORDED_S
    while True:
        response = api.call("GET", f"/tasks/{task_id}")
        if response.status == 200:
            return dict(response.body)
        assert response.status == 404, response.text
        assert time.monotonic() < deadline, f"no task {task_id} after {RECORDED_S} s"
        time.sleep(0.5)


def aws(cloud: RunningCloud, service: Any) -> Any:
    endpoints = cloud.endpoints
    return boto3.client(service, endpoint_url=endpoints["aws"], region_name=endpoints["region"],
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def test_a_csv_dropped_in_alices_inbox_runs_her_pipeline_once_per_version(
    cloud: RunningCloud, api: Any, s3: Any, data_bucket: str
) -> None:
    # Given three airports, one of them below sea level (the airports pipeline's hook leaves those out)
    run = uuid.uuid4().hex[:6].upper()
    codes = [f"{run[:3]}{n}" for n in range(3)]
    csv = "faa,name,alt,tzone\n" + "".join(
        f"{code},Field {code},{alt},America/New_York\n" for code, alt in zip(codes, (100, -5, 20), strict=True))
    owner = owner_of(api)
    inbox = cloud.endpoints["outputs"]["InboxBucketName"]
    key = f"inbox/{owner}/airports/drop {run}.csv"

    # When alice's CSV is put under her inbox's airports folder
    put = s3.put_object(Bucket=inbox, Key=key, Body=csv.encode())

    # Then S3's notification starts her airports task, which succeeds with exact counts
    task_id = Drop(bucket=inbox, key=key, version_id=put["VersionId"], sequencer="").task_id
    assert recorded(api, task_id)["pipeline"] == "airports"
    final = api.wait_terminal(task_id)
    assert (final["status"], final["error"], final["owner"]) == ("SUCCEEDED", None, owner), final
    assert final["counts"] == {"read": 3, "filtered": 1, "rejected": 0, "loaded": 2, "deleted": 0}
    # And her airports table holds the two above sea level, with the hook's altitude in metres
    with psycopg.connect(cloud.endpoints["postgres"]) as connection:
        rows = connection.execute(
            sql.SQL("SELECT faa, alt_m FROM {} WHERE faa = ANY(%s) ORDER BY faa").format(owner_table(owner, "airports")),
            (codes,),
        ).fetchall()
    assert rows == [(codes[0], 30.5), (codes[2], 6.1)]

    # When S3's event for the same version is delivered once more
    deps = InboxDeps(
        submit=ScheduledRunDeps(
            tasks=TasksRepository(boto3.resource(
                "dynamodb", endpoint_url=cloud.endpoints["aws"], region_name=cloud.endpoints["region"],
                aws_access_key_id="testing", aws_secret_access_key="testing",
            ).Table(cloud.endpoints["outputs"]["TasksTableName"])),
            publisher=EventPublisher(aws(cloud, "events"), cloud.endpoints["outputs"]["EventBusName"]),
            data_bucket=data_bucket,
        ),
        store=InboxStore(aws(cloud, "s3"), data_bucket),
    )
    tasks_before = len(api.all_tasks())
    outcomes = start_tasks([Drop(bucket=inbox, key=key, version_id=put["VersionId"], sequencer="")], deps)

    # Then it names the same task, which stays as it ended, and alice has no new task
    assert outcomes == [{"key": key, "taskId": task_id}]
    again = api.task(task_id)
    assert {field: again[field] for field in ("status", "counts", "createdAt", "updatedAt")} == {
        field: final[field] for field in ("status", "counts", "createdAt", "updatedAt")}
    assert len(api.all_tasks()) == tasks_before
