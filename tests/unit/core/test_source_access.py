"""source_access: which sources and joins an owner's task may name (pure, no AWS, no DNS)."""

from __future__ import annotations

from typing import Any

import pytest
from busline_core.errors import InvalidTask
from busline_core.source_access import SourceAccess, owner_key_segment, parse_bucket_list, upload_prefix
from busline_core.spec import TaskSpec

DATA = "busline-data"
ALICE = "0c5b2f6e-8a31-4c1e-9d3a-2f7b6a1e4d90"  # Cognito subs are UUIDs
BOB = "7e2d9c41-1b6f-4a8e-b3d5-90c8e2f1a6b7"
ACCESS = SourceAccess.of(DATA, ["partner-drops", "open-data"])


def spec(source: str, *joins: str) -> TaskSpec:
    body: dict[str, Any] = {
        "source": {"uri": source, "format": "csv"},
        "columns": [{"name": "id", "type": "int"}, {"name": "code", "type": "string"}],
        "joins": [
            {"name": f"j{index}", "uri": uri, "on": {"code": "code"}, "columns": [{"name": "label", "as": f"label{index}"}]}
            for index, uri in enumerate(joins)
        ],
        "target": {"table": "orders", "key": ["id"]},
    }
    return TaskSpec.model_validate(body)


def refused_fields(task: TaskSpec, owner: str, access: SourceAccess = ACCESS) -> list[str]:
    try:
        access.check(task, owner)
    except InvalidTask as error:
        return [entry["field"] for entry in error.errors]
    return []


def test_alice_may_read_her_own_upload() -> None:
    # Given a spec reading an object under uploads/<alice>/ / When alice submits it / Then nothing is refused
    assert refused_fields(spec(f"s3://{DATA}/uploads/{ALICE}/5f0c/orders.csv"), ALICE) == []


def test_bob_reading_alices_upload_is_refused_naming_source_uri() -> None:
    # Given the same spec / When bob submits it
    with pytest.raises(InvalidTask) as raised:
        ACCESS.check(spec(f"s3://{DATA}/uploads/{ALICE}/5f0c/orders.csv"), BOB)
    # Then exactly source.uri is named, with what bob may read instead
    assert raised.value.errors == [
        {
            "field": "source.uri",
            "message": f"'s3://{DATA}/uploads/{ALICE}/5f0c/orders.csv' is another owner's upload; a task may read "
            f"s3://{DATA}/uploads/{BOB}/… (your uploads, see POST /uploads) and s3://{DATA}/shared/…, "
            "and any object in open-data, partner-drops",
        }
    ]
    assert raised.value.message.startswith("invalid task: source.uri: ")


def test_a_join_reading_a_tasks_chunks_is_refused_naming_that_join() -> None:
    # Given an allowed source and a first join that names another task's raw chunk
    task = spec(f"s3://{DATA}/shared/nycflights13/airports.csv", f"s3://{DATA}/tasks/9b1e/extract/000000.jsonl.gz")
    # When alice submits it / Then only joins[0].uri is named
    assert refused_fields(task, ALICE) == ["joins[0].uri"]


def test_every_refused_uri_is_listed_at_once() -> None:
    # Given a refused source, an allowed first join and a refused second join
    task = spec(f"s3://{DATA}/tasks/x/extract/000000.jsonl.gz", f"s3://{DATA}/shared/a.csv", "s3://elsewhere/b.csv")
    # When bob submits it / Then both refused fields are named, in order
    assert refused_fields(task, BOB) == ["source.uri", "joins[1].uri"]


def test_the_shared_prefix_is_readable_by_everyone() -> None:
    task = spec(f"s3://{DATA}/shared/nycflights13/flights.csv.zip", f"s3://{DATA}/shared/nycflights13/airlines.csv")
    assert refused_fields(task, ALICE) == []
    assert refused_fields(task, BOB) == []


def test_a_listed_bucket_is_readable_whole() -> None:
    assert refused_fields(spec("s3://partner-drops/2026/11/orders.csv", "s3://open-data/codes.csv"), BOB) == []


def test_any_other_bucket_is_refused() -> None:
    # Given a bucket nobody listed / When read / Then refused, naming the bucket
    with pytest.raises(InvalidTask) as raised:
        ACCESS.check(spec("s3://someone-elses-bucket/orders.csv"), ALICE)
    assert raised.value.errors[0]["field"] == "source.uri"
    assert raised.value.errors[0]["message"].startswith("bucket 'someone-elses-bucket' is not readable by tasks; ")
    # And with no listed buckets, only the data bucket's two prefixes are readable
    bare = SourceAccess.of(DATA)
    assert refused_fields(spec("s3://partner-drops/orders.csv"), ALICE, bare) == ["source.uri"]
    assert refused_fields(spec(f"s3://{DATA}/shared/a.csv"), ALICE, bare) == []


