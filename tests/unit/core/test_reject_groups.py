"""reject_groups.py: each kind of reason the steps write splits into its group and the value at fault."""

from __future__ import annotations

import pytest
from busline_core.contracts import Reject
from busline_core.reject_groups import reason_group, summarize


@pytest.mark.parametrize(
    "reason, group, value",
    [
        ("column qty: 'x12' is not a valid int", "column qty: not a valid int", "'x12'"),
        ("column id: required value missing", "column id: required value missing", None),
        ("join airports: no match for dest=SJU", "join airports: no match for dest", "SJU"),
        ("join regions: no match for code=R1, tier=null", "join regions: no match", "code=R1, tier=null"),
        ("key (id, name): 3,000 bytes, over the limit of 2,000 (a Postgres index row holds 2,704)",
         "key (id, name): over the byte limit", "3,000"),
        ("insert: duplicate key (id=2), already in table t_0.orders", "insert: duplicate key, already in table", "id=2"),
        ("insert: duplicate key (id=2), earlier in this task's rows", "insert: duplicate key, earlier in this task's rows",
         "id=2"),
        ("something new", "something new", None),
    ],
)  # fmt: skip
def test_each_kind_of_reason_has_its_group_and_value(reason: str, group: str, value: str | None) -> None:
    assert reason_group(reason) == (group, value)


def test_groups_come_most_rows_first_with_at_most_five_values_each() -> None:
    # Given 7 distinct missing destinations (8 rows) and 2 missing ids
    reasons = [f"join airports: no match for dest={code}" for code in ["A", "A", "B", "C", "D", "E", "F", "G"]]
    reasons += ["column id: required value missing"] * 2
    # When summarized
    read, groups = summarize(Reject(row=n, reason=reason, data={}) for n, reason in enumerate(reasons))
    # Then the join group is first, showing A (2 rows) and then the next four in name order
    assert read == 10
    assert [(group.reason, group.rows, [(v.value, v.rows) for v in group.values]) for group in groups] == [
        ("join airports: no match for dest", 8, [("A", 2), ("B", 1), ("C", 1), ("D", 1), ("E", 1)]),
        ("column id: required value missing", 2, []),
    ]
