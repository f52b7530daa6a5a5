"""ChaosConfig: parsing, seeded rolls, counting."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from busline.localcloud.chaos import ChaosConfig


def test_parse_reads_every_kind_and_describes_itself() -> None:
    chaos = ChaosConfig.parse("duplicate=0.3, fail=0.2,timeout=0.05,kill=0.02", seed=7)
    assert (chaos.duplicate, chaos.fail, chaos.timeout, chaos.kill) == (0.3, 0.2, 0.05, 0.02)
    assert chaos.enabled()
    assert chaos.describe() == "chaos: duplicate=0.3 fail=0.2 timeout=0.05 kill=0.02 (seed 7)"


def test_empty_spec_is_off() -> None:
    chaos = ChaosConfig.parse("")
    assert not chaos.enabled()
    assert chaos.describe() == "chaos: off"
    assert [chaos.roll(kind) for kind in ("duplicate", "fail", "timeout", "kill")] == [False] * 4


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("explode=0.1", "unknown chaos kind 'explode'"),
        ("fail=abc", "chaos rate for 'fail' must be a number"),
        ("timeout=1.5", "chaos rate for 'timeout' must be between 0 and 1"),
        ("kill=-0.1", "chaos rate for 'kill' must be between 0 and 1"),
        ("duplicate", "chaos item 'duplicate' must look like kind=rate"),
        ("fail=0.1,fail=0.2", "chaos kind 'fail' is given twice"),
    ],
)
def test_parse_errors_name_the_key(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ChaosConfig.parse(spec)


def test_same_seed_gives_same_rolls() -> None:
    first = ChaosConfig.parse("fail=0.5", seed=42)
    second = ChaosConfig.parse("fail=0.5", seed=42)
    assert [first.roll("fail") for _ in range(50)] == [second.roll("fail") for _ in range(50)]


def test_rates_one_and_zero_always_and_never_inject() -> None:
    chaos = ChaosConfig.parse("duplicate=1", seed=3)
    assert [chaos.roll("duplicate") for _ in range(20)] == [True] * 20
    assert [chaos.roll("kill") for _ in range(20)] == [False] * 20


def test_seeded_rate_is_roughly_respected() -> None:
    chaos = ChaosConfig.parse("timeout=0.25", seed=11)
    hits = sum(chaos.roll("timeout") for _ in range(4000))
    assert 900 <= hits <= 1100


def test_record_counts_per_kind_and_writes_the_file(tmp_path: Path) -> None:
    # Given chaos with a stats file attached
    chaos = ChaosConfig.parse("duplicate=0.1", seed=1)
    stats_file = tmp_path / "chaos.json"
    chaos.attach_stats_file(stats_file)

    # When injections are recorded from several threads
    def record_many() -> None:
        for _ in range(100):
            chaos.record("duplicate")
        chaos.record("kill")

    threads = [threading.Thread(target=record_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then every one is counted, in memory and on disk
    expected = {"duplicate": 400, "fail": 0, "timeout": 0, "kill": 4}
    assert chaos.stats() == expected
    assert json.loads(stats_file.read_text()) == expected


def test_unknown_kind_in_roll_or_record_is_an_error() -> None:
    chaos = ChaosConfig()
    with pytest.raises(ValueError, match="'slow'"):
        chaos.roll("slow")
    with pytest.raises(ValueError, match="'slow'"):
        chaos.record("slow")
