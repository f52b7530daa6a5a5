"""KEY=VALUE items, as `--param`, `--chaos` and the pipeline parameters are written on a command line."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any


def split_pairs(items: Iterable[str], example: str = "KEY=VALUE", noun: str = "") -> dict[str, str]:
    """{key: value} of `key=value` items (keys stripped); a ValueError names the item that is not one
    (`noun` says what an item or a key is called in the message: "chaos" -> "chaos item", "chaos kind")."""
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"{noun} item {item!r} must look like {example}".lstrip())
        if key in pairs:
            raise ValueError(f"{noun} kind {key!r} is given twice" if noun else f"{key!r} is given twice")
        pairs[key] = value
    return pairs


def json_scalar(text: str) -> Any:
    """A value that reads as a JSON number, boolean or null becomes one; anything else stays text."""
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        return text
    return parsed if isinstance(parsed, int | float | bool) or parsed is None else text
