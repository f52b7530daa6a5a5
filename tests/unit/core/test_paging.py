"""Page tokens: opaque, signed, bound to one listing; page limits in one place."""

from __future__ import annotations

import pytest
from busline_core.errors import InvalidPage
from busline_core.limits import MAX_PAGE_SIZE, MAX_TOKEN_LENGTH
from busline_core.paging import PageTokens, check_limit

TOKENS = PageTokens(b"key one")


def test_a_token_round_trips_within_its_listing() -> None:
    token = TOKENS.encode("tasks/ana", {"taskId": "t1", "owner": "ana", "createdAt": "2026-11-30T10:00:00.000Z"})
    assert TOKENS.decode("tasks/ana", token) == {
        "taskId": "t1",
        "owner": "ana",
        "createdAt": "2026-11-30T10:00:00.000Z",
    }


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("%%%not-base64%%%", "not a token this API returned"),
        ("e30", "not a token this API returned"),  # {} without a signature
        ("e30.AAAA", "not a token this API returned for this listing"),  # {} with a made-up signature
        ("x" * (MAX_TOKEN_LENGTH + 1), f"longer than {MAX_TOKEN_LENGTH} characters"),
    ],
)
def test_a_forged_token_is_an_invalid_page_naming_the_field(token: str, reason: str) -> None:
    with pytest.raises(InvalidPage) as refused:
        TOKENS.decode("tasks/ana", token)
    assert refused.value.errors == [{"field": "nextToken", "message": reason}]


def test_a_token_of_another_listing_or_key_is_refused() -> None:
    # Given a token of bob's listing
    token = TOKENS.encode("tasks/bob", {"taskId": "t9"})
    # When ana presents it, or the key changed / Then it is refused
    with pytest.raises(InvalidPage, match="for this listing"):
        TOKENS.decode("tasks/ana", token)
    with pytest.raises(InvalidPage, match="for this listing"):
        PageTokens(b"key two").decode("tasks/bob", token)


def test_an_edited_token_is_refused() -> None:
    payload, signature = TOKENS.encode("rejects/t1", {"k": "tasks/t1/rejects/000001.jsonl", "i": 5}).split(".")
    edited = TOKENS.encode("rejects/t1", {"k": "tasks/t1/rejects/000001.jsonl", "i": 6}).split(".")[0]
    with pytest.raises(InvalidPage):
        TOKENS.decode("rejects/t1", f"{edited}.{signature}")
    assert TOKENS.decode("rejects/t1", f"{payload}.{signature}")["i"] == 5


def test_the_key_is_read_once_and_only_when_needed() -> None:
    reads: list[int] = []

    def key() -> bytes:
        reads.append(1)
        return b"secret"

    tokens = PageTokens(key)
    assert reads == []
    token = tokens.encode("l", {"a": 1})
    assert tokens.decode("l", token) == {"a": 1}
    assert reads == [1]


@pytest.mark.parametrize("limit", [0, MAX_PAGE_SIZE + 1])
def test_a_limit_out_of_range_names_the_limit(limit: int) -> None:
    with pytest.raises(InvalidPage) as refused:
        check_limit(limit)
    assert refused.value.errors == [{"field": "limit", "message": f"must be between 1 and {MAX_PAGE_SIZE}, got {limit}"}]
