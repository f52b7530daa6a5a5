"""tenancy.schema_for: the one rule that names an owner's schema (the catalog itself is tested on Postgres
in tests/integration/test_warehouse.py)."""

from __future__ import annotations

import pytest
from busline_core.spec import IDENTIFIER_PATTERN
from busline_core.tenancy import owner_table, schema_for
from psycopg import sql


@pytest.mark.parametrize(
    ("owner", "schema"),
    [
        # a Cognito user's sub
        ("8b0f5c2e-1d7a-4c3e-9f60-2a4b6c8d0e1f", "t_9317b9cde9a5df1b1125d065"),
        # a machine app client's client_id
        ("4q8n2kq5u0s3v1c7r9t6m2p4ab", "t_b0962a6313e4d36026166acb"),
        # an owner longer than any identifier
        ("x" * 2000, "t_5c0e0ea421571c300b5df6ae"),
    ],
)
def test_each_owner_has_a_fixed_schema_name(owner: str, schema: str) -> None:
    # Given an owner / When its schema is named, twice
    # Then it is always the same name (pinned: changing the rule would orphan every owner's tables)
    assert schema_for(owner) == schema
    assert schema_for(owner) == schema


def test_schema_names_are_short_lower_case_identifiers_that_differ_per_owner() -> None:
    # Given 1,000 owners differing in one character, or in case only
    owners = [f"user-{n}" for n in range(500)] + [f"USER-{n}" for n in range(500)]
    # When their schemas are named
    schemas = [schema_for(owner) for owner in owners]
    # Then each is an identifier that needs no quoting, 26 characters long, and no two are alike
    assert [name for name in schemas if not IDENTIFIER_PATTERN.match(name)] == []
    assert {len(name) for name in schemas} == {26}
    assert len(set(schemas)) == 1_000


def test_an_owner_is_required() -> None:
    # Given no owner / When its schema is asked for / Then there is none
    with pytest.raises(ValueError, match="a task without an owner has no schema"):
        schema_for("")


def test_owner_table_qualifies_the_table_with_the_owners_schema() -> None:
    # Given an owner's table / When it is named for a query / Then it is "<the owner's schema>"."<table>"
    assert owner_table("local-user", "flights") == sql.Identifier("t_3477cdab157537bd83c95a3c", "flights")
