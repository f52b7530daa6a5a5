"""Pipelines as files on the local cloud: the API lists the pipelines/ folder's modules, and the airports
pipeline (one file of 20 lines with a hook) runs end to end through PipelinesLayer, as on AWS."""

from __future__ import annotations

import csv
from typing import Any

import psycopg
import pytest
from busline_core.tenancy import owner_table
from psycopg import sql

from busline.localcloud.demo import demo_data_dir

pytestmark = pytest.mark.integration


def test_the_api_lists_every_pipeline_of_the_folder_with_its_params(api: Any) -> None:
    # When the pipelines are listed
    listed = api.call("GET", "/pipelines")
    # Then the folder's three modules are there, with the JSON Schema of their params
    assert listed.status == 200, listed.text
    items = {item["name"]: item for item in listed.body["items"]}
    assert sorted(items) == ["airports", "deliveries", "flights"]
    assert sorted(items["flights"]["params"]["properties"]) == ["chunkRows", "limit", "table"]
    assert (items["airports"]["defaultTable"], items["airports"]["dashboard"]) == ("airports", [])
    assert items["flights"]["dashboard"] == ["departure_delay_by_carrier", "flights_per_month", "busiest_destinations"]


def test_a_pipeline_of_one_file_runs_end_to_end_with_its_hook(api: Any, cloud: Any) -> None:
    # Given the airports file, counted without the app: the hook leaves out those below sea level
    with (demo_data_dir() / "airports.csv").open(newline="", encoding="utf-8") as stream:
        altitudes = {row["faa"]: int(row["alt"]) for row in csv.DictReader(stream)}
    below = sum(1 for alt in altitudes.values() if alt < 0)
    # When the airports pipeline runs into a table of its own
    task_id = api.submit({"pipeline": "airports", "params": {"table": "airports_in_metres"}})
    final = api.wait_terminal(task_id)
    # Then it succeeded with exact counts
    assert (final["status"], final["error"]) == ("SUCCEEDED", None), final
    assert final["counts"] == {
        "read": len(altitudes), "filtered": below, "rejected": 0, "loaded": len(altitudes) - below, "deleted": 0,
    }  # fmt: skip
    # And the table holds each airport above sea level with the hook's altitude in metres
    table = owner_table(final["owner"], "airports_in_metres")
    with psycopg.connect(cloud.endpoints["postgres"]) as connection:
        loaded = dict(connection.execute(sql.SQL("SELECT faa, alt_m FROM {}").format(table)).fetchall())
    assert loaded == {faa: round(alt * 0.3048, 1) for faa, alt in altitudes.items() if alt >= 0}
