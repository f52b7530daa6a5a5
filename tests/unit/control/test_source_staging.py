"""A compressed source is copied into the data bucket, inflated, by a multipart upload that pauses before its
invocation runs out of time and resumes in the next; the copy is then read in byte ranges, and the task ends
exactly as when one reader streams the same rows out of the plain CSV."""

from __future__ import annotations

import contextlib
import gzip
import io
import time
import zipfile
from pathlib import Path
from typing import Any

import moto.s3.models
import pytest
from busline_core import etl_steps, staging, task_api
from busline_core.contracts import Reject, TaskStatus, TaskSubmitted
from busline_core.limits import MAX_DECOMPRESSED_BYTES
from busline_core.spec import SourceSpec
from busline_core.storage import ChunkStore

from .conftest import BUCKET, Clock, Cloud, FakeWarehouse, RecordingPusher, Wired, wire
from .test_steps import _flights_csv, _of_type, _spec

ROWS = 25_000  # 559,718 bytes of CSV
CHUNK_ROWS = 5_000
FILTERED, REJECTED = 2_500, 1_000 + 500  # see test_range_planning
LOADED = ROWS - FILTERED - REJECTED
# Small parts so a 560 KB source makes several: 4 full parts of 128 KiB and a last one of 35,430 bytes.
# S3 (and moto) refuse parts under 5 MiB but the last; staging.PART_BYTES is 16 MiB, checked below.
TEST_PART_BYTES = 128 * 1024


@pytest.fixture
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(staging, "PART_BYTES", TEST_PART_BYTES)
    monkeypatch.setattr(staging, "STAGE_FROM_BYTES", 64 * 1024)
    monkeypatch.setattr(moto.s3.models, "S3_UPLOAD_PART_MIN_SIZE", TEST_PART_BYTES)


@pytest.fixture
def sources(cloud: Cloud, clock: Clock, warehouse: FakeWarehouse, pusher: RecordingPusher) -> Wired:
    text = _flights_csv(ROWS).encode()
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as packed:
        packed.writestr("big.csv", text)
    cloud.s3.put_object(Bucket=BUCKET, Key="uploads/ana/big.csv", Body=text)
    cloud.s3.put_object(Bucket=BUCKET, Key="uploads/ana/big.csv.gz", Body=gzip.compress(text))
    cloud.s3.put_object(Bucket=BUCKET, Key="uploads/ana/big.csv.zip", Body=archive.getvalue())
    cloud.s3.put_object(
        Bucket=BUCKET, Key="shared/ref/carriers.csv", Body=b"code,name\nAA,American\nBB,Blue Sky\n"
    )
    return wire(cloud, clock, warehouse, pusher)


def _submit(deps: Wired, cloud: Cloud, key: str, table: str, **source: Any) -> str:
    spec = _spec(key)
    spec["source"].update(source)
    spec["target"] = {"table": table, "key": ["id"]}
    spec["chunkRows"] = CHUNK_ROWS
    task_id = task_api.submit_task(spec, "ana", deps.api).taskId
    cloud.published_events()
    return task_id


class Seconds:
    """A Lambda context's remaining time that ends after `parts` parts: staging pauses then."""

    def __init__(self, parts: int) -> None:
        self.calls = 0
        self.parts = parts

    def __call__(self) -> float:
        self.calls += 1
        return 900.0 if self.calls < self.parts else 1.0


