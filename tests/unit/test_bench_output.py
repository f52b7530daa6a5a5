"""The performance doc's figures say what they are made of."""

from __future__ import annotations

from busline.bench.output import _calls_per_chunk


def test_calls_per_chunk_name_the_functions_share_and_the_pollers_share() -> None:
    # Given the flights run's recorded calls: 210 by the functions, 95 by Lambda's pollers, over 17 chunks
    calls = {"total": 305, "perChunk": 17.9, "byOrigin": {"function": 210, "eventSource": 95, "emulation": 5}}

    # When the doc's row is written
    row = _calls_per_chunk(calls, 17)

    # Then both shares are in it, and the local cloud's own calls are in neither
    assert row == "17.90: the functions' code 12.35, Lambda's pollers 5.59"


def test_calls_per_chunk_without_attribution_is_the_bare_figure() -> None:
    assert _calls_per_chunk({"perChunk": 17.9}, 17) == "17.90"
