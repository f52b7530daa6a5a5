"""make bench's AWS call-latency section (issue 14, point 2): the same loops against any endpoint."""

from __future__ import annotations

import pytest

from busline.bench import call_latency
from busline.localcloud.moto_speed import make_moto_calls_fast
from busline.localcloud.testing import moto_server


def test_the_section_times_the_four_calls_and_compares_them_with_ministack(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a moto server as the local cloud runs it, a short loop, and no MiniStack installed
    make_moto_calls_fast()
    monkeypatch.setattr(call_latency, "LOOPS", 5)
    monkeypatch.setattr(call_latency, "ministack_command", lambda: None)
    with moto_server() as endpoint:
        # When the loops run against it
        ours = call_latency.measure(endpoint)
        report = call_latency.section(ours)
    # Then each call has a median, and the comparison is to the MiniStack figures, said so
    assert sorted(ours) == ["dynamodbPut", "putEvents", "sqsReceiveDelete", "sqsSend"]
    assert all(isinstance(value, float) for value in ours.values())
    assert report["ministackMs"] == {"sqsSend": 3.6, "sqsReceiveDelete": 7.5, "dynamodbPut": 3.6, "putEvents": 3.7}
    assert report["ministackSource"].startswith("issue 14's figures")
    assert set(report["atOrBelowMinistack"]) == set(call_latency.CALLS)
