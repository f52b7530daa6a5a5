"""Staging: a source no byte range can address (compressed, or served over http(s)) is first copied into
the data bucket, decompressed, by one streamed multipart upload; the copy is then planned in byte ranges
like any plain object in S3, so its rows are parsed by many transforms in parallel instead of one extract.

The copy does not parse rows: it moves bytes at the speed of decompression and upload. It also pins the
bytes every range reads (an https server need not honour Range or keep its file unchanged meanwhile).

No source size meets Lambda's 15-minute wall: before the invocation runs out of time, the copy stops at a
part boundary and publishes SourceStagingPaused with the upload and the bytes staged; the next extract
invocation re-opens the source, skips those bytes (decompression cannot resume mid-stream, so the prefix is
inflated again and dropped, far faster than it was uploaded) and goes on with the same upload.

Re-runs are safe: the copy's key and part boundaries are fixed, so two attempts upload the same bytes under
the same part numbers, and whichever completes the upload first leaves the object every range reads.
An abandoned upload costs nothing for long: the bucket's lifecycle aborts it after a day.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import unquote, urlsplit

from aws_lambda_powertools import Logger

from .contracts import StagingCheckpoint
from .errors import BuslineError, SourceUnreadable
from .ranges import COMPRESSED_SUFFIXES, SPLITTABLE_FORMATS
from .readers import open_source, stream_errors_named
from .spec import SourceSpec
from .storage import ChunkStore

logger = Logger(child=True)

# Parts of the multipart upload: S3 wants at least 5 MiB per part but the last, and at most 10,000 parts,
# which at this size holds 160 GiB (MAX_DECOMPRESSED_BYTES is 32). Two parts are in memory at a time: one
# uploading, the next being read.
PART_BYTES = 16 * 1024 * 1024
# A decompressed source smaller than this is parsed where it is (one reader): its few chunks cost fewer
# calls than a copy and a plan, and are done as soon.
STAGE_FROM_BYTES = 1024 * 1024
# The time a paused copy keeps in hand for the upload's last steps and the event that resumes it; if more,
# PARTS_IN_RESERVE times the slowest read or upload of a part seen (a slow link needs more time to finish
# its part).
MIN_RESERVE_SECONDS = 10.0
PARTS_IN_RESERVE = 4
_SKIP_READ = 1 << 20
_NO_SUCH_UPLOAD = ("NoSuchUpload", "404")


@dataclass(frozen=True)
class Staged:
    """The complete copy in the data bucket, ready to be planned in ranges."""

    key: str
    size: int
    etag: str | None


@dataclass(frozen=True)
class Paused:
    """The copy stopped at a part boundary before the invocation's time ran out."""

    checkpoint: StagingCheckpoint


@dataclass(frozen=True)
class Small:
    """The whole decompressed source, below STAGE_FROM_BYTES: parsed in place."""

    data: bytes


StagingOutcome = Staged | Paused | Small


def must_stage(source: SourceSpec) -> bool:
    """Whether a source is copied before it is read: one that ranges could read once it is plain bytes in
    S3 (CSV or NDJSON without line breaks inside fields, no row `limit`, which no range can apply), but is
    compressed or comes from an http(s) server."""
    if source.limit is not None or source.multilineFields or source.format not in SPLITTABLE_FORMATS:
        return False
    parts = urlsplit(source.uri)
    compressed = unquote(parts.path).lower().endswith(COMPRESSED_SUFFIXES)
    return compressed or parts.scheme.lower() in ("http", "https")


def stage_source(
    task_id: str,
    source: SourceSpec,
    chunks: ChunkStore,
    *,
    allow_loopback_http: bool,
    remaining_seconds: Callable[[], float],
    resume: StagingCheckpoint | None = None,
) -> StagingOutcome:
    """Copy the decompressed source to ChunkStore.staged_source_key, from the start or from `resume`."""
    copy = _Copy(chunks, ChunkStore.staged_source_key(task_id, source.format), source.uri)
    with open_source(source.uri, chunks.s3_client, allow_loopback_http=allow_loopback_http) as stream:
        if resume is not None:
            resumed = copy.resume(resume, stream)
            if resumed is not None:
                return resumed
        else:
            first = _read_up_to(stream, STAGE_FROM_BYTES, source.uri)
            if len(first) < STAGE_FROM_BYTES:
                return Small(first)
            copy.start(first)
        try:
            return copy.go_on(stream, remaining_seconds)
        except BuslineError as error:
            if not error.retryable:  # the task fails for good: nobody will resume this upload
                copy.abort()
            raise


