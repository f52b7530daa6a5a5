"""The AWS shared config every function worker gets: S3 uploads over the local cloud's http are sent as
botocore sends them to AWS over https, with a checksum and no SHA-256 of the body."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import boto3
import pytest

from busline.localcloud.testing import moto_server
from busline.localcloud.worker import FUNCTION_AWS_CONFIG

BODY = b"flight,carrier\n" * 70_000


def _upload_headers(endpoint: str) -> dict[str, str]:
    """The headers botocore sent with one PutObject, and the object as it was stored."""
    session = boto3.session.Session(region_name="us-east-1")
    s3 = session.client("s3", endpoint_url=endpoint, aws_access_key_id="x", aws_secret_access_key="x")
    s3.create_bucket(Bucket="signing-check")
    sent: dict[str, str] = {}

    def capture(request: Any, **_: Any) -> None:
        for name, value in request.headers.items():
            sent[name.lower()] = value.decode() if isinstance(value, bytes) else value

    s3.meta.events.register("before-send.s3.PutObject", capture)
    s3.put_object(Bucket="signing-check", Key="chunk", Body=BODY)
    assert s3.get_object(Bucket="signing-check", Key="chunk")["Body"].read() == BODY
    return sent


def test_with_the_function_config_an_upload_is_not_hashed_but_carries_a_checksum(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given botocore reading the function's AWS config, and a moto over plain http
    config = tmp_path / "function-aws-config"
    config.write_text(FUNCTION_AWS_CONFIG)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    with moto_server() as endpoint:
        # When a 1 MB body is uploaded
        sent = _upload_headers(endpoint)

    # Then the body's SHA-256 was never computed, and S3 still gets the body's CRC32 to check it against
    assert sent["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
    assert "x-amz-checksum-crc32" in sent


def test_without_it_botocore_hashes_every_body_it_sends_over_http(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given botocore with an empty AWS config, and a moto over plain http
    config = tmp_path / "empty-aws-config"
    config.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    with moto_server() as endpoint:
        # When the same body is uploaded
        sent = _upload_headers(endpoint)

    # Then botocore hashed it (what the function config spares each chunk upload)
    assert sent["x-amz-content-sha256"] == hashlib.sha256(BODY).hexdigest()