@pytest.mark.parametrize(
    ("key", "owner"),
    [
        ("orders.csv", ALICE),  # the bucket's root
        ("uploads/orders.csv", ALICE),  # uploads/ itself, no owner
        (f"uploads/{ALICE}", ALICE),  # the prefix without the slash ...
        (f"uploads/{ALICE}x/orders.csv", ALICE),  # ... or an owner whose id starts like alice's
        (f"uploads/{BOB}/../{ALICE}/orders.csv", BOB),  # a '..' step, even starting in bob's own prefix
        (f"uploads/{ALICE}//orders.csv", ALICE),  # an empty step
        ("shared/./a.csv", ALICE),
        ("sharedx/a.csv", ALICE),
    ],
)
def test_keys_outside_the_two_prefixes_are_refused(key: str, owner: str) -> None:
    assert refused_fields(spec(f"s3://{DATA}/{key}"), owner) == ["source.uri"]


def test_percent_escapes_are_judged_as_the_extract_step_reads_them() -> None:
    # Given URIs whose key is written with escapes (readers.py unquotes them before GetObject)
    escaped = f"s3://{DATA}/uploads%2F{ALICE}%2Forders.csv"
    # Then they mean alice's upload: hers to read, not bob's
    assert refused_fields(spec(escaped), ALICE) == []
    assert refused_fields(spec(escaped), BOB) == ["source.uri"]
    assert refused_fields(spec(f"s3://{DATA}/uploads/{BOB}/%2E%2E/{ALICE}/orders.csv"), BOB) == ["source.uri"]


def test_listing_the_data_bucket_does_not_open_it_whole() -> None:
    # Given an operator who lists the data bucket among the readable buckets
    access = SourceAccess.of(DATA, [DATA, "partner-drops"])
    # Then tasks/ and other owners' uploads are still refused
    assert access.readable_buckets == frozenset({"partner-drops"})
    assert refused_fields(spec(f"s3://{DATA}/tasks/t/extract/000000.jsonl.gz"), BOB, access) == ["source.uri"]
    assert refused_fields(spec(f"s3://{DATA}/uploads/{ALICE}/orders.csv"), BOB, access) == ["source.uri"]


def test_http_sources_are_judged_by_the_address_rule_with_the_stacks_setting() -> None:
    # Given a public https source, a loopback http join and an https join on a private address
    task = spec("https://example.com/orders.csv", "http://127.0.0.1:8000/codes.csv", "https://10.0.0.1/more.csv")
    # When a deployed stack checks it
    with pytest.raises(InvalidTask) as raised:
        ACCESS.check(task, BOB)
    # Then both joins are refused naming the field and why; the public https source passes
    assert raised.value.errors == [
        {"field": "joins[0].uri", "message": "plain http:// is not allowed on this stack; use https://"},
        {"field": "joins[1].uri", "message": "the address is private; Busline reads only from public hosts"},
    ]
    # When the local cloud checks it (AllowLoopbackHttpSources) / Then only the private address is refused
    assert refused_fields(task, BOB, SourceAccess.of(DATA, allow_loopback_http=True)) == ["joins[1].uri"]


def test_plain_owners_are_their_own_key_segment() -> None:
    assert upload_prefix(ALICE) == f"uploads/{ALICE}/"
    assert owner_key_segment("4vd1k0hq3rm5t8b2c6e9f7g0a1") == "4vd1k0hq3rm5t8b2c6e9f7g0a1"  # an app client id
    assert owner_key_segment("local-user") == "local-user"


@pytest.mark.parametrize("owner", ["a/../b", "..", ".", "a/b", "~x", "-x", "a b", "ä", "", "x" * 129])
def test_other_owners_are_encoded_into_one_segment_of_their_own(owner: str) -> None:
    # Given an owner string that is not a plain id
    segment = owner_key_segment(owner)
    # Then it becomes one segment with no '/' or '.', marked so no plain owner can have it
    assert segment.startswith("~")
    assert "/" not in segment
    assert "." not in segment
    assert upload_prefix(owner) == f"uploads/{segment}/"


def test_an_encoded_owner_reads_only_its_own_uploads() -> None:
    # Given the owner "a/../b", whose raw string would point at uploads/b/
    owner = "a/../b"
    # Then uploads/b/ (and a literal uploads/a/../b/) are refused, and its encoded prefix is allowed
    assert refused_fields(spec(f"s3://{DATA}/uploads/b/orders.csv"), owner) == ["source.uri"]
    assert refused_fields(spec(f"s3://{DATA}/uploads/a/../b/orders.csv"), owner) == ["source.uri"]
    assert refused_fields(spec(f"s3://{DATA}/{upload_prefix(owner)}f/orders.csv"), owner) == []
    # And two such owners never share a segment
    assert len({owner_key_segment(name) for name in ["a/../b", "a/..b", "a/../b ", "A/../b"]}) == 4


def test_the_bucket_list_setting() -> None:
    assert parse_bucket_list("") == ()
    assert parse_bucket_list(" partner-drops, ,open-data ,") == ("partner-drops", "open-data")