class _Copy:
    """One multipart upload of the staged copy: its parts are PART_BYTES of the stream, in order."""

    def __init__(self, chunks: ChunkStore, key: str, uri: str) -> None:
        self.uri = uri
        self.s3: Any = chunks.s3_client
        self.bucket = chunks.bucket
        self.key = key
        self.upload_id = ""
        self.etags: list[str] = []  # of parts 1..n
        self.uploaded_bytes = 0
        self.pending = b""  # read from the source but not uploaded yet

    @property
    def staged_bytes(self) -> int:
        return len(self.etags) * PART_BYTES

    def start(self, first: bytes) -> None:
        created = self.s3.create_multipart_upload(Bucket=self.bucket, Key=self.key, ContentType="text/plain")
        self.upload_id = created["UploadId"]
        self.pending = first

    def resume(self, checkpoint: StagingCheckpoint, stream: BinaryIO) -> StagingOutcome | None:
        """Take up a paused upload: None when there is more to copy (the stream is then past the parts
        already uploaded), the finished copy when a duplicate attempt completed it meanwhile."""
        self.upload_id = checkpoint.uploadId
        uploaded = self._uploaded_full_parts()
        if uploaded is None:
            head = self._head()
            if head is not None:
                return head
            # neither the upload nor its object: the upload was aborted (after a day, by the lifecycle)
            logger.warning("the paused copy's upload is gone: staging again", extra={"key": self.key})
            first = _read_up_to(stream, STAGE_FROM_BYTES, self.uri)
            if len(first) < STAGE_FROM_BYTES:
                return Small(first)
            self.start(first)
            return None
        self.etags = uploaded
        self.uploaded_bytes = self.staged_bytes
        _skip(stream, self.staged_bytes, self.uri)
        return None

    def go_on(self, stream: BinaryIO, remaining_seconds: Callable[[], float]) -> StagingOutcome:
        slowest = 0.0
        parts_now = 0
        # The next part is inflated while the last one uploads (one in flight, so parts stay in order and
        # two are in memory at most): reading a source and writing the copy take turns no more.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="staging-upload") as uploader:
            uploading: Future[float] | None = None
            while True:
                # At least one part per invocation, so every pause is progress. Going on costs a read and
                # the wait for the part in flight; the pause after that, the wait for the part then in flight.
                if parts_now and remaining_seconds() < max(MIN_RESERVE_SECONDS, PARTS_IN_RESERVE * slowest):
                    self._uploaded(uploading)
                    logger.info("staging paused", extra={"key": self.key, "staged_bytes": self.staged_bytes})
                    return Paused(StagingCheckpoint(uploadId=self.upload_id, stagedBytes=self.staged_bytes))
                started = time.monotonic()
                data = self.pending + _read_up_to(stream, PART_BYTES - len(self.pending), self.uri)
                self.pending = b""
                slowest = max(slowest, time.monotonic() - started)
                slowest = max(slowest, self._uploaded(uploading))
                uploading = None
                if not data and self.etags:
                    break
                uploading = uploader.submit(self._upload_part, len(self.etags) + 1, data)
                parts_now += 1
                if len(data) < PART_BYTES:
                    break
            slowest = max(slowest, self._uploaded(uploading))
        return self._complete()

    def _uploaded(self, uploading: Future[float] | None) -> float:
        """Wait for the part in flight, if any; its upload's seconds (an upload's error is raised here)."""
        return 0.0 if uploading is None else uploading.result()

    def _upload_part(self, number: int, data: bytes) -> float:
        started = time.monotonic()
        part = self.s3.upload_part(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=data
        )
        self.etags.append(part["ETag"])
        self.uploaded_bytes += len(data)
        return time.monotonic() - started

    def _complete(self) -> Staged:
        size = self.uploaded_bytes
        try:
            done = self.s3.complete_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=self.upload_id,
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etag} for n, etag in enumerate(self.etags, 1)]},
            )  # fmt: skip
        except Exception as error:
            if _code(error) not in _NO_SUCH_UPLOAD:
                raise
            head = self._head()  # a duplicate attempt completed the same upload first
            if head is None:
                raise
            return head
        logger.info("source staged", extra={"key": self.key, "bytes": size, "parts": len(self.etags)})
        return Staged(self.key, size, done.get("ETag"))

    def _uploaded_full_parts(self) -> list[str] | None:
        """ETags of parts 1..n of the upload, up to the first missing or short one; None: no such upload."""
        parts: dict[int, tuple[str, int]] = {}
        marker = 0
        try:
            while True:
                listed = self.s3.list_parts(
                    Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumberMarker=marker
                )
                for part in listed.get("Parts", []):
                    parts[int(part["PartNumber"])] = (part["ETag"], int(part["Size"]))
                if not listed.get("IsTruncated"):
                    break
                marker = int(listed["NextPartNumberMarker"])
        except Exception as error:
            if _code(error) in _NO_SUCH_UPLOAD:
                return None
            raise
        etags: list[str] = []
        while len(etags) + 1 in parts and parts[len(etags) + 1][1] == PART_BYTES:
            etags.append(parts[len(etags) + 1][0])
        return etags

    def _head(self) -> Staged | None:
        try:
            head = self.s3.head_object(Bucket=self.bucket, Key=self.key)
        except Exception as error:
            if _code(error) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise
        return Staged(self.key, int(head["ContentLength"]), head.get("ETag"))

    def abort(self) -> None:
        try:
            self.s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)
        except Exception:  # the lifecycle aborts it after a day anyway
            logger.warning("could not abort the staging upload", extra={"key": self.key}, exc_info=True)


def _code(error: BaseException) -> str:
    return str(getattr(error, "response", {}).get("Error", {}).get("Code", ""))


def _read_up_to(stream: BinaryIO, size: int, uri: str) -> bytes:
    """`size` bytes, fewer only at the end of the stream (a read may return less than asked)."""
    pieces: list[bytes] = []
    wanted = size
    while wanted > 0:
        with stream_errors_named(uri):
            piece = stream.read(wanted)
        if not piece:
            break
        pieces.append(piece)
        wanted -= len(piece)
    return b"".join(pieces)


def _skip(stream: BinaryIO, size: int, uri: str) -> None:
    left = size
    while left > 0:
        with stream_errors_named(uri):
            piece = stream.read(min(left, _SKIP_READ))
        if not piece:
            raise SourceUnreadable(
                uri, f"it changed while it was copied: shorter than the {size:,} bytes copied"
            )
        left -= len(piece)
