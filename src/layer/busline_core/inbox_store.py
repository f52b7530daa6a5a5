"""Data access: a file dropped in the inbox, copied (that very version) into its owner's uploads in the
data bucket, where its task reads it (inbox.py says why a copy)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import boto3
from botocore.exceptions import ClientError

from .errors import SourceUnreadable

# What S3 answers for a drop no retry can copy: gone (deleted, or that version removed), over CopyObject's
# 5 GB, or a key that the owner's prefix makes too long.
_NOT_COPYABLE = frozenset({"NoSuchKey", "NoSuchVersion", "InvalidRequest", "KeyTooLongError", "EntityTooLarge"})


class InboxStore:
    def __init__(self, s3: Any, data_bucket: str) -> None:
        self.s3 = s3
        self.data_bucket = data_bucket

    @classmethod
    def for_bucket(cls, data_bucket: str) -> InboxStore:
        return cls(boto3.client("s3"), data_bucket)

    def copy_to_uploads(self, bucket: str, key: str, version_id: str | None, destination_key: str) -> str:
        """Copy s3://bucket/key (at `version_id`, when the bucket versions it) to `destination_key` of the data
        bucket, server-side, and return the copy's s3:// URI. Copying again writes the same bytes."""
        source: dict[str, str] = {"Bucket": bucket, "Key": key}
        if version_id is not None:
            source["VersionId"] = version_id
        try:
            self.s3.copy_object(Bucket=self.data_bucket, Key=destination_key, CopySource=source)
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in _NOT_COPYABLE:
                raise SourceUnreadable(f"s3://{bucket}/{quote(key)}", f"cannot be copied ({code})") from error
            raise
        return f"s3://{self.data_bucket}/{quote(destination_key)}"
