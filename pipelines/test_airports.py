"""The airports pipeline: its spec, and its hook over a batch (tests/integration/app runs it end to end)."""

from __future__ import annotations

from busline_core.pipelines import expand_pipeline, registry

from pipelines.airports import metres


def test_airports_expands_to_a_spec_of_the_shared_file_keyed_by_faa() -> None:
    spec = expand_pipeline("airports", {}, "demo-data")
    assert spec.source.uri == "s3://demo-data/shared/nycflights13/airports.csv"
    assert [column.name for column in spec.columns] == ["faa", "name", "alt", "tzone", "alt_m"]
    assert (spec.target.table, spec.target.key, spec.target.mode) == ("airports", ["faa"], "upsert")
    assert registry()["airports"].hook is metres


def test_the_hook_gives_metres_and_leaves_out_airports_below_sea_level() -> None:
    rows = [{"faa": "JFK", "alt": 13, "alt_m": None}, {"faa": "DEN", "alt": 5431, "alt_m": None},
            {"faa": "LOW", "alt": -54, "alt_m": None}]  # fmt: skip
    assert metres(rows) == [{"faa": "JFK", "alt": 13, "alt_m": 4.0}, {"faa": "DEN", "alt": 5431, "alt_m": 1655.4}]
