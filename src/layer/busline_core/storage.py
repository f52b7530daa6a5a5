"""Chunks and rejects in the data bucket: the only code that writes or reads them; and the presigned
URLs users upload their own sources with.

Rows travel between the steps as gzipped JSON Lines (events carry only the key), rejects as plain
JSON Lines so a person can read them with any tool. Layout (docs/design.md):
  tasks/<taskId>/<phase>/<chunk:06d>.jsonl.gz   and   tasks/<taskId>/rejects/<chunk:06d>.jsonl
Uploads go to uploads/<owner>/<uuid>/<file name> (source_access.py says who may read them).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Mapping
from typing import Any

import boto3
from botocore.config import Config

from .contracts import Reject
from .errors import ChunkFailed, InvalidPage

# Fast compression: chunks live for minutes and CPU time is what the Lambda bill counts.
_GZIP_LEVEL = 3


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# A JSON source may spell half a surrogate pair ("\ud800"): not text, so transform rejects its row (and
# spells it as an escape in the reject), but the raw chunk must carry it that far instead of failing to
# encode.
_UNICODE_ERRORS = "surrogatepass"


def _encode_lines(items: Iterable[Any]) -> bytes:
    return "".join(_dumps(item) + "\n" for item in items).encode("utf-8", _UNICODE_ERRORS)


class ChunkStore:
    def __init__(self, s3_client: Any, bucket: str) -> None:
        self._s3 = s3_client
        self.bucket = bucket

    @classmethod
    def for_bucket(cls, bucket: str) -> ChunkStore:
        # botocore still presigns S3 URLs with the legacy SigV2 unless told otherwise; SigV4 is what every
        # region accepts (API calls are SigV4 either way). AWS_ENDPOINT_URL (the local cloud) still applies.
        return cls(boto3.client("s3", config=Config(signature_version="s3v4")), bucket)

    @property
    def s3_client(self) -> Any:
        """The client sources are read with too (readers.open_source), so one container has one."""
        return self._s3

    # --- layout ---------------------------------------------------------------------------------

    @staticmethod
    def chunk_key(task_id: str, phase: str, chunk: int) -> str:
        return f"tasks/{task_id}/{phase}/{chunk:06d}.jsonl.gz"

    @staticmethod
    def rejects_key(task_id: str, chunk: int) -> str:
        return f"tasks/{task_id}/rejects/{chunk:06d}.jsonl"

    @staticmethod
    def rejects_prefix(task_id: str) -> str:
        return f"tasks/{task_id}/rejects/"

    # --- uploads --------------------------------------------------------------------------------

    def presigned_put(self, key: str, expires_in: int, content_type: str | None = None) -> str:
        """A URL that lets whoever holds it PUT one object at `key` for `expires_in` seconds.

        Signing is local (no S3 call); the URL carries this function's own right to PutObject, which is
        why the API's role may put under uploads/ and nowhere else. A content type, when given, is
        signed too: the uploader must then send that exact Content-Type header.
        """
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if content_type is not None:
            params["ContentType"] = content_type
        url: str = self._s3.generate_presigned_url(
            "put_object", Params=params, ExpiresIn=expires_in, HttpMethod="PUT"
        )
        return url

    # --- rows -----------------------------------------------------------------------------------

    def put_rows(self, key: str, rows: Iterable[Mapping[str, Any]]) -> None:
        body = gzip.compress(_encode_lines(rows), compresslevel=_GZIP_LEVEL, mtime=0)
        self._s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/x-ndjson")

    def get_rows(self, key: str) -> list[dict[str, Any]]:
        body = self._get(key)
        try:
            text = gzip.decompress(body).decode("utf-8", _UNICODE_ERRORS)
            return [json.loads(line) for line in text.splitlines() if line]
        except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ChunkFailed(f"chunk s3://{self.bucket}/{key} is corrupt: {exc}") from exc

    # --- rejects --------------------------------------------------------------------------------

    def put_rejects(self, key: str, rejects: Iterable[Reject]) -> None:
        """Write a chunk's rejects; nothing is written when there are none (one S3 call saved)."""
        items = [reject.model_dump(mode="json") for reject in rejects]
        if items:
            self._s3.put_object(
                Bucket=self.bucket, Key=key, Body=_encode_lines(items), ContentType="application/x-ndjson"
            )

    def iter_rejects(
        self, task_id: str, limit: int, start: Mapping[str, Any] | None = None
    ) -> tuple[list[Reject], dict[str, Any] | None]:
        """One page of a task's rejects, in chunk then row order, and the position of the next page
        (None when there is nothing more). `start` is a position a previous page returned."""
        prefix = self.rejects_prefix(task_id)
        page: list[Reject] = []
        if start is not None:
            key, index = self._position(start, prefix)
            lines = self._reject_lines(key)
        else:
            key, index, lines = "", 0, []

        while True:
            take = lines[index : index + limit - len(page)]
            page.extend(Reject.model_validate_json(line) for line in take)
            index += len(take)
            if len(page) == limit:
                if index < len(lines):
                    return page, {"k": key, "i": index}
                following = self._next_key(prefix, key)
                return page, ({"k": following, "i": 0} if following else None)
            following = self._next_key(prefix, key)
            if following is None:
                return page, None
            key, index, lines = following, 0, self._reject_lines(following)

    def _next_key(self, prefix: str, start_after: str) -> str | None:
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": 1}
        if start_after:
            params["StartAfter"] = start_after
        contents = self._s3.list_objects_v2(**params).get("Contents", [])
        return contents[0]["Key"] if contents else None

    def _reject_lines(self, key: str) -> list[str]:
        return [line for line in self._get(key).decode("utf-8").splitlines() if line]

    @staticmethod
    def _position(start: Mapping[str, Any], prefix: str) -> tuple[str, int]:
        key, index = start.get("k"), start.get("i")
        if not isinstance(key, str) or not key.startswith(prefix) or not isinstance(index, int) or index < 0:
            raise InvalidPage("nextToken", "belongs to another listing")
        return key, index

    def _get(self, key: str) -> bytes:
        try:
            response = self._s3.get_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404"):
                raise ChunkFailed(f"s3://{self.bucket}/{key} does not exist") from exc
            raise
        body: bytes = response["Body"].read()
        return body
