"""Rejected rows grouped by kind of reason, for a summary a person can read before the rows themselves:
"join airports: no match for dest — 7,561 rows; BQN 1,200, SJU 900, …".

A reason is one line of text made where the row was refused (transform.py: casts, required values, joins,
key sizes; warehouse.py: an insert's duplicate keys). The patterns below split each kind into its group
and the value at fault; a reason none of them knows is a group of its own.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from .contracts import Reject, RejectGroup, RejectValueCount
from .limits import REJECT_SUMMARY_VALUES

# (pattern, group template): the group is the reason without its value; `value` is what is shown per row.
_KINDS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^column (?P<column>\S+): (?P<value>.*) is not a valid (?P<type>\S+)$"), "column {column}: not a valid {type}"),
    (re.compile(r"^join (?P<join>\S+): no match for (?P<column>[^=,]+)=(?P<value>[^,]*)$"), "join {join}: no match for {column}"),
    (re.compile(r"^join (?P<join>\S+): no match for (?P<value>.+)$"), "join {join}: no match"),
    (re.compile(r"^key \((?P<key>[^)]*)\): (?P<value>[\d,]+) bytes, over the limit.*$"), "key ({key}): over the byte limit"),
    (re.compile(r"^insert: duplicate key \((?P<value>.*)\), (?P<where>already in table|earlier in this task's rows).*$"),
     "insert: duplicate key, {where}"),
]  # fmt: skip


def reason_group(reason: str) -> tuple[str, str | None]:
    """(group, value at fault) of one reject's reason."""
    for pattern, template in _KINDS:
        match = pattern.match(reason)
        if match:
            fields = match.groupdict()
            return template.format(**fields), fields.get("value")
    return reason, None


def summarize(rejects: Iterable[Reject]) -> tuple[int, list[RejectGroup]]:
    """How many rejects were read, and their groups, most rows first (ties by reason)."""
    rows: Counter[str] = Counter()
    values: dict[str, Counter[str]] = {}
    read = 0
    for reject in rejects:
        read += 1
        group, value = reason_group(reject.reason)
        rows[group] += 1
        if value is not None:
            values.setdefault(group, Counter())[value] += 1
    groups = [
        RejectGroup(
            reason=group,
            rows=count,
            values=[
                RejectValueCount(value=value, rows=n)
                for value, n in sorted(values.get(group, Counter()).items(), key=lambda item: (-item[1], item[0]))[
                    :REJECT_SUMMARY_VALUES
                ]
            ],
        )
        for group, count in sorted(rows.items(), key=lambda item: (-item[1], item[0]))
    ]
    return read, groups
