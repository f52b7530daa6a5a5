"""Read a source as a stream of records of text values.

Sources can be far bigger than a Lambda's memory, so nothing here reads a whole object: S3 bodies
and HTTP responses are streamed, `.gz` is decompressed on the fly, and a `.zip` (whose directory
sits at the end of the file) is spooled to a temporary file in /tmp and its member streamed.
Every format yields the same thing, dicts of str or None, so one transform serves them all.

A source is written by a user, so it may be hostile: the source limits of limits.py are enforced while
reading (bytes as stored, bytes and ratio after decompression, and per record its length, JSON nesting
and field count). Past one the source is unreadable for good (SourceOverLimit, naming the limit), not
after memory, /tmp or the Lambda's time have run out. Only a failure of the connection itself (a
timeout, a reset) propagates as it is, for SQS to retry.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import itertools
import json
import posixpath
import shutil
import ssl
import tempfile
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import IO, Any, BinaryIO, TypeVar, cast
from urllib.parse import unquote, urlsplit

import pyarrow as pa
import pyarrow.csv as pa_csv
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.exceptions import HTTPClientError, IncompleteReadError

from .errors import SourceOverLimit, SourceUnreadable
from .limits import (
    DECOMPRESSION_RATIO_GRACE_BYTES,
    MAX_DECOMPRESSED_BYTES,
    MAX_DECOMPRESSION_RATIO,
    MAX_RECORD_LENGTH,
    MAX_SOURCE_BYTES,
    MAX_SOURCE_FIELDS,
    MAX_SOURCE_JSON_DEPTH,
)
from .redaction import display_url
from .safe_http import open_url

_READ_SIZE = 1 << 16
_COPY_BUFFER = 1 << 20
# Besides the data file, archives made on macOS carry resource forks; they are never the data.
_IGNORED_MEMBER_PREFIXES = ("__MACOSX/",)
# Failures of the connection a source streams over, not of its bytes: a retry may well succeed, so they
# propagate as they are (SQS redelivers) instead of failing the task. botocore's read timeout is an
# OSError too, which is why these are sorted out before any OSError is called unreadable.
_TRANSIENT: tuple[type[BaseException], ...] = (
    ConnectionError,
    TimeoutError,
    ssl.SSLError,
    HTTPClientError,
    BotoConnectionError,
    IncompleteReadError,
)
# S3 answers meaning "not now" rather than "no" (besides any 5xx).
_S3_RETRY_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "InternalError", "ServiceUnavailable"}
)
# A JSON decode error this far before the end of the text read so far is no read boundary: the tokens the
# decoder can be cut inside (a literal, a number, an escape) are shorter, strings aside.
_CUT_MARGIN = 32

# csv's per-field limit is process-wide and defaults to 128 KiB, under a record's limit. A field is never
# longer than its record, which _csv_records bounds before csv sees it, so raising it is safe for all.
if csv.field_size_limit() < MAX_RECORD_LENGTH:
    csv.field_size_limit(MAX_RECORD_LENGTH)

Record = dict[str, str | None]


@contextmanager
def open_source(uri: str, s3_client: Any, *, allow_loopback_http: bool = False) -> Iterator[BinaryIO]:
    """Open `uri` (s3:// or http(s)://) as a binary stream, decompressing `.gz` / `.zip` by suffix.

    http(s) goes through safe_http.py; `allow_loopback_http` is the stack's AllowLoopbackHttpSources.
    Reading past MAX_SOURCE_BYTES, MAX_DECOMPRESSED_BYTES or MAX_DECOMPRESSION_RATIO raises
    SourceOverLimit.
    """
    parts = urlsplit(uri)
    path = unquote(parts.path)
    # Errors show an http(s) URL as safe_http does: never its query, which may hold a token.
    shown = uri if parts.scheme.lower() == "s3" else display_url(uri)
    with ExitStack() as stack:
        raw = _SourceMeter(stack.enter_context(_open_raw(uri, s3_client, allow_loopback_http)), shown)
        lowered = path.lower()
        stream: _Meter
        if lowered.endswith(".gz"):
            inflated = stack.enter_context(gzip.GzipFile(fileobj=raw, mode="rb"))
            stream = _InflateMeter(inflated, shown, raw)
        elif lowered.endswith(".zip"):
            stream = stack.enter_context(_open_zip_member(shown, path, raw))
        else:
            stream = raw
        yield cast(BinaryIO, stream)


_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class OpenedAt:
    """A source opened at a byte of its (decompressed) text: `start` is that byte, past a leading byte-order
    mark (which iter_records would drop), so `start` plus RecordEnds' bytes is a byte to open it at again.
    `etag` is the S3 object's version read, for the next opening to insist on."""

    stream: BinaryIO
    start: int
    etag: str | None


@contextmanager
def open_source_at(
    uri: str, s3_client: Any, *, offset: int, etag: str | None = None, allow_loopback_http: bool = False
) -> Iterator[OpenedAt]:
    """`uri` from byte `offset` of its decompressed text on, for a reader that goes on where another stopped.

    A plain S3 object is read from there by a ranged GET of the version `etag` names (a newer version fails
    the read for good rather than mix two); anything else is opened again and its first `offset` bytes
    decompressed and dropped, which costs far less than parsing them did.
    """
    location = s3_location(uri)
    path = unquote(urlsplit(uri).path).lower()
    with ExitStack() as stack:
        stream: BinaryIO
        if location is not None and not path.endswith((".gz", ".zip")):
            stream, etag = stack.enter_context(_s3_object_from(uri, s3_client, *location, offset, etag))
        else:
            stream = stack.enter_context(open_source(uri, s3_client, allow_loopback_http=allow_loopback_http))
            etag = None
            left = offset
            while left > 0:
                with stream_errors_named(uri):
                    dropped = len(stream.read(min(left, 1 << 20)))
                if not dropped:
                    raise SourceUnreadable(
                        uri, f"it changed while it was read: shorter than {offset:,} bytes"
                    )
                left -= dropped
        start = offset
        if offset == 0:
            with stream_errors_named(uri):
                first = stream.read(len(_BOM))
            if first == _BOM:
                start = len(_BOM)
            elif first:
                rest = stream
                stream = cast(BinaryIO, io.BufferedReader(_Chained(first, rest)))
        yield OpenedAt(stream, start, etag)


class _Chained(io.RawIOBase):
    """Bytes already read, then the rest of their stream."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        super().__init__()
        self._head = memoryview(head)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        target = memoryview(buffer).cast("B")
        if self._head:
            count = min(len(target), len(self._head))
            target[:count] = self._head[:count]
            self._head = self._head[count:]
            return count
        data = self._rest.read(len(target))
        target[: len(data)] = data
        return len(data)


@contextmanager
def _s3_object_from(
    uri: str, s3_client: Any, bucket: str, key: str, offset: int, etag: str | None
) -> Iterator[tuple[BinaryIO, str | None]]:
    extra: dict[str, str] = {"IfMatch": etag} if etag else {}
    if offset:
        extra["Range"] = f"bytes={offset}-"
    try:
        response = s3_client.get_object(Bucket=bucket, Key=key, **extra)
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
        if code == "InvalidRange":  # the last record ended the object: nothing is left to read
            yield cast(BinaryIO, io.BytesIO(b"")), etag
            return
        if code in ("PreconditionFailed", "412"):
            raise SourceUnreadable(uri, "the object changed while it was read") from exc
        if _s3_transient(exc):
            raise
        raise SourceUnreadable(uri, _describe_s3_error(exc)) from exc
    body = response["Body"]
    try:
        length = response.get("ContentLength")
        refuse_stored_size(uri, offset + length if isinstance(length, int) else None, "the object")
        yield cast(BinaryIO, _SourceMeter(body, uri)), response.get("ETag", etag)
    finally:
        body.close()


def s3_location(uri: str) -> tuple[str, str] | None:
    """(bucket, key) of an s3:// URI exactly as it is read here, None for any other scheme.

    source_access.py checks what a task may read with this same function, so the key it allows is the
    key that is fetched.
    """
    parts = urlsplit(uri)
    if parts.scheme.lower() != "s3":
        return None
    return parts.netloc, unquote(parts.path.lstrip("/"))


@contextmanager
def _open_raw(uri: str, s3_client: Any, allow_loopback_http: bool) -> Iterator[BinaryIO]:
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    location = s3_location(uri)
    if location is not None:
        bucket, key = location
        if not bucket or not key:
            raise SourceUnreadable(uri, "an S3 URI needs a bucket and a key")
        try:
            response = s3_client.get_object(Bucket=bucket, Key=key)
        except Exception as exc:  # botocore raises many shapes; only "not now" is worth a retry
            if _s3_transient(exc):
                raise
            raise SourceUnreadable(uri, _describe_s3_error(exc)) from exc
        body = response["Body"]
        try:
            refuse_stored_size(uri, response.get("ContentLength"), "the object")
            yield body
        finally:
            body.close()
    elif scheme in ("http", "https"):
        with open_url(uri, allow_loopback_http=allow_loopback_http) as http_response:
            # http.client's Content-Length (None when chunked: then only the meter judges).
            refuse_stored_size(display_url(uri), getattr(http_response, "length", None), "the response")
            yield http_response
    else:
        raise SourceUnreadable(uri, f"unsupported scheme '{parts.scheme}'")


def _s3_transient(exc: Exception) -> bool:
    if isinstance(exc, _TRANSIENT):
        return True
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return False
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    return status >= 500 or response.get("Error", {}).get("Code", "") in _S3_RETRY_CODES


def refuse_stored_size(uri: str, size: object, what: str) -> None:
    # A declared size over the limit fails before a byte is read; a wrong one is caught by the meter.
    if isinstance(size, int) and size > MAX_SOURCE_BYTES:
        raise SourceOverLimit(
            uri, "MAX_SOURCE_BYTES", f"{what} is {size:,} bytes, more than {MAX_SOURCE_BYTES:,}"
        )


def _describe_s3_error(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        code = error.get("Code", "")
        if code in ("NoSuchKey", "404"):
            return "no such key"
        if code == "NoSuchBucket":
            return "no such bucket"
        if code in ("AccessDenied", "403"):
            return "access denied"
        return f"{code}: {error.get('Message', '')}".strip(": ")
    return str(exc)


# --- meters: the byte limits, judged once per read (a chunk of 8-64 KiB), never per line ----------


class _StreamOverLimit(SourceOverLimit):
    """A byte limit, found below the text; the record reader that meets it says how far it had got."""

    def __init__(self, uri: str, limit: str, detail: str) -> None:
        super().__init__(uri, limit, detail)
        self.detail = detail

    def after(self, name: str, lines_done: int) -> SourceOverLimit:
        where = f"after line {lines_done}" if lines_done else "in line 1"
        return SourceOverLimit(name, self.limit, f"{where}: {self.detail}")


class _Meter(io.BufferedIOBase):
    """A read-only pass-through that counts the bytes read through it; subclasses judge the count."""

    def __init__(self, inner: Any) -> None:
        super().__init__()
        self._inner = inner
        # TextIOWrapper prefers read1; a botocore body has none, so it gets plain reads as before.
        self._read1 = getattr(inner, "read1", None) or inner.read
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            # A whole-stream read goes chunk by chunk, so the count is judged while it grows.
            return b"".join(iter(lambda: self.read(_READ_SIZE), b""))
        return self._counted(self._inner.read(size))

    def read1(self, size: int = -1) -> bytes:
        return self._counted(self._read1(size if size >= 0 else _READ_SIZE))

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def _counted(self, data: bytes) -> bytes:
        self.bytes_read += len(data)
        self._judge()
        return data

    def _judge(self) -> None:
        pass


class _SourceMeter(_Meter):
    """The source as stored (S3 body, HTTP response): MAX_SOURCE_BYTES."""

    def __init__(self, inner: Any, uri: str) -> None:
        super().__init__(inner)
        self._uri = uri

    def _judge(self) -> None:
        if self.bytes_read > MAX_SOURCE_BYTES:
            raise _StreamOverLimit(
                self._uri, "MAX_SOURCE_BYTES", f"more than {MAX_SOURCE_BYTES:,} bytes read from the source"
            )


class _SpoolMeter(_Meter):
    """The spooled .zip, seekable for zipfile: counts what a member's decompressor reads."""

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return int(self._inner.seek(offset, whence))

    def tell(self) -> int:
        return int(self._inner.tell())


class _InflateMeter(_Meter):
    """Decompressed output: MAX_DECOMPRESSED_BYTES, and past the grace MAX_DECOMPRESSION_RATIO against
    the compressed bytes `packed` has read since `baseline`. A bomb (zeros inflate about 1,000 times)
    stops a chunk past the grace, having produced some 16 MiB, whatever it would have become."""

    def __init__(self, inner: Any, uri: str, packed: _Meter, baseline: int = 0) -> None:
        super().__init__(inner)
        self._uri = uri
        self._packed = packed
        self._baseline = baseline

    def _judge(self) -> None:
        out = self.bytes_read
        if out > MAX_DECOMPRESSED_BYTES:
            raise _StreamOverLimit(
                self._uri,
                "MAX_DECOMPRESSED_BYTES",
                f"more than {MAX_DECOMPRESSED_BYTES:,} bytes after decompression",
            )
        if out > DECOMPRESSION_RATIO_GRACE_BYTES:
            packed = self._packed.bytes_read - self._baseline
            if out > MAX_DECOMPRESSION_RATIO * packed:
                raise _StreamOverLimit(
                    self._uri,
                    "MAX_DECOMPRESSION_RATIO",
                    f"{out:,} bytes decompressed from {packed:,}, more than {MAX_DECOMPRESSION_RATIO} times as many",
                )


@contextmanager
def _open_zip_member(uri: str, path: str, raw: _Meter) -> Iterator[_Meter]:
    with ExitStack() as stack:
        spool = stack.enter_context(tempfile.TemporaryFile(prefix="busline-", suffix=".zip"))
        try:
            # `raw` is metered, so the spool stops at MAX_SOURCE_BYTES, not when /tmp is full.
            shutil.copyfileobj(raw, spool, _COPY_BUFFER)
            spool.seek(0)
            packed = _SpoolMeter(spool)
            archive = stack.enter_context(zipfile.ZipFile(packed))
        except _TRANSIENT:
            raise
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise SourceUnreadable(uri, f"not a readable zip archive: {exc}") from exc
        member = _pick_member(uri, path, archive)
        _refuse_declared_sizes(uri, member)
        try:
            opened = stack.enter_context(archive.open(member))
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError, EOFError) as exc:
            # a damaged local header, an unsupported compression method, encryption
            raise SourceUnreadable(uri, f"cannot open {member.filename} in the zip archive: {exc}") from exc
        # The directory's sizes can lie (zipfile stops a member at its declared size, but not a bomb
        # hidden in a declared ratio that looks honest), so the member is metered all the same.
        yield _InflateMeter(opened, uri, packed, packed.bytes_read)


