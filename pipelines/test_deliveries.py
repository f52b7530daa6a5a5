"""The deliveries pipeline: its spec (tests/integration/app/test_schedules.py runs it on a schedule)."""

from __future__ import annotations

import pytest
from busline_core.pipelines import InvalidPipeline, expand_pipeline, registry
from pydantic import ValidationError


def test_deliveries_join_their_depot_and_commit_chunk_by_chunk_so_rejects_can_be_retried() -> None:
    spec = expand_pipeline("deliveries", {"feed": "north"}, "data-bucket")
    assert spec.source.uri == "s3://data-bucket/shared/north/deliveries.csv"
    assert [(join.uri, join.on, join.required) for join in spec.joins] == [
        ("s3://data-bucket/shared/north/depots.csv", {"depot": "depot"}, True)
    ]
    assert (spec.target.key, spec.target.mode, spec.target.commit) == (["id"], "upsert", "chunk")
    assert registry()["deliveries"].retry_rejects is True


def test_a_feed_is_one_folder_name() -> None:
    with pytest.raises((ValidationError, InvalidPipeline)):
        expand_pipeline("deliveries", {"feed": "../uploads"}, "data-bucket")