def _extract_until_planned(
    cloud: Cloud, deps: Wired, task_id: str, *, parts_per_invocation: int | None, deliveries: int = 1,
    paused_type: str = "SourceStagingPaused",
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Run extract on the TaskSubmitted, then on each pause (`paused_type`) it publishes, as the extract queue
    would (each `deliveries` times); returns the pauses and the ChunkExtracted events. `parts_per_invocation`
    is how many times an invocation finds time left (parts staged, or chunks read)."""
    pauses: list[dict[str, Any]] = []
    extracted: list[dict[str, Any]] = []
    details = [TaskSubmitted(taskId=task_id)]
    while details:
        for detail in details:
            for _ in range(deliveries):
                if parts_per_invocation is not None:
                    deps.extract.remaining_seconds = Seconds(parts_per_invocation)
                etl_steps.run_step(etl_steps.extract_task, detail, deps.extract)
        events = cloud.published_events()
        extracted += _of_type(events, "ChunkExtracted")
        paused = _of_type(events, paused_type)
        pauses += paused
        details = [TaskSubmitted.model_validate(pause) for pause in paused]
    return pauses, extracted


def _finish(cloud: Cloud, deps: Wired, extracted: list[dict[str, Any]]) -> None:
    for detail in extracted:
        etl_steps.run_step(
            etl_steps.transform_chunk, etl_steps.ChunkExtracted.model_validate(detail), deps.transform
        )
    for detail in _of_type(cloud.published_events(), "ChunkTransformed"):
        etl_steps.run_step(etl_steps.load_chunk, etl_steps.ChunkTransformed.model_validate(detail), deps.load)
    for detail in _of_type(cloud.published_events(), "PhaseCompleted"):
        if detail["phase"] == "load":
            etl_steps.run_step(etl_steps.load_step, etl_steps.PhaseCompleted.model_validate(detail), deps.load)
    cloud.published_events()


def _rejects(deps: Wired, task_id: str) -> list[Reject]:
    items, _ = deps.api.chunks.iter_rejects(task_id, 10_000)
    return items


def _assert_succeeded(deps: Wired, task_id: str, chunks: int) -> None:
    state = deps.api.tasks.get(task_id)
    assert state is not None
    assert (state.status, state.error) == (TaskStatus.SUCCEEDED, None)
    assert state.counts.model_dump() == {
        "read": ROWS,
        "filtered": FILTERED,
        "rejected": REJECTED,
        "loaded": LOADED,
        "deleted": 0,
    }
    assert (state.extract.total, state.transform.done, state.load.done) == (chunks, chunks, chunks)


@pytest.mark.parametrize("key", ["uploads/ana/big.csv.gz", "uploads/ana/big.csv.zip"])
def test_a_compressed_source_is_staged_in_paused_parts_then_read_in_ranges_like_the_plain_csv(
    cloud: Cloud, sources: Wired, warehouse: FakeWarehouse, small_parts: None, key: str
) -> None:
    # Given the same 25,000 rows as a plain CSV (read in ranges where it is) and compressed
    plain = _submit(sources, cloud, "uploads/ana/big.csv", "plain")
    packed = _submit(sources, cloud, key, "packed")
    # When extract runs on the compressed one with time for one part per invocation
    pauses, extracted = _extract_until_planned(cloud, sources, packed, parts_per_invocation=1)
    # Then it paused after each of the 4 full parts, and the 5th completed the copy
    assert [pause["staging"]["stagedBytes"] for pause in pauses] == [
        TEST_PART_BYTES * n for n in (1, 2, 3, 4)
    ]
    assert len({pause["staging"]["uploadId"] for pause in pauses}) == 1
    staged_key = f"tasks/{packed}/extract/source.csv"
    copy = cloud.s3.get_object(Bucket=BUCKET, Key=staged_key)["Body"].read()
    assert copy == _flights_csv(ROWS).encode()
    # And the copy was planned in the 3 ranges the plain CSV makes, reading the copy
    assert [(e["rows"], e["range"]["start"], e["range"]["staged"]) for e in extracted] == [
        (0, 0, staged_key), (0, 262_144, staged_key), (0, 524_288, staged_key),
    ]  # fmt: skip
    # And both tasks end alike: counts, rows and rejects
    _, plain_extracted = _extract_until_planned(cloud, sources, plain, parts_per_invocation=None)
    _finish(cloud, sources, plain_extracted)
    _finish(cloud, sources, extracted)
    _assert_succeeded(sources, plain, 3)
    _assert_succeeded(sources, packed, 3)
    assert len(warehouse.tables["packed"]) == LOADED
    assert warehouse.tables["packed"] == warehouse.tables["plain"]
    assert [(r.reason, r.data, r.at) for r in _rejects(sources, packed)] == [
        (r.reason, r.data, r.at) for r in _rejects(sources, plain)
    ]


def test_every_pause_delivered_twice_still_ends_exactly_once(
    cloud: Cloud, sources: Wired, warehouse: FakeWarehouse, small_parts: None
) -> None:
    # Given a gzip source staged with time for two parts per invocation
    task_id = _submit(sources, cloud, "uploads/ana/big.csv.gz", "packed")
    # When the TaskSubmitted and every pause are delivered twice (idempotency records aside: the step re-runs)
    pauses, extracted = _extract_until_planned(cloud, sources, task_id, parts_per_invocation=2, deliveries=2)
    # Then the two first deliveries started two uploads, each paused after 2 parts. The first delivery of the
    # first upload's pause paused again after 2 more parts; the second, finding those 4 parts uploaded, went
    # on from there, completed the copy and planned it. Every later delivery found extract completed.
    assert [pause["staging"]["stagedBytes"] for pause in pauses] == [2 * TEST_PART_BYTES] * 2 + [
        4 * TEST_PART_BYTES
    ]
    assert len({pause["staging"]["uploadId"] for pause in pauses}) == 2
    assert [event["chunk"] for event in extracted] == [0, 1, 2]
    # And the task counts each range once
    _finish(cloud, sources, extracted)
    _assert_succeeded(sources, task_id, 3)
    assert len(warehouse.tables["packed"]) == LOADED


def test_a_small_compressed_source_is_parsed_in_place_without_a_copy(cloud: Cloud, sources: Wired) -> None:
    # Given a gzip that inflates to 560 KB, under STAGE_FROM_BYTES (1 MiB)
    task_id = _submit(sources, cloud, "uploads/ana/big.csv.gz", "packed")
    # When extract runs
    pauses, extracted = _extract_until_planned(cloud, sources, task_id, parts_per_invocation=None)
    # Then one reader parsed it into 5 raw chunks, and nothing was copied
    assert pauses == []
    assert [event["rows"] for event in extracted] == [CHUNK_ROWS] * 5
    listed = cloud.s3.list_objects_v2(Bucket=BUCKET, Prefix=f"tasks/{task_id}/extract/source")
    assert listed["KeyCount"] == 0


@pytest.mark.parametrize(
    ("uri", "fmt", "extra", "staged"),
    [
        ("s3://b/k.csv.gz", "csv", {}, True),
        ("s3://b/k.ndjson.zip", "ndjson", {}, True),
        (
            "https://example.com/k.csv",
            "csv",
            {},
            True,
        ),  # copied: Range support and an unchanged file not assumed
        ("https://example.com/k.csv.gz", "csv", {}, True),
        ("s3://b/k.csv", "csv", {}, False),  # read in ranges where it is
        ("s3://b/k.json.gz", "json", {}, False),  # a JSON array: one reader
        ("s3://b/k.csv.gz", "csv", {"multilineFields": True}, False),
        ("s3://b/k.csv.gz", "csv", {"limit": 10}, False),
    ],
)
def test_which_sources_are_staged(uri: str, fmt: str, extra: dict[str, Any], staged: bool) -> None:
    # Given a source / When staging judges it / Then only a splittable one no range reads where it is is staged
    assert staging.must_stage(SourceSpec.model_validate({"uri": uri, "format": fmt, **extra})) is staged


def test_parts_respect_s3s_multipart_limits() -> None:
    # Given S3's multipart limits (5 MiB per part but the last, 10,000 parts)
    # Then a part is at least 5 MiB and the largest source allowed inflated fits in 10,000 parts
    assert staging.PART_BYTES >= 5 * 1024 * 1024
    assert MAX_DECOMPRESSED_BYTES / staging.PART_BYTES <= 10_000


def test_a_plain_csv_on_an_http_server_is_copied_then_read_in_ranges(
    cloud: Cloud,
    sources: Wired,
    warehouse: FakeWarehouse,
    small_parts: None,
    loopback_files: tuple[str, Path],
) -> None:
    # Given the 25,000 rows served over plain http on loopback (the local cloud's AllowLoopbackHttpSources)
    base, folder = loopback_files
    (folder / "big.csv").write_bytes(_flights_csv(ROWS).encode())
    sources.api.allow_loopback_http = sources.extract.allow_loopback_http = True
    spec = _spec()
    spec["source"] = {"uri": f"{base}/big.csv", "format": "csv"}
    spec["target"] = {"table": "served", "key": ["id"]}
    spec["chunkRows"] = CHUNK_ROWS
    task_id = task_api.submit_task(spec, "ana", sources.api).taskId
    cloud.published_events()
    # When extract runs with all the time it needs
    pauses, extracted = _extract_until_planned(cloud, sources, task_id, parts_per_invocation=None)
    # Then the server's file was copied whole in one invocation and read from the copy in 3 ranges
    assert pauses == []
    assert [event["range"]["staged"] for event in extracted] == [f"tasks/{task_id}/extract/source.csv"] * 3
    _finish(cloud, sources, extracted)
    _assert_succeeded(sources, task_id, 3)
    assert len(warehouse.tables["served"]) == LOADED


def test_a_gzip_cut_short_fails_its_task_for_good_and_leaves_no_upload(
    cloud: Cloud, sources: Wired, small_parts: None
) -> None:
    # Given a gzip of the 25,000 rows missing its last 1,000 bytes (the cut falls after the first parts)
    whole = gzip.compress(_flights_csv(ROWS).encode())
    cloud.s3.put_object(Bucket=BUCKET, Key="uploads/ana/cut.csv.gz", Body=whole[:-1000])
    task_id = _submit(sources, cloud, "uploads/ana/cut.csv.gz", "cut")
    # When extract copies it
    pauses, extracted = _extract_until_planned(cloud, sources, task_id, parts_per_invocation=None)
    # Then the task failed in extract, naming the source and why, with nothing announced
    state = sources.api.tasks.get(task_id)
    assert state is not None and state.error is not None
    assert (state.status, state.error_terminal, state.error.phase.value) == (TaskStatus.FAILED, True, "extract")
    assert state.error.message == (
        f"source s3://{BUCKET}/uploads/ana/cut.csv.gz is unreadable: cannot read the stream: "
        "Compressed file ended before the end-of-stream marker was reached"
    )
    assert (pauses, extracted) == ([], [])
    # And the copy's upload was aborted: no object, no upload left behind
    assert cloud.s3.list_objects_v2(Bucket=BUCKET, Prefix=f"tasks/{task_id}/")["KeyCount"] == 0
    assert cloud.s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


class _TurnTakingS3:
    """An S3 client whose part uploads each wait (up to `patience_s`) for the source to be read past the
    part: an upload that waited in vain shows the copy reading and uploading in turn, not at once."""

    def __init__(self, s3: Any, source: io.BytesIO, patience_s: float) -> None:
        self._s3 = s3
        self._source = source
        self._source_bytes = len(source.getbuffer())
        self._patience_s = patience_s
        self._uploaded_bytes = 0
        self.waited_in_vain: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s3, name)

    def upload_part(self, **request: Any) -> Any:
        self._uploaded_bytes += len(request["Body"])
        deadline = time.monotonic() + self._patience_s
        while self._source.tell() <= self._uploaded_bytes < self._source_bytes:
            if time.monotonic() > deadline:
                self.waited_in_vain.append(request["PartNumber"])
                break
            time.sleep(0.005)
        return self._s3.upload_part(**request)


def test_the_next_part_is_read_while_the_last_one_uploads(
    cloud: Cloud, small_parts: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a source of 4 full parts and a short fifth, and part uploads that wait for the source to be read on
    text = _flights_csv(ROWS).encode()
    source = io.BytesIO(text)
    s3 = _TurnTakingS3(cloud.s3, source, patience_s=2.0)
    monkeypatch.setattr(staging, "open_source", lambda *_args, **_kwargs: contextlib.nullcontext(source))
    spec = SourceSpec.model_validate({"uri": "s3://b/big.csv.gz", "format": "csv"})
    # When the source is staged
    outcome = staging.stage_source(
        "task-1", spec, ChunkStore(s3, BUCKET), allow_loopback_http=False, remaining_seconds=lambda: 900.0
    )
    # Then every upload saw the source read on while it was under way, and the copy is the source
    assert s3.waited_in_vain == []
    assert isinstance(outcome, staging.Staged)
    assert outcome.size == len(text) == 559_718
    assert cloud.s3.get_object(Bucket=BUCKET, Key=outcome.key)["Body"].read() == text
