"""Chunks and rejects in the data bucket: the only code that writes or reads them; and the presigned
URLs users upload their own sources with.

Rows travel between the steps as Arrow IPC streams compressed with zstd (events carry only the key): the
columnar form transform computes on and load COPYs from, with no encoding or parsing per row in between.
Rejects are plain JSON Lines so a person can read them with any tool. Layout (docs/design.md):
  tasks/<taskId>/<phase>/<chunk:06d>.arrow   and   tasks/<taskId>/rejects/<chunk:06d>.jsonl
  tasks/<taskId>/extract/source.<format>      (a compressed or https source, staged: staging.py)
Uploads go to uploads/<owner>/<uuid>/<file name> (source_access.py says who may read them).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import boto3
import pyarrow as pa
from botocore.config import Config
from pydantic_core import PydanticSerializationError

from .contracts import Reject
from .errors import ChunkFailed, InvalidPage

# zstd at its fastest level: chunks live for minutes and CPU time is what the Lambda bill counts. Measured
# on a 20,000-flight chunk: 1.8 MB as CSV, 0.4 MB as this, written in ~10 ms.
_IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression=pa.Codec("zstd", compression_level=1))


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# A JSON source may spell half a surrogate pair ("\ud800"): not text, so transform rejects its row (and
# spells it as an escape in the reject), but the raw chunk must carry it that far instead of failing to
# encode. An Arrow string is valid UTF-8, so such a column travels as binary (raw_table_from_records).
_UNICODE_ERRORS = "surrogatepass"


def raw_table_from_records(records: Sequence[Mapping[str, str | None]]) -> pa.Table:
    """A raw chunk as a table of text columns, in the order the source first names them. A column that
    holds text UTF-8 cannot encode is binary (surrogatepass bytes), so the chunk still reaches transform,
    which rejects those rows by name."""
    if not records:
        return pa.table({})
    names = tuple(records[0])
    if all(tuple(record) == names for record in records):
        # Every CSV chunk and most JSON ones: one C-level transpose instead of a lookup per cell.
        columns = zip(*(tuple(record.values()) for record in records), strict=True)
        values_of = dict(zip(names, columns, strict=True))
    else:
        every_name: dict[str, None] = {}
        for record in records:
            every_name.update(dict.fromkeys(record))
        values_of = {name: tuple(record.get(name) for record in records) for name in every_name}
    return pa.table({name: _text_column(values) for name, values in values_of.items()})


def _text_column(values: tuple[str | None, ...]) -> pa.Array:
    try:
        return pa.array(values, pa.string())
    except (UnicodeEncodeError, pa.ArrowException):
        return pa.array(
            [None if value is None else value.encode("utf-8", _UNICODE_ERRORS) for value in values], pa.binary()
        )


def raw_records_of(table: pa.Table) -> list[dict[str, str | None]]:
    """The records of a raw chunk, as readers yield them (binary columns decoded back)."""
    columns: dict[str, list[str | None]] = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        values = column.to_pylist()
        if pa.types.is_binary(column.type):
            values = [None if value is None else value.decode("utf-8", _UNICODE_ERRORS) for value in values]
        columns[name] = values
    if not columns:
        return [{} for _ in range(table.num_rows)]
    return [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def _encode_lines(items: Iterable[Any]) -> bytes:
    return "".join(_dumps(item) + "\n" for item in items).encode("utf-8", _UNICODE_ERRORS)


def _reject_lines(rejects: Iterable[Reject]) -> bytes:
    """Rejects as JSON lines, each byte for byte what _encode_lines makes of its model_dump(mode="json").
    pydantic's own serializer writes them 8x faster; it refuses only a lone surrogate, which _encode_lines
    carries as surrogatepass bytes."""
    lines = []
    for reject in rejects:
        try:
            lines.append(reject.__pydantic_serializer__.to_json(reject) + b"\n")
        except PydanticSerializationError:
            lines.append(_encode_lines([reject.model_dump(mode="json")]))
    return b"".join(lines)


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
        return f"tasks/{task_id}/{phase}/{chunk:06d}.arrow"

    @staticmethod
    def staged_source_key(task_id: str, fmt: str) -> str:
        """The decompressed copy of a source that is read in ranges from here (staging.py)."""
        return f"tasks/{task_id}/extract/source.{fmt}"

    @staticmethod
    def rejects_key(task_id: str, chunk: int) -> str:
        return f"tasks/{task_id}/rejects/{chunk:06d}.jsonl"

    @staticmethod
    def load_rejects_key(task_id: str, chunk: int) -> str:
        """Rows of a chunk the target refused (commit "chunk", mode insert): listed after the chunk's own."""
        return f"tasks/{task_id}/rejects/{chunk:06d}.load.jsonl"

    @staticmethod
    def commit_rejects_key(task_id: str) -> str:
        """Rows the task's merge refused (commit "task", mode insert): listed after every chunk's."""
        return f"tasks/{task_id}/rejects/commit.jsonl"

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

    def put_table(self, key: str, table: pa.Table) -> None:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema, options=_IPC_OPTIONS) as writer:
            writer.write_table(table)
        self._s3.put_object(
            Bucket=self.bucket, Key=key, Body=sink.getvalue().to_pybytes(),
            ContentType="application/vnd.apache.arrow.stream",
        )  # fmt: skip

    def get_table(self, key: str) -> pa.Table:
        body = self._get(key)
        try:
            with pa.ipc.open_stream(pa.py_buffer(body)) as reader:
                return reader.read_all()
        except (pa.ArrowException, OSError) as exc:
            raise ChunkFailed(f"chunk s3://{self.bucket}/{key} is corrupt: {exc}") from exc

    # --- rejects --------------------------------------------------------------------------------

    def put_rejects(self, key: str, rejects: Iterable[Reject]) -> None:
        """Write a chunk's rejects; nothing is written when there are none (one S3 call saved)."""
        body = _reject_lines(rejects)
        if body:
            self._s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/x-ndjson")

    def delete_keys(self, keys: list[str]) -> None:
        for first in range(0, len(keys), 1000):  # DeleteObjects takes at most 1,000 keys
            batch = [{"Key": key} for key in keys[first : first + 1000]]
            self._s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    def delete_chunks(self, task_id: str) -> int:
        """Delete the task's chunks and staged source (not its rejects: its owner may still read them);
        returns how many objects went."""
        deleted = 0
        for phase in ("extract", "transform"):
            paginator = self._s3.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=f"tasks/{task_id}/{phase}/"):
                keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if keys:
                    self._s3.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})
                    deleted += len(keys)
        return deleted

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

    def all_rejects(self, task_id: str) -> Iterator[Reject]:
        """Every reject the task kept, in chunk then row order, read one file at a time."""
        paginator = self._s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.rejects_prefix(task_id)):
            for item in page.get("Contents", []):
                yield from (Reject.model_validate_json(line) for line in self._reject_lines(item["Key"]))

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
