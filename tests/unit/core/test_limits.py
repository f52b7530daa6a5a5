"""limits.py is the one home of the limits: each says why, and the README's table shows each value."""

from __future__ import annotations

import re
from pathlib import Path

from busline_core import limits

REPO = Path(__file__).resolve().parents[3]
LIMITS_SOURCE = Path(limits.__file__).read_text()


def _declared() -> dict[str, int]:
    return {name: value for name, value in vars(limits).items() if name.isupper()}


def test_every_limit_is_an_int_with_its_reason_above_it() -> None:
    # Given the source of limits.py
    lines = LIMITS_SOURCE.splitlines()
    # Then each limit is an int, and the line above it (or above its group) is a comment saying why
    unexplained = []
    for name, value in _declared().items():
        assert isinstance(value, int), name
        index = next(i for i, line in enumerate(lines) if line.startswith(f"{name}: Final = "))
        while lines[index - 1].split(":")[0].isupper():
            index -= 1  # MIN_ and MAX_ of one thing share their reason
        if not lines[index - 1].startswith("# "):
            unexplained.append(name)
    assert unexplained == []


def test_the_readmes_limits_table_shows_every_value() -> None:
    # Given the README's Limits section
    readme = (REPO / "README.md").read_text()
    section = readme.split("\n## Limits\n", 1)[1].split("\n## ", 1)[0]
    # Then every value of limits.py appears in it, written as the table writes numbers
    missing = {
        name: f"{value:,}" for name, value in _declared().items() if not re.search(rf"\b{re.escape(f'{value:,}')}\b", section)
    }
    assert missing == {}
