"""The local cloud's S3 answers a ranged GET as S3 does, reading only the range's bytes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends

from busline.localcloud import moto_patches
from busline.localcloud.testing import moto_server

BUCKET = "ranges"
SIZE = 3 * 1024 * 1024 + 17  # past moto's in-memory buffer: the object sits in a temporary file
BODY = bytes(index % 251 for index in range(SIZE))


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    moto_patches.serve_ranges_without_reading_whole_objects()
    with moto_server() as endpoint:
        client = boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )  # fmt: skip
        client.create_bucket(Bucket=BUCKET)
        client.put_object(Bucket=BUCKET, Key="big.bin", Body=BODY)
        yield client


@pytest.mark.parametrize(
    ("header", "begin", "end"),
    [
        ("bytes=0-0", 0, 0),
        ("bytes=1048576-3145727", 1_048_576, 3_145_727),
        ("bytes=3145700-", 3_145_700, SIZE - 1),  # open-ended
        (f"bytes=100-{SIZE + 500}", 100, SIZE - 1),  # past the end: cut at it
        ("bytes=-10", SIZE - 10, SIZE - 1),  # a suffix: moto's own handling
    ],
)
def test_a_ranged_get_answers_the_bytes_and_headers_s3_does(
    s3: Any, header: str, begin: int, end: int
) -> None:
    # Given a 3 MiB object / When a range of it is asked for
    answer = s3.get_object(Bucket=BUCKET, Key="big.bin", Range=header)
    # Then it is a 206 with those bytes, their length and where they are in the object
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert answer["Body"].read() == BODY[begin : end + 1]
    assert answer["ContentLength"] == end - begin + 1
    assert answer["ContentRange"] == f"bytes {begin}-{end}/{SIZE}"


def test_a_range_past_the_end_and_a_stale_etag_are_refused_as_by_s3(s3: Any) -> None:
    with pytest.raises(ClientError) as past:
        s3.get_object(Bucket=BUCKET, Key="big.bin", Range=f"bytes={SIZE}-{SIZE + 10}")
    assert past.value.response["Error"]["Code"] == "InvalidRange"
    with pytest.raises(ClientError) as stale:
        s3.get_object(Bucket=BUCKET, Key="big.bin", Range="bytes=0-9", IfMatch='"not-the-etag"')
    assert stale.value.response["Error"]["Code"] == "PreconditionFailed"


class CountingBuffer:
    """The object's stored bytes, noting the size of every read of them."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.reads: list[int] = []

    def read(self, size: int = -1) -> bytes:
        data: bytes = self.inner.read(size)
        self.reads.append(len(data))
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_range_reads_only_its_bytes(s3: Any) -> None:
    # Given the stored object's buffer, counting reads (moto's server runs in this process)
    key = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].get_object(BUCKET, "big.bin")
    assert key is not None
    buffer = key._value_buffer = CountingBuffer(key._value_buffer)
    # When a range and then the whole object are fetched
    s3.get_object(Bucket=BUCKET, Key="big.bin", Range="bytes=10-19")["Body"].read()
    ranged_reads = list(buffer.reads)
    s3.get_object(Bucket=BUCKET, Key="big.bin")["Body"].read()
    # Then the range read 10 bytes of it, the plain GET all of it
    assert ranged_reads == [10]
    assert buffer.reads == [10, SIZE]
