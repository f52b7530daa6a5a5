"""What REST and HTTP APIs share about Lambda proxy integrations: path templates and their matching,
binary media types, and the base64 bodies that carry binary content through JSON.

In a module of its own so both gateways depend on it rather than on each other.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any
from urllib.parse import unquote

# Hop-by-hop or framing headers are ours to set; a handler's copy would corrupt the response.
RESPONSE_HEADERS_WE_OWN = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})

_SEGMENT_LITERAL, _SEGMENT_PARAM, _SEGMENT_GREEDY = 2, 1, 0
_PARAM = re.compile(r"^\{([^{}+]+)\}$")
_GREEDY = re.compile(r"^\{([^{}+]+)\+\}$")


class BadProxyResponse(ValueError):
    """A function's result API Gateway cannot turn into an HTTP response (it answers 5xx)."""


def _segments(path: str) -> list[str]:
    return [segment for segment in path.split("/") if segment]


def match_template(template: str, path: str) -> tuple[dict[str, str], tuple[int, ...]] | None:
    """Path parameters and a sort key (literal > {param} > {proxy+}, segment by segment), or None."""
    template_segments = _segments(template)
    path_segments = _segments(path)
    parameters: dict[str, str] = {}
    kinds: list[int] = []
    for index, template_segment in enumerate(template_segments):
        greedy = _GREEDY.match(template_segment)
        if greedy:
            rest = path_segments[index:]
            if not rest:  # {proxy+} needs at least one segment, as on API Gateway
                return None
            parameters[greedy.group(1)] = unquote("/".join(rest))
            kinds.append(_SEGMENT_GREEDY)
            return parameters, tuple(kinds)
        if index >= len(path_segments):
            return None
        param = _PARAM.match(template_segment)
        if param:
            parameters[param.group(1)] = unquote(path_segments[index])
            kinds.append(_SEGMENT_PARAM)
        elif unquote(path_segments[index]) == template_segment:
            kinds.append(_SEGMENT_LITERAL)
        else:
            return None
    if len(path_segments) != len(template_segments):
        return None
    # A longer exact template beats a shorter one that only matched through a greedy tail.
    return parameters, tuple(kinds) + (3,)


def media_type(header: str | None) -> str:
    """`Type/Sub; charset=utf-8` -> `type/sub`; the first of a list (API Gateway honours only the first
    media type of an Accept header)."""
    first = (header or "").split(",", 1)[0]
    return first.split(";", 1)[0].strip().lower()


def matches_media_types(header: str | None, patterns: list[str]) -> bool:
    """Whether a Content-Type or Accept header names one of `patterns` (`image/png`, `image/*`, `*/*`)."""
    value = media_type(header)
    if not value:
        return False
    kind = value.split("/", 1)[0]
    for pattern in patterns:
        wanted = pattern.strip().lower()
        if wanted in ("*/*", value) or (wanted.endswith("/*") and wanted[:-2] == kind):
            return True
    return False


def encode_body(body: bytes, as_text: bool) -> tuple[str | None, bool]:
    """The event's `body` and `isBase64Encoded`: text when wanted and valid UTF-8, else base64 (JSON can
    carry no other bytes)."""
    if not body:
        return None, False
    if as_text:
        try:
            return body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode("ascii"), True


def decode_base64_body(body: str) -> bytes:
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise BadProxyResponse("isBase64Encoded is true but body is not base64") from None


def status_and_body(payload: dict[str, Any], decode_base64: bool = True) -> tuple[int, bytes]:
    """A proxy result's `statusCode` and `body`, checked as API Gateway checks them (REST and HTTP APIs)."""
    try:
        status = int(payload["statusCode"])
    except (TypeError, ValueError):
        raise BadProxyResponse(f"statusCode must be an integer, got {payload['statusCode']!r}") from None
    if not 100 <= status <= 599:
        raise BadProxyResponse(f"statusCode {status} is not an HTTP status")
    body = payload.get("body")
    if body is None:
        return status, b""
    if not isinstance(body, str):
        raise BadProxyResponse(f"body must be a string, got {type(body).__name__}")
    if payload.get("isBase64Encoded") and decode_base64:
        return status, decode_base64_body(body)
    return status, body.encode("utf-8")
