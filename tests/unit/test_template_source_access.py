"""template.yaml's S3 rights match the source rule (source_access.py): the functions that read sources may
read the owner's uploads, shared/ and the ReadableBuckets, and write only their own task chunks; the API
may put under uploads/ (presigned uploads) and nothing more.

The translated roles are resolved with the local cloud's resolver, for an empty and for a two-bucket
ReadableBuckets, so what is checked is the policy CloudFormation would create.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from busline.localcloud.intrinsics import Resolver, resolve_parameters
from busline.localcloud.model import ProvisionedResource
from busline.localcloud.template import load_and_translate

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
DATA = "arn:aws:s3:::busline-data"


@pytest.fixture(scope="module")
def cfn(monkeypatch_module: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch_module.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return load_and_translate(TEMPLATE, "us-east-1")


@pytest.fixture(scope="module")
def monkeypatch_module() -> Any:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def s3_rights(cfn: dict[str, Any], role: str, readable_buckets: str) -> dict[str, set[str]]:
    """S3 action -> resources, over every statement of `role`, with ReadableBuckets=`readable_buckets`."""
    resolver = Resolver(
        resolve_parameters(cfn["Parameters"], {"ReadableBuckets": readable_buckets}),
        {"DataBucket": ProvisionedResource("DataBucket", "AWS::S3::Bucket", "busline-data")},
        "us-east-1",
        conditions=cfn.get("Conditions", {}),
    )
    rights: dict[str, set[str]] = {}
    for policy in cfn["Resources"][role]["Properties"]["Policies"]:
        if "s3" not in str(policy).lower():
            continue  # other services' policies reference resources this resolver does not know
        # resolved inside a list, which drops an Fn::If that resolves to AWS::NoValue, as CloudFormation does
        statements = [item for resolved in resolver.resolve([policy], role) for item in resolved["PolicyDocument"]["Statement"]]
        for statement in statements:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            assert statement["Effect"] == "Allow"
            if "Condition" in statement:  # shown with the resource it narrows
                condition = json.dumps(statement["Condition"], sort_keys=True)
                resources = [f"{resource} if {condition}" for resource in resources]
            for action in actions:
                if action.startswith("s3:"):
                    rights.setdefault(action, set()).update(resources)
    return rights


def test_extract_reads_only_uploads_shared_and_its_own_output_and_writes_only_raw_chunks(cfn: dict[str, Any]) -> None:
    # Given no ReadableBuckets / Then the extract function's S3 rights are exactly these: it reads back, resumes
    # or aborts only what it writes under tasks/*/extract/ (raw chunks, a staged copy of a source), and reads
    # kept rejects (a scheduled run offers the previous run's again)
    own_output = f"{DATA}/tasks/*/extract/*"
    assert s3_rights(cfn, "ExtractFunctionRole", "") == {
        "s3:GetObject": {f"{DATA}/uploads/*", f"{DATA}/shared/*", own_output, f"{DATA}/tasks/*/rejects/*"},
        "s3:ListBucket": {DATA},
        "s3:PutObject": {own_output},
        "s3:ListMultipartUploadParts": {own_output},
        "s3:AbortMultipartUpload": {own_output},
        "s3:DeleteObject": {own_output},  # its own chunks, of a task cancelled while it ran
    }


def test_transform_reads_joins_and_raw_chunks_and_writes_typed_chunks_and_rejects(cfn: dict[str, Any]) -> None:
    assert s3_rights(cfn, "TransformFunctionRole", "") == {
        "s3:GetObject": {f"{DATA}/uploads/*", f"{DATA}/shared/*", f"{DATA}/tasks/*/extract/*"},
        "s3:ListBucket": {DATA},
        "s3:PutObject": {f"{DATA}/tasks/*/transform/*", f"{DATA}/tasks/*/rejects/*"},
        "s3:DeleteObject": {f"{DATA}/tasks/*/transform/*"},  # its typed chunk, of a task cancelled meanwhile
    }


@pytest.mark.parametrize("role", ["ExtractFunctionRole", "TransformFunctionRole"])
def test_listed_buckets_add_object_reads_of_those_buckets_only(cfn: dict[str, Any], role: str) -> None:
    # Given two ReadableBuckets / Then the function may also get their objects, and nothing else changes
    without = s3_rights(cfn, role, "")
    listed = s3_rights(cfn, role, "partner-drops,open-data")
    assert listed["s3:GetObject"] - without["s3:GetObject"] == {"arn:aws:s3:::partner-drops/*", "arn:aws:s3:::open-data/*"}
    assert {action: resources for action, resources in listed.items() if action != "s3:GetObject"} == {
        action: resources for action, resources in without.items() if action != "s3:GetObject"
    }


def test_the_api_reads_only_rejects_and_may_presign_puts_under_uploads_only(cfn: dict[str, Any]) -> None:
    rights = s3_rights(cfn, "ApiFunctionRole", "")
    assert rights == {
        "s3:GetObject": {f"{DATA}/tasks/*/rejects/*"},
        "s3:ListBucket": {f'{DATA} if {{"StringLike": {{"s3:prefix": "tasks/*/rejects/*"}}}}'},
        "s3:PutObject": {f"{DATA}/uploads/*"},
    }


def test_load_reads_typed_chunks_writes_refused_rows_and_deletes_a_cancelled_tasks_chunks(cfn: dict[str, Any]) -> None:
    assert s3_rights(cfn, "LoadFunctionRole", "") == {
        "s3:GetObject": {f"{DATA}/tasks/*/transform/*"},
        "s3:PutObject": {f"{DATA}/tasks/*/rejects/*"},
        "s3:DeleteObject": {f"{DATA}/tasks/*/extract/*", f"{DATA}/tasks/*/transform/*"},
        "s3:ListBucket": {f'{DATA} if {{"StringLike": {{"s3:prefix": ["tasks/*/extract/*", "tasks/*/transform/*"]}}}}'},
    }


def test_the_api_gets_the_readable_buckets_in_its_environment(cfn: dict[str, Any]) -> None:
    variables = cfn["Resources"]["ApiFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["READABLE_BUCKETS"] == {"Fn::Join": [",", {"Ref": "ReadableBuckets"}]}