def _refuse_declared_sizes(uri: str, member: zipfile.ZipInfo) -> None:
    size, packed = member.file_size, member.compress_size
    if size > MAX_DECOMPRESSED_BYTES:
        raise SourceOverLimit(
            uri,
            "MAX_DECOMPRESSED_BYTES",
            f"{member.filename} declares {size:,} bytes decompressed, more than {MAX_DECOMPRESSED_BYTES:,}",
        )
    if size > DECOMPRESSION_RATIO_GRACE_BYTES and size > MAX_DECOMPRESSION_RATIO * packed:
        raise SourceOverLimit(
            uri,
            "MAX_DECOMPRESSION_RATIO",
            f"{member.filename} declares {size:,} bytes from {packed:,} compressed, "
            f"more than {MAX_DECOMPRESSION_RATIO} times as many",
        )


def _pick_member(uri: str, path: str, archive: zipfile.ZipFile) -> zipfile.ZipInfo:
    members = [
        info
        for info in archive.infolist()
        if not info.is_dir() and not info.filename.startswith(_IGNORED_MEMBER_PREFIXES)
    ]
    if len(members) == 1:
        return members[0]
    wanted = posixpath.basename(path)[: -len(".zip")]
    named = [info for info in members if posixpath.basename(info.filename) == wanted]
    if len(named) == 1:
        return named[0]
    names = ", ".join(info.filename for info in members) or "none"
    raise SourceUnreadable(uri, f"the archive must hold one file or one named '{wanted}' (it holds: {names})")


