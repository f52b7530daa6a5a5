"""A request body read as strict JSON text, within the body limits of limits.py.

Python's json module accepts what JSON does not (NaN, Infinity, lone surrogates, duplicate keys, where
the last one silently wins) and fails with errors that are not decode errors on what is merely too big
(a RecursionError on deep nesting, a ValueError on a 5,000-digit integer, infinity for 1e400). A client
gets none of that: every body is either parsed or refused with `NotJsonText` naming the reason, or with
`RequestTooLarge` naming the byte limit, before anything looks at its content.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from typing import Any

from .errors import NotJsonText, RequestTooLarge
from .limits import MAX_BODY_BYTES, MAX_BODY_DEPTH, MAX_NUMBER_LENGTH

# A JSON string (escapes included) or a bracket; brackets inside strings are part of the string token.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
# One escape sequence of a string, so that an escaped backslash is never read as the start of \u.
_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|.)", re.DOTALL)


def parse(body: str | None, *, base64_encoded: bool = False) -> Any:
    """The JSON value of an API Gateway proxy event's body (None when there is none)."""
    text = _text(body, base64_encoded)
    if not text:
        return None
    _check_nesting_and_escapes(text)
    try:
        return json.loads(
            text,
            object_pairs_hook=_object,
            parse_float=_float,
            parse_int=_int,
            parse_constant=_constant,
        )
    except json.JSONDecodeError as error:
        raise NotJsonText(error.msg, error.pos) from None


def _too_large(size: int) -> RequestTooLarge:
    return RequestTooLarge("body", f"{size:,} bytes, over the limit of {MAX_BODY_BYTES:,} bytes")


def _text(body: str | None, base64_encoded: bool) -> str | None:
    if not body:
        return body
    if not base64_encoded:
        try:
            raw = body.encode("utf-8")
        except UnicodeEncodeError as error:
            raise NotJsonText("a character is a lone surrogate, not Unicode text", error.start) from None
        if len(raw) > MAX_BODY_BYTES:
            raise _too_large(len(raw))
        return body
    # Refused before decoding: base64 is 4 characters per 3 bytes.
    if len(body) > (MAX_BODY_BYTES + 2) // 3 * 4:
        raise _too_large(len(body) // 4 * 3)
    try:
        raw = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise NotJsonText("the body is marked as base64 but is not valid base64") from None
    if len(raw) > MAX_BODY_BYTES:
        raise _too_large(len(raw))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise NotJsonText(f"byte {error.start} is not UTF-8 (JSON text is UTF-8)", error.start) from None


def _check_nesting_and_escapes(text: str) -> None:
    depth = 0
    for token in _TOKEN.finditer(text):
        first = token.group()[0]
        if first in "[{":
            depth += 1
            if depth > MAX_BODY_DEPTH:
                raise NotJsonText(f"nested deeper than the limit of {MAX_BODY_DEPTH} levels", token.start())
        elif first in "]}":
            depth -= 1
        elif "\\u" in token.group():
            lone = _lone_surrogate(token.group())
            if lone is not None:
                raise NotJsonText("a \\u escape is half a surrogate pair, not a character", token.start() + lone)


def _lone_surrogate(string: str) -> int | None:
    """Where in `string` a \\u escape of half a UTF-16 pair stands without its other half, or None: alone it
    is no character, and it could be neither stored nor written as UTF-8."""
    high: re.Match[str] | None = None
    for escape in _ESCAPE.finditer(string):
        code = int(escape.group(1), 16) if escape.group(1) else -1
        if high is not None:
            if 0xDC00 <= code <= 0xDFFF and escape.start() == high.end():
                high = None
                continue
            return high.start()
        if 0xD800 <= code <= 0xDBFF:
            high = escape
        elif 0xDC00 <= code <= 0xDFFF:
            return escape.start()
    return None if high is None else high.start()


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise NotJsonText(f"the key {key!r} appears twice in one object")
        seen.add(key)
    return dict(pairs)


def _check_number_length(text: str) -> None:
    if len(text) > MAX_NUMBER_LENGTH:
        raise NotJsonText(f"a number of {len(text):,} characters, over the limit of {MAX_NUMBER_LENGTH}")


def _int(text: str) -> int:
    _check_number_length(text)
    return int(text)


def _float(text: str) -> float:
    _check_number_length(text)
    value = float(text)
    if not math.isfinite(value):
        raise NotJsonText(f"the number {text} is out of range (beyond a double's)")
    return value


def _constant(name: str) -> Any:
    raise NotJsonText(f"{name} is not a JSON value")
