"""What a key under inbox/ says (busline_core.inbox): owner, pipeline and file; and which task a drop is."""

from __future__ import annotations

import pytest
from busline_core.errors import InvalidTask
from busline_core.inbox import Drop, DropAddress, address_of, owner_of_segment
from busline_core.source_access import owner_key_segment


@pytest.mark.parametrize("owner", ["7d3f6a2e-5b1c-4e8a-9f40-2c6b1d8e9a73", "a/../b", "ünïcode owner", "~tilde"])
def test_every_owner_reads_back_from_the_segment_its_uploads_use(owner: str) -> None:
    # Given an owner's key segment (plain, or ~base64url for any other id) / Then it reads back to the owner
    segment = owner_key_segment(owner)
    assert owner_of_segment(segment) == owner
    assert address_of(f"inbox/{segment}/flights/2026/01/jan.csv") == DropAddress(owner, "flights", "jan.csv")


@pytest.mark.parametrize("segment", ["~", "~!!", "~" + "YQ", "a.b", ""])
def test_a_segment_no_owner_spells_so_names_none(segment: str) -> None:
    # Given a segment that is not owner_key_segment's spelling of any owner ("~YQ" is "a", which is spelt "a")
    # Then it names no owner, and a key with it is refused naming the key
    assert owner_of_segment(segment) is None
    with pytest.raises(InvalidTask) as refused:
        address_of(f"inbox/{segment}/flights/a.csv")
    assert refused.value.errors[0]["field"] == "key"


def test_a_drop_is_one_task_per_version_or_per_sequencer_where_unversioned() -> None:
    # Given the same key with two versions, and an unversioned key changed twice
    first = Drop("inbox", "inbox/o/p/a.csv", "v1", "00A")
    # Then a version is one task whatever its sequencer, and another version another task
    assert first.task_id == Drop("inbox", "inbox/o/p/a.csv", "v1", "00B").task_id
    assert first.task_id != Drop("inbox", "inbox/o/p/a.csv", "v2", "00A").task_id
    # And without versions each change (sequencer) is its own task
    assert Drop("inbox", "inbox/o/p/a.csv", None, "00A").task_id != Drop("inbox", "inbox/o/p/a.csv", None, "00B").task_id
    assert Drop("inbox", "inbox/o/p/a.csv", None, "00A").task_id == Drop("inbox", "inbox/o/p/a.csv", None, "00A").task_id