# --- records ------------------------------------------------------------------------------------


class RecordEnds:
    """Where the last record a parser yielded ends: the text's bytes (UTF-8, a leading byte-order mark not
    counted) and physical lines up to there. Measured only when asked, which a reader that checkpoints does
    once a chunk, so the parsers keep their pace."""

    def __init__(self) -> None:
        self.measure: Callable[[], tuple[int, int]] = lambda: (0, 0)

    def after_last(self) -> tuple[int, int]:
        """(bytes, lines) of the text up to the end of the last record yielded."""
        return self.measure()


@dataclass(frozen=True)
class ResumePoint:
    """A stream that starts right after a record another reader ended on: what that reader had learnt."""

    header: tuple[str, ...] | None = None  # a CSV's columns (its header line is not in the stream)
    lines: int = 0  # physical lines before the stream, so errors name the source's own lines


def _utf8_length(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def iter_records(
    stream: IO[bytes],
    fmt: str,
    *,
    name_hint: str = "source",
    delimiter: str = ",",
    null_values: Sequence[str] = ("NA", ""),
    ends: RecordEnds | None = None,
    resume: ResumePoint | None = None,
) -> Iterator[Record]:
    """Records of a csv / ndjson / json (top-level array) stream, values as text or None.

    `name_hint` (usually the URI) names the source in errors. Malformed input raises
    SourceUnreadable naming the line; a record over a source limit (MAX_RECORD_LENGTH,
    MAX_SOURCE_JSON_DEPTH, MAX_SOURCE_FIELDS) raises SourceOverLimit. A failing connection
    (a timeout, a reset) is raised as it is, to be retried.

    `ends`, when given, tells where in the text the last record yielded ends (a reader that checkpoints
    asks it between records); `resume` starts a stream that begins right after such an end.
    """
    nulls = frozenset(null_values)
    # utf-8-sig: spreadsheets like to start CSV exports with a byte-order mark (never mid-source).
    text = io.TextIOWrapper(stream, encoding="utf-8" if resume else "utf-8-sig", newline="")  # type: ignore[arg-type]
    try:
        with stream_errors_named(name_hint):
            if fmt == "csv":
                yield from _csv_records(text, name_hint, delimiter, nulls, ends or RecordEnds(), resume)
            elif fmt == "ndjson":
                yield from _ndjson_records(text, name_hint, nulls, ends, resume)
            elif fmt == "json":
                yield from _json_array_records(text, name_hint, nulls, ends or RecordEnds(), resume)
            else:
                raise SourceUnreadable(name_hint, f"unknown format '{fmt}' (csv, ndjson or json)")
    finally:
        # The caller owns the binary stream; only release our wrapper's hold on it (the caller may
        # already have closed it when it abandoned the records half way).
        with contextlib.suppress(ValueError):
            text.detach()


def has_line_longer_than(text: bytes, limit: int) -> bool:
    """Whether a line of `text` (cut at "\n") is longer than `limit` bytes, measured only where one could be.

    Such a line holds a whole stretch of limit // 2 bytes, with no line ending, starting at a multiple of
    limit // 2; so when every such stretch has a line ending, no line is that long, and the text is not
    split into lines to measure each (a twentieth of a chunk's transform, when it was)."""
    stretch = max(1, limit // 2)
    for start in range(0, len(text) - stretch + 1, stretch):
        if text.find(b"\n", start, start + stretch) < 0:
            return max(map(len, text.split(b"\n"))) > limit
    return False


def plain_csv_table(
    text: bytes, *, delimiter: str = ",", null_values: Sequence[str] = ("NA", "")
) -> pa.Table | None:
    """A whole CSV (its header line first) as a table of text columns, parsed by Arrow in C, when nothing
    in it can be read differently from the way _csv_records reads it; None when in doubt (a quote, a
    carriage return, a NUL, a byte-order mark, text that is not UTF-8, a line over MAX_RECORD_LENGTH, a
    header too wide or naming a column twice, any row Arrow refuses, or no row at all): the caller then
    reads the records with iter_records, which says what is wrong, if anything.

    Without quotes or carriage returns a CSV has one reading: lines at "\n", fields at the delimiter, no
    line that is empty. The values are then the same, and so are the nulls (exact matches of null_values).
    """
    if len(delimiter) != 1 or delimiter in '"\r\n' or any(mark in text for mark in _NOT_PLAIN):
        return None
    try:
        text.decode("utf-8")  # strict: Arrow's own check lets encoded surrogates through
    except UnicodeDecodeError:
        return None
    header_end = text.find(b"\n")
    header = (text if header_end < 0 else text[:header_end]).decode("utf-8").split(delimiter)
    if len(header) > MAX_SOURCE_FIELDS or len(set(header)) != len(header) or header == [""]:
        return None
    if has_line_longer_than(text, MAX_RECORD_LENGTH):
        return None
    try:
        table = pa_csv.read_csv(
            pa.py_buffer(text),
            read_options=pa_csv.ReadOptions(use_threads=False, block_size=max(1 << 20, len(text) + 1)),
            parse_options=pa_csv.ParseOptions(delimiter=delimiter, quote_char=False, ignore_empty_lines=True),
            convert_options=pa_csv.ConvertOptions(
                column_types=dict.fromkeys(header, pa.string()),
                null_values=list(null_values),
                strings_can_be_null=True,
            ),
        )
    except (pa.ArrowException, ValueError):
        return None
    if table.num_rows == 0 or table.column_names != header:
        return None
    return table


# Bytes whose reading by Arrow and by the csv module may differ: quotes, carriage returns (a lone "\r" ends a
# line for csv), NUL (not CSV text for _csv_records), a byte-order mark (Arrow drops one at the start).
_NOT_PLAIN = (b'"', b"\r", b"\x00", b"\xef\xbb\xbf")


@contextmanager
def stream_errors_named(name_hint: str) -> Iterator[None]:
    """Reading an opened source: a stream that cannot be read (a truncated gzip, a corrupt zip member, text
    that is not UTF-8) is unreadable for good, naming the source; a failing connection is raised as it is,
    to be retried."""
    try:
        yield
    except _TRANSIENT:
        raise
    except UnicodeDecodeError as exc:
        raise SourceUnreadable(name_hint, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except (OSError, EOFError, zlib.error, zipfile.BadZipFile) as exc:
        raise SourceUnreadable(name_hint, f"cannot read the stream: {exc}") from exc


def _record_too_long(name: str, line: int, what: str) -> SourceOverLimit:
    return SourceOverLimit(
        name, "MAX_RECORD_LENGTH", f"line {line}: {what} longer than {MAX_RECORD_LENGTH:,} characters"
    )


def _too_deep(name: str, line: int) -> SourceUnreadable:
    return _BadRecord.too_deep().at(name, line)


def _too_many_fields(name: str, line: int, count: int, what: str) -> SourceOverLimit:
    return SourceOverLimit(
        name, "MAX_SOURCE_FIELDS", f"line {line}: {count:,} {what}, more than {MAX_SOURCE_FIELDS:,}"
    )


def _csv_records(
    text: IO[str],
    name: str,
    delimiter: str,
    nulls: frozenset[str],
    ends: RecordEnds,
    resume: ResumePoint | None,
) -> Iterator[Record]:
    limit = MAX_RECORD_LENGTH
    read = text.read
    base = resume.lines if resume else 0  # lines before this stream: errors name the source's lines
    done = 0  # reader.line_num when the last record was complete
    # what csv has been fed, for RecordEnds: the bytes of the pieces before the one it reads now
    fed_bytes = 0
    feeding = ""
    feeding_from = 0  # reader.line_num when `feeding` was handed

    def feed(piece: str) -> io.StringIO:
        nonlocal fed_bytes, feeding, feeding_from
        fed_bytes += _utf8_length(feeding)
        feeding, feeding_from = piece, reader.line_num
        return io.StringIO(piece, newline="")

    def record_end() -> tuple[int, int]:
        taken = io.StringIO(feeding, newline="").readlines()[: done - feeding_from]
        return fed_bytes + _utf8_length("".join(taken)), base + done

    ends.measure = record_end

    def lines_in_chunks() -> Iterator[io.StringIO]:
        # csv.reader fed by the text itself would take a physical line of any length, and keep adding
        # lines to an open quoted field. So it is fed whole lines a chunk at a time (a Python step per
        # line would cost some 7% of the whole read), each read sized so that the open record plus the
        # read stays within the limit: no record can pass it between two chunks unseen.
        carry = ""  # the start of a line not yet ended
        handed = ""  # the lines of the last chunk
        open_record = 0  # characters of the record csv is in the middle of (0 between records)
        before = 0  # reader.line_num when the last chunk was handed
        while True:
            consumed = reader.line_num  # csv asks for more only once it has taken every line handed
            if done == consumed:
                open_record = 0
            elif done >= before:  # rare: a record began in the last chunk and goes on past it
                open_record = sum(map(len, io.StringIO(handed, newline="").readlines()[done - before :]))
            else:
                open_record += len(handed)
            before = consumed
            room = limit - open_record - len(carry)
            if room < 0:
                raise _record_too_long(name, base + consumed + 1, "a record")
            more = read(min(_READ_SIZE, room) or 1)
            if not more:
                break
            # At the limit one more character can only end a line on a lone \r; anything else is over.
            if not room and not (carry.endswith("\r") and more != "\n"):
                raise _record_too_long(name, base + consumed + 1, "a record")
            nul = more.find("\x00")
            if nul >= 0:
                # Python's csv takes NUL as data since 3.11; in a CSV it means a binary file.
                line = consumed + len(io.StringIO(f"{carry}{more[:nul]}.", newline="").readlines())
                raise SourceUnreadable(name, f"line {base + line}: a NUL character (not CSV text)")
            chunk = carry + more
            # A final \r may be half of a \r\n, and csv must see the two in one line.
            end = len(chunk) - 1 if chunk.endswith("\r") else len(chunk)
            cut = max(chunk.rfind("\n", 0, end), chunk.rfind("\r", 0, end)) + 1
            handed, carry = chunk[:cut], chunk[cut:]
            if handed:
                # newline="" splits at \r, \n and \r\n as the text would, never at the other breaks
                # str.splitlines knows (\f, \x1c, \u2028...), which are data in a CSV field.
                yield feed(handed)
        if carry:
            yield feed(carry)

    reader = csv.reader(itertools.chain.from_iterable(lines_in_chunks()), delimiter=delimiter, strict=True)
    try:
        if resume is not None and resume.header is not None:
            header = list(resume.header)
        else:
            first = next(reader, None)
            if first is None:
                return
            header = first
            done = reader.line_num
            if len(header) > MAX_SOURCE_FIELDS:
                raise _too_many_fields(name, base + reader.line_num, len(header), "columns in the header")
            if len(set(header)) != len(header):
                repeated = sorted(column for column, count in Counter(header).items() if count > 1)
                raise SourceUnreadable(name, f"line 1: repeated column name {', '.join(repeated)}")
        width = len(header)
        for row in reader:
            done = reader.line_num
            if len(row) != width:
                if not row:  # blank line
                    continue
                if len(row) > MAX_SOURCE_FIELDS:
                    raise _too_many_fields(name, base + reader.line_num, len(row), "fields")
                raise SourceUnreadable(
                    name, f"line {base + reader.line_num}: {len(row)} fields where the header has {width}"
                )
            # Most rows hold no null marker: one C-level set check spares a per-cell test.
            if nulls.isdisjoint(row):
                yield dict(zip(header, row, strict=True))
            else:
                yield {
                    column: (None if value in nulls else value)
                    for column, value in zip(header, row, strict=True)
                }
    except csv.Error as exc:
        raise SourceUnreadable(name, f"line {base + reader.line_num}: {exc}") from exc
    except _StreamOverLimit as exc:
        raise exc.after(name, base + reader.line_num) from exc


class _BadRecord(Exception):
    """A decoded JSON value that cannot be a record; the caller, which knows the line, reports it."""

    def __init__(self, problem: str, limit: str | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.limit = limit

    @classmethod
    def too_deep(cls) -> _BadRecord:
        return cls(f"a record nested more than {MAX_SOURCE_JSON_DEPTH} levels deep", "MAX_SOURCE_JSON_DEPTH")

    def at(self, name: str, line: int) -> SourceUnreadable:
        reason = f"line {line}: {self.problem}"
        return (
            SourceUnreadable(name, reason)
            if self.limit is None
            else SourceOverLimit(name, self.limit, reason)
        )


def _as_text(value: Any, nulls: frozenset[str]) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return None if value in nulls else value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    # Nested values stay JSON, so a string column can still carry them; the record is level 1.
    if _deeper_than(value, MAX_SOURCE_JSON_DEPTH - 1):
        raise _BadRecord.too_deep()
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _deeper_than(value: Any, allowed: int) -> bool:
    """Whether lists and objects nest more than `allowed` levels in `value` (itself one); no recursion."""
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if level > allowed:
            return True
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, dict | list):
                stack.append((child, level + 1))
    return False


def _record_from_object(value: Any, nulls: frozenset[str]) -> Record:
    if not isinstance(value, dict):
        raise _BadRecord(f"expected a JSON object, got {type(value).__name__}")
    if len(value) > MAX_SOURCE_FIELDS:
        raise _BadRecord(f"{len(value):,} keys, more than {MAX_SOURCE_FIELDS:,}", "MAX_SOURCE_FIELDS")
    return {str(key): _as_text(item, nulls) for key, item in value.items()}


def _invalid_json(name: str, line: int, exc: ValueError) -> SourceUnreadable:
    # JSONDecodeError says what it expected; a plain ValueError is e.g. an integer of 5,000 digits.
    return SourceUnreadable(name, f"line {line}: invalid JSON ({getattr(exc, 'msg', exc)})")


def _ndjson_records(
    text: IO[str], name: str, nulls: frozenset[str], ends: RecordEnds | None, resume: ResumePoint | None
) -> Iterator[Record]:
    limit = MAX_RECORD_LENGTH
    readline = text.readline
    line_number = resume.lines if resume else 0
    read_bytes = 0
    measured = ends is not None  # a byte count per line only for a reader that asks
    if ends is not None:
        ends.measure = lambda: (read_bytes, line_number)
    try:
        # A bounded readline: iterating the text would hold a line of any length.
        while line := readline(limit + 1):
            line_number += 1
            if measured:
                read_bytes += _utf8_length(line)
            if len(line) > limit:
                raise _record_too_long(name, line_number, "a line")
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except RecursionError as exc:
                raise _too_deep(name, line_number) from exc
            except ValueError as exc:
                raise _invalid_json(name, line_number, exc) from exc
            try:
                record = _record_from_object(value, nulls)
            except _BadRecord as problem:
                raise problem.at(name, line_number) from None
            yield record
    except _StreamOverLimit as exc:
        raise exc.after(name, line_number) from exc


_WHITESPACE = " \t\r\n"


def _json_array_records(
    text: IO[str], name: str, nulls: frozenset[str], ends: RecordEnds, resume: ResumePoint | None
) -> Iterator[Record]:
    """Stream the objects of a top-level JSON array without holding the whole document; `resume` starts
    inside the array, right after an item."""
    decoder = json.JSONDecoder()
    limit = MAX_RECORD_LENGTH
    buffer = ""
    position = 0
    lines_before = resume.lines if resume else 0  # newlines in text already dropped from the buffer
    bytes_before = 0  # bytes of the text already dropped from the buffer
    eof = False

    def record_end() -> tuple[int, int]:
        return bytes_before + _utf8_length(buffer[:position]), lines_before + buffer.count("\n", 0, position)

    ends.measure = record_end

    def line_at(offset: int) -> int:
        return lines_before + buffer.count("\n", 0, offset) + 1

    def fill(size: int = _READ_SIZE) -> bool:
        nonlocal buffer, position, lines_before, bytes_before, eof
        if eof:
            return False
        more = text.read(size)
        if not more:
            eof = True
            return False
        lines_before += buffer.count("\n", 0, position)
        bytes_before += _utf8_length(buffer[:position])
        buffer = buffer[position:] + more
        position = 0
        return True

    def next_significant() -> str | None:
        nonlocal position
        while True:
            while position < len(buffer) and buffer[position] in _WHITESPACE:
                position += 1
            if position < len(buffer):
                return buffer[position]
            if not fill():
                return None

    def decode_item() -> tuple[Any, int]:
        while True:
            try:
                return decoder.raw_decode(buffer, position)
            except json.JSONDecodeError as exc:
                # An item cut by the read boundary decodes once more text arrives, but only up to the
                # record limit: the buffer never holds more than that of one unfinished item.
                cut = exc.pos >= len(buffer) - _CUT_MARGIN or exc.msg.startswith("Unterminated string")
                room = limit + 1 - (len(buffer) - position)
                if cut and room <= 0:
                    raise _record_too_long(name, line_at(position), "an item") from exc
                if not cut or not fill(min(_READ_SIZE, room)):
                    raise _invalid_json(name, line_at(exc.pos), exc) from exc
            except RecursionError as exc:
                raise _too_deep(name, line_at(position)) from exc
            except ValueError as exc:
                raise _invalid_json(name, line_at(position), exc) from exc

    try:
        expect_item = True  # right after '[' or ','
        first_item = True
        if resume is not None:
            expect_item = first_item = False
        else:
            first = next_significant()
            if first is None:
                raise SourceUnreadable(name, "empty document (expected a JSON array)")
            if first != "[":
                raise SourceUnreadable(name, f"line {line_at(position)}: expected a JSON array")
            position += 1
        while True:
            char = next_significant()
            if char is None:
                raise SourceUnreadable(
                    name, f"line {line_at(position)}: unexpected end of document inside the array"
                )
            if char == "]" and (first_item or not expect_item):
                position += 1
                break
            if not expect_item:
                if char != ",":
                    raise SourceUnreadable(
                        name, f"line {line_at(position)}: expected ',' or ']' between items"
                    )
                position += 1
                expect_item = True
                continue
            value, end = decode_item()
            if end - position > limit:  # read whole in one go, before the item could be seen unfinished
                raise _record_too_long(name, line_at(position), "an item")
            try:
                record = _record_from_object(value, nulls)
            except _BadRecord as problem:
                raise problem.at(name, line_at(position)) from None
            position = end  # before the yield: RecordEnds measures up to here
            yield record
            expect_item = False
            first_item = False

        if next_significant() is not None:
            raise SourceUnreadable(name, f"line {line_at(position)}: unexpected content after the array")
    except _StreamOverLimit as exc:
        raise exc.after(name, line_at(position) - 1) from exc


RecordT = TypeVar("RecordT")


def iter_chunks(records: Iterable[RecordT], chunk_rows: int) -> Iterator[list[RecordT]]:
    """Group records into lists of `chunk_rows` (the last one may be shorter; none when empty)."""
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    chunk: list[RecordT] = []
    for record in records:
        chunk.append(record)
        if len(chunk) == chunk_rows:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


__all__ = ["iter_chunks", "iter_records", "open_source", "s3_location"]
