"""Schedules on the local cloud: POST /schedules creates an EventBridge Scheduler schedule in moto, the
local cloud's scheduler fires it on time (the suite's schedule clock runs 60x: tests/conftest.py), and
each firing runs the pipeline as the schedule's owner, once, saying which schedule started it."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from busline_core.tenancy import owner_table
from psycopg import sql

from busline.localcloud.demo import demo_data_dir

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
FIRING_TIMEOUT_S = 60.0


def scheduled_runs(api: Any, schedule_id: str) -> list[dict[str, Any]]:
    return sorted(
        (task for task in api.all_tasks() if (task.get("scheduledBy") or {}).get("scheduleId") == schedule_id),
        key=lambda task: task["scheduledBy"]["scheduledTime"],
    )


def test_a_schedule_fires_twice_as_its_owner_and_stops_when_deleted(api: Any, bob: Any, cloud: Any) -> None:
    # Given the airports file, counted without the app: the pipeline's hook leaves out those below sea level
    with (demo_data_dir() / "airports.csv").open(newline="", encoding="utf-8") as stream:
        altitudes = [int(row["alt"]) for row in csv.DictReader(stream)]
    above = sum(1 for alt in altitudes if alt >= 0)

    # When alice schedules airports every 5 minutes (every 5 s on this cloud's 60x schedule clock)
    created = api.call("POST", "/schedules", {
        "pipeline": "airports", "params": {"table": "airports_scheduled"}, "expression": "rate(5 minutes)",
        "timezone": "UTC", "description": "twice", "notifyEmail": "alice@example.com",
    })
    assert created.status == 201, created.text
    schedule_id = created.body["scheduleId"]
    # Then it is listed with its next runs 5 minutes apart, to her only
    listed = api.call("GET", "/schedules").body["items"]
    assert [(item["scheduleId"], item["pipeline"], item["expression"]) for item in listed] == [
        (schedule_id, "airports", "rate(5 minutes)")
    ]
    next_runs = [dt.datetime.fromisoformat(run.replace("Z", "+00:00")) for run in listed[0]["nextRuns"]]
    assert [later - earlier for earlier, later in zip(next_runs, next_runs[1:], strict=False)] == [
        dt.timedelta(minutes=5)
    ] * 2
    assert bob.call("GET", f"/schedules/{schedule_id}").status == 404
    assert bob.call("GET", "/schedules").body == {"items": []}

    # When it has fired twice (at once, then one scaled period later)
    deadline = time.monotonic() + FIRING_TIMEOUT_S
    while len(runs := scheduled_runs(api, schedule_id)) < 2:
        assert time.monotonic() < deadline, f"{len(runs)} run(s) after {FIRING_TIMEOUT_S} s"
        time.sleep(0.5)

    # Then the two runs are hers, due 5 minutes apart, and each loaded every airport above sea level
    finals = [api.wait_terminal(run["taskId"]) for run in runs[:2]]
    assert [(final["status"], final["owner"], final["pipeline"]) for final in finals] == [
        ("SUCCEEDED", runs[0]["owner"], "airports")
    ] * 2
    due = [dt.datetime.fromisoformat(final["scheduledBy"]["scheduledTime"].replace("Z", "+00:00")) for final in finals]
    assert due[1] - due[0] == dt.timedelta(minutes=5)
    assert [final["counts"]["loaded"] for final in finals] == [above, above]
    # and the table holds each airport once (the second run upserted the same keys)
    with psycopg.connect(cloud.endpoints["postgres"]) as connection:
        table = owner_table(finals[0]["owner"], "airports_scheduled")
        assert connection.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone() == (above,)
    # And alice's address was mailed once per run, and only for these runs (its subscription is filtered
    # to the schedule); the stack's address (NotificationEmail) got them too
    outbox = cloud.data_dir / "outbox"
    mailed = [json.loads(line) for line in (outbox / "alice@example.com.jsonl").read_text().splitlines()]
    run_ids = {run["taskId"] for run in scheduled_runs(api, schedule_id)}
    assert [mail for mail in mailed if not any(f"#task={task_id}" in mail["body"] for task_id in run_ids)] == []
    mails = [mail for mail in mailed if any(f"#task={final['taskId']}" in mail["body"] for final in finals)]
    assert [mail["subject"] for mail in mails] == ["Busline airports SUCCEEDED"] * 2
    web = cloud.endpoints["web"]
    # (the duration is the one measured figure: its line is checked for its form, every other exactly)
    bodies = sorted([line for line in mail["body"].splitlines() if not line.startswith("Duration: ")] for mail in mails)
    assert bodies == sorted(
        [
            "Pipeline: airports",
            "Status: SUCCEEDED",
            f"Rows: {len(altitudes):,} read, {len(altitudes) - above:,} filtered, 0 rejected, {above:,} loaded, 0 deleted",
            f"Started by schedule {schedule_id}, due {final['scheduledBy']['scheduledTime']}",
            f"Task: {web}/#task={final['taskId']}",
        ]
        for final in finals
    )
    assert all(re.fullmatch(r"Duration: \d+\.\d s", mail["body"].splitlines()[3]) for mail in mails)
    operator = (outbox / "ops@example.com.jsonl").read_text()
    assert all(f"#task={final['taskId']}" in operator for final in finals)

    # When she deletes it
    assert api.call("DELETE", f"/schedules/{schedule_id}").status == 204
    time.sleep(1.5)  # the local scheduler reads deletions every second; a firing under way may still submit
    started_by_then = len(scheduled_runs(api, schedule_id))
    # Then it is gone and starts nothing more for longer than a period (5 s here)
    assert api.call("GET", "/schedules").body == {"items": []}
    time.sleep(6)
    assert len(scheduled_runs(api, schedule_id)) == started_by_then


def test_a_bad_schedule_is_400_naming_the_field(api: Any) -> None:
    # When a schedule with a five-field cron is posted
    refused = api.call("POST", "/schedules", {"pipeline": "airports", "expression": "cron(0 6 * * *)"})
    # Then it is a 400 naming the expression, and nothing is created
    assert refused.status == 400, refused.text
    assert [error["field"] for error in refused.body["errors"]] == ["expression"]
    assert api.call("GET", "/schedules").body == {"items": []}


def busline(cloud: Any, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "busline.cli.main", *args, "--endpoints", str(cloud.data_dir / "endpoints.json")],
        capture_output=True, text=True, timeout=60, cwd=REPO,
        env={**os.environ, "COLUMNS": "250", "NO_COLOR": "1", "BUSLINE_TOKENS": str(tmp_path / "tokens.json")},
    )  # fmt: skip


def test_busline_schedule_creates_lists_and_deletes_the_demo_users_schedules(cloud: Any, tmp_path: Path) -> None:
    # When the demo user schedules airports once, at 06:00 on 1 January 2030 in Paris, from the terminal
    created = busline(cloud, tmp_path, "schedule", "create", "airports", "at(2030-01-01T06:00:00)",
                      "--timezone", "Europe/Paris", "--param", "table=airports_cli", "--description", "new year")  # fmt: skip
    # Then it prints the schedule's id, and its one run: 05:00 UTC
    assert created.returncode == 0, created.stdout + created.stderr
    schedule_id = created.stdout.strip()
    assert len(schedule_id) == 12
    assert created.stderr.strip() == "next run: 2030-01-01T05:00:00Z"
    # When the schedules are listed
    listed = busline(cloud, tmp_path, "schedule", "list")
    # Then its row says what runs, when and where
    assert listed.returncode == 0, listed.stdout + listed.stderr
    (row,) = [line for line in listed.stdout.splitlines() if schedule_id in line]
    cells = [cell.strip() for cell in row.strip("│ ").split("│")]
    assert cells == [schedule_id, "airports", "table=airports_cli", "at(2030-01-01T06:00:00)", "Europe/Paris",
                     "2030-01-01T05:00:00Z", "new year"]  # fmt: skip
    # When it is deleted, and deleted again
    deleted = busline(cloud, tmp_path, "schedule", "delete", schedule_id)
    again = busline(cloud, tmp_path, "schedule", "delete", schedule_id)
    # Then the first says so and the second is refused as not found
    assert (deleted.returncode, deleted.stdout.strip()) == (0, f"Schedule {schedule_id} deleted")
    assert (again.returncode, again.stderr.strip()) == (1, f"schedule {schedule_id} not found")
    assert schedule_id not in busline(cloud, tmp_path, "schedule", "list").stdout


def test_the_next_run_offers_the_rejects_again_and_recovers_the_ones_fixed_meanwhile(
    api: Any, cloud: Any, s3: Any, data_bucket: str
) -> None:
    # Given a feed of the deliveries pipeline: two depots, and six deliveries of which two go to depot D3,
    # not yet in depots.csv
    feed = f"retry-{uuid.uuid4().hex[:8]}"

    def put(name: str, text: str) -> None:
        s3.put_object(Bucket=data_bucket, Key=f"shared/{feed}/{name}", Body=text.encode())

    put("depots.csv", "depot,city\nD1,Leeds\nD2,York\n")
    put("deliveries.csv", "id,depot,parcels\n1,D1,3\n2,D2,1\n3,D3,4\n4,D1,2\n5,D3,5\n6,D2,1\n")
    table = f"deliveries_{feed.replace('-', '_')}"
    # When alice schedules it every 15 minutes (15 s here): the pipeline retries rejects unless told not to
    created = api.call("POST", "/schedules", {
        "pipeline": "deliveries", "params": {"feed": feed, "table": table}, "expression": "rate(15 minutes)",
    })
    assert created.status == 201, created.text
    assert created.body["retryRejects"] is True
    schedule_id = created.body["scheduleId"]
    try:
        # Then the first run loads four and rejects the two for D3 (nothing before it to offer again)
        deadline = time.monotonic() + FIRING_TIMEOUT_S
        while not (runs := scheduled_runs(api, schedule_id)):
            assert time.monotonic() < deadline, "no first run"
            time.sleep(0.3)
        first = api.wait_terminal(runs[0]["taskId"])
        assert (first["status"], first["retried"]) == ("SUCCEEDED", None), first
        assert first["counts"] == {"read": 6, "filtered": 0, "rejected": 2, "loaded": 4, "deleted": 0}
        # When D3 is added to depots.csv and the next day's file has three deliveries, one to an unknown D4
        put("depots.csv", "depot,city\nD1,Leeds\nD2,York\nD3,Hull\n")
        put("deliveries.csv", "id,depot,parcels\n7,D1,2\n8,D3,1\n9,D4,6\n")
        deadline = time.monotonic() + FIRING_TIMEOUT_S
        while len(runs := scheduled_runs(api, schedule_id)) < 2:
            assert time.monotonic() < deadline, "no second run"
            time.sleep(0.5)
        second = api.wait_terminal(runs[1]["taskId"])
    finally:
        api.call("DELETE", f"/schedules/{schedule_id}")
    # Then the second run loaded its source's two good rows, and recovered both of the first run's rejects
    assert second["status"] == "SUCCEEDED", second
    assert second["counts"] == {"read": 3, "filtered": 0, "rejected": 1, "loaded": 2, "deleted": 0}
    assert second["retried"] == {"of": first["taskId"], "offered": 2, "recovered": 2, "rejectedAgain": 0}
    # and keeps the D4 delivery as its one reject, for the run after it to offer again
    rejects = api.all_rejects(second["taskId"])
    assert [(reject["data"]["id"], reject["reason"]) for reject in rejects] == [
        ("9", rejects[0]["reason"])
    ]
    assert "depot" in rejects[0]["reason"]
    # And the table holds each delivery once, the recovered ones with their depot's city
    with psycopg.connect(cloud.endpoints["postgres"]) as connection:
        rows = connection.execute(
            sql.SQL("SELECT id, depot_city FROM {} ORDER BY id").format(owner_table(first["owner"], table))
        ).fetchall()
    assert rows == [(1, "Leeds"), (2, "York"), (3, "Hull"), (4, "Leeds"), (5, "Hull"), (6, "York"), (7, "Leeds"),
                    (8, "Hull")]  # fmt: skip
