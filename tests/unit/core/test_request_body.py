"""request_body.py: a request body is strict JSON text within the body limits, or refused naming why."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from busline_core.errors import NotJsonText, RequestTooLarge
from busline_core.limits import MAX_BODY_BYTES, MAX_BODY_DEPTH, MAX_NUMBER_LENGTH
from busline_core.request_body import parse


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    ("body", "base64_encoded", "reason", "position"),
    [
        (_b64(b'{"pipeline": "fl\xffights"}'), True, "byte 16 is not UTF-8 (JSON text is UTF-8)", 16),
        # a surrogate encoded as UTF-8 bytes (CESU-8) is not UTF-8 either
        (_b64(b'{"p": "\xed\xa0\x80"}'), True, "byte 7 is not UTF-8 (JSON text is UTF-8)", 7),
        ("!!!not base64", True, "the body is marked as base64 but is not valid base64", None),
        ("e30", True, "the body is marked as base64 but is not valid base64", None),  # padding missing
        ('{"p": "\ud800"}', False, "a character is a lone surrogate, not Unicode text", 7),
        ('{"pipeline": "\\ud800"}', False, "a \\u escape is half a surrogate pair, not a character", 14),
        ('{"p": "\\udc00"}', False, "a \\u escape is half a surrogate pair, not a character", 7),
        ('{"p": "\\udc00\\ud800"}', False, "a \\u escape is half a surrogate pair, not a character", 7),
        ('{"p": "\\ud800x\\udc00"}', False, "a \\u escape is half a surrogate pair, not a character", 7),
        ('{"p": "ab\\ud83d"}', False, "a \\u escape is half a surrogate pair, not a character", 9),
        ("[" * 10_000 + "]" * 10_000, False, "nested deeper than the limit of 16 levels", 16),
        ('{"a": ' * 10_000 + "1" + "}" * 10_000, False, "nested deeper than the limit of 16 levels", 96),
        ('{"n": 1e400}', False, "the number 1e400 is out of range (beyond a double's)", None),
        ('{"n": -1e400}', False, "the number -1e400 is out of range (beyond a double's)", None),
        ('{"n": 1' + "0" * 5000 + "}", False, "a number of 5,001 characters, over the limit of 100", None),
        ('{"n": NaN}', False, "NaN is not a JSON value", None),
        ('{"n": Infinity}', False, "Infinity is not a JSON value", None),
        ('{"n": -Infinity}', False, "-Infinity is not a JSON value", None),
        ('{"pipeline": "flights", "pipeline": "nope"}', False, "the key 'pipeline' appears twice in one object", None),
        ("\ufeff{}", False, "Unexpected UTF-8 BOM (decode using utf-8-sig)", 0),
        ("{} x", False, "Extra data", 3),
        ("   ", False, "Expecting value", 3),
        ('{"p": "a\nb"}', False, "Invalid control character at", 8),
    ],
    ids=[
        "invalid-utf8", "utf8-encoded-surrogate", "not-base64", "base64-without-padding", "raw-lone-surrogate",
        "escaped-lone-high-surrogate", "escaped-lone-low-surrogate", "reversed-pair", "pair-split-by-text",
        "high-surrogate-at-end", "10000-deep-arrays", "10000-deep-objects", "1e400", "-1e400",
        "5000-digit-integer", "NaN", "Infinity", "-Infinity", "duplicate-key", "byte-order-mark",
        "trailing-garbage", "whitespace-only", "raw-newline-in-string",
    ],
)
def test_a_body_that_is_not_json_text_is_refused_naming_why_and_where(
    body: str, base64_encoded: bool, reason: str, position: int | None
) -> None:
    # Given a body that is not JSON text / When it is parsed
    with pytest.raises(NotJsonText) as refused:
        parse(body, base64_encoded=base64_encoded)
    # Then the reason and the offset (where known) are named
    assert (refused.value.reason, refused.value.position) == (reason, position)
    assert refused.value.message == f"body: not JSON text: {reason}"


@pytest.mark.parametrize(
    ("body", "value"),
    [
        ('{"p": "x\\ud83d\\ude00"}', {"p": "x\U0001f600"}),  # a surrogate pair is one character
        ('{"p": "\\\\ud800"}', {"p": "\\ud800"}),  # an escaped backslash, then the text ud800
        ('{"p": "[[[[[[[[[[[[[[[[[[[[{{{{{{{{{{{{{{{{{{"}', {"p": "[" * 20 + "{" * 18}),  # brackets in a string
        ("[" * MAX_BODY_DEPTH + "]" * MAX_BODY_DEPTH, json.loads("[" * MAX_BODY_DEPTH + "]" * MAX_BODY_DEPTH)),
        ('{"n": ' + "9" * MAX_NUMBER_LENGTH + "}", {"n": int("9" * MAX_NUMBER_LENGTH)}),
        ('{"n": 1e-400, "m": -0.5, "k": 1E3}', {"n": 0.0, "m": -0.5, "k": 1000.0}),  # underflow is just 0
        ('{"a": {"a": 1}, "b": [{"a": 2}, {"a": 3}]}', {"a": {"a": 1}, "b": [{"a": 2}, {"a": 3}]}),
        ("", None),
        (None, None),
    ],
    ids=[
        "surrogate-pair", "escaped-backslash", "brackets-in-a-string", "depth-at-the-limit",
        "number-at-the-limit", "finite-floats", "same-key-in-different-objects", "empty", "absent",
    ],
)
def test_json_text_within_the_limits_parses_as_json_loads_would(body: str | None, value: Any) -> None:
    assert parse(body) == value


def test_a_base64_body_is_decoded_as_utf8() -> None:
    # Given a binary-flagged body holding UTF-8 JSON / When it is parsed / Then its value comes back
    assert parse(_b64('{"name": "Zürich"}'.encode()), base64_encoded=True) == {"name": "Zürich"}


def test_a_body_over_the_byte_limit_is_refused_unparsed_naming_the_limit() -> None:
    # Given a body of exactly the limit (in UTF-8 bytes) and one a byte over, both valid JSON
    at_limit = '{"p": "' + "é" * ((MAX_BODY_BYTES - 9) // 2) + '"}'
    assert len(at_limit.encode()) == MAX_BODY_BYTES - 1
    over = at_limit[:-2] + 'xx"}'
    assert len(over.encode()) == MAX_BODY_BYTES + 1
    # When both are parsed
    assert parse(at_limit) == json.loads(at_limit)
    with pytest.raises(RequestTooLarge) as refused:
        parse(over)
    # Then the bigger one is refused naming its size and the limit
    assert refused.value.errors == [{"field": "body", "message": "131,073 bytes, over the limit of 131,072 bytes"}]


def test_a_base64_body_over_the_byte_limit_is_refused_before_decoding() -> None:
    # Given 2 MB of base64 / When it is parsed / Then it is too large, with the decoded size
    with pytest.raises(RequestTooLarge) as refused:
        parse(_b64(b" " * 2_000_001), base64_encoded=True)
    assert refused.value.errors == [{"field": "body", "message": "2,000,001 bytes, over the limit of 131,072 bytes"}]
