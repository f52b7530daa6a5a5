"""Pages of a listing: the default page sizes and the one page-token codec (the limits are limits.py's).

A token is the position where the next page starts, signed (HMAC-SHA256) together with the listing
it belongs to. The position is ours (a DynamoDB key, an S3 key and a line number), so a token a client
made up, edited, or copied from another owner's or another task's listing is refused as a 400: the
signature would not match. The key is a secret of the stack, never a parameter or variable.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import Any, Final

from .errors import InvalidPage
from .limits import MAX_PAGE_SIZE, MAX_TOKEN_LENGTH

DEFAULT_TASKS_PAGE: Final = 20
DEFAULT_REJECTS_PAGE: Final = 100


def check_limit(limit: int, field: str = "limit") -> None:
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidPage(field, f"must be between 1 and {MAX_PAGE_SIZE}, got {limit}")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class PageTokens:
    """Encodes a position as an opaque token bound to one listing, and decodes only its own tokens."""

    def __init__(self, key: bytes | Callable[[], bytes]) -> None:
        self._key_source = key

    @cached_property
    def _key(self) -> bytes:
        # Read on first use: a cold start that lists nothing never pays for the secret.
        return self._key_source if isinstance(self._key_source, bytes) else self._key_source()

    def _signature(self, listing: str, payload: bytes) -> bytes:
        return hmac.new(self._key, listing.encode() + b"\0" + payload, hashlib.sha256).digest()

    def encode(self, listing: str, position: Mapping[str, Any]) -> str:
        payload = json.dumps(dict(position), separators=(",", ":"), sort_keys=True).encode()
        return f"{_b64(payload)}.{_b64(self._signature(listing, payload))}"

    def decode(self, listing: str, token: str, field: str = "nextToken") -> dict[str, Any]:
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidPage(field, f"longer than {MAX_TOKEN_LENGTH} characters")
        try:
            encoded_payload, encoded_signature = token.split(".")
            payload, signature = _unb64(encoded_payload), _unb64(encoded_signature)
        except (ValueError, binascii.Error):
            raise InvalidPage(field, "not a token this API returned") from None
        if not hmac.compare_digest(signature, self._signature(listing, payload)):
            raise InvalidPage(field, "not a token this API returned for this listing")
        position = json.loads(payload)
        if not isinstance(position, dict):
            raise InvalidPage(field, "not a token this API returned")
        return position
