"""Read a source as a stream of records of text values.

Sources can be far bigger than a Lambda's memory, so nothing here reads a whole object: S3 bodies
and HTTP responses are streamed, `.gz` is decompressed on the fly, and a `.zip` (whose directory
sits at the end of the file) is spooled to a temporary file in /tmp and its member streamed.
Every format yields the same thing, dicts of str or None, so one transform serves them all.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import posixpath
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import IO, Any, BinaryIO, TypeVar
from urllib.parse import unquote, urlsplit

from .errors import SourceUnreadable
from .safe_http import open_url

_READ_SIZE = 1 << 16
_COPY_BUFFER = 1 << 20
# Besides the data file, archives made on macOS carry resource forks; they are never the data.
_IGNORED_MEMBER_PREFIXES = ("__MACOSX/",)

Record = dict[str, str | None]


@contextmanager
def open_source(uri: str, s3_client: Any, *, allow_loopback_http: bool = False) -> Iterator[BinaryIO]:
    """Open `uri` (s3:// or http(s)://) as a binary stream, decompressing `.gz` / `.zip` by suffix.

    http(s) goes through safe_http.py; `allow_loopback_http` is the stack's AllowLoopbackHttpSources.
    """
    parts = urlsplit(uri)
    path = unquote(parts.path)
    with ExitStack() as stack:
        raw = stack.enter_context(_open_raw(uri, s3_client, allow_loopback_http))
        lowered = path.lower()
        if lowered.endswith(".gz"):
            stream: BinaryIO = stack.enter_context(gzip.GzipFile(fileobj=raw, mode="rb"))  # type: ignore[assignment]
        elif lowered.endswith(".zip"):
            stream = stack.enter_context(_open_zip_member(uri, path, raw))
        else:
            stream = raw
        yield stream


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
            body = s3_client.get_object(Bucket=bucket, Key=key)["Body"]
        except Exception as exc:  # botocore raises many shapes; all mean the same to the task
            raise SourceUnreadable(uri, _describe_s3_error(exc)) from exc
        try:
            yield body
        finally:
            body.close()
    elif scheme in ("http", "https"):
        with open_url(uri, allow_loopback_http=allow_loopback_http) as response:
            yield response
    else:
        raise SourceUnreadable(uri, f"unsupported scheme '{parts.scheme}'")


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


@contextmanager
def _open_zip_member(uri: str, path: str, raw: BinaryIO) -> Iterator[BinaryIO]:
    with ExitStack() as stack:
        spool = stack.enter_context(tempfile.TemporaryFile(prefix="busline-", suffix=".zip"))
        try:
            shutil.copyfileobj(raw, spool, _COPY_BUFFER)
            spool.seek(0)
            archive = stack.enter_context(zipfile.ZipFile(spool))
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise SourceUnreadable(uri, f"not a readable zip archive: {exc}") from exc
        member = _pick_member(uri, path, archive)
        yield stack.enter_context(archive.open(member))  # type: ignore[misc]


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


def iter_records(
    stream: IO[bytes],
    fmt: str,
    *,
    name_hint: str = "source",
    delimiter: str = ",",
    null_values: Sequence[str] = ("NA", ""),
) -> Iterator[Record]:
    """Records of a csv / ndjson / json (top-level array) stream, values as text or None.

    `name_hint` (usually the URI) names the source in errors. Malformed input raises
    SourceUnreadable naming the line.
    """
    nulls = frozenset(null_values)
    # utf-8-sig: spreadsheets like to start CSV exports with a byte-order mark.
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")  # type: ignore[arg-type]
    try:
        if fmt == "csv":
            yield from _csv_records(text, name_hint, delimiter, nulls)
        elif fmt == "ndjson":
            yield from _ndjson_records(text, name_hint, nulls)
        elif fmt == "json":
            yield from _json_array_records(text, name_hint, nulls)
        else:
            raise SourceUnreadable(name_hint, f"unknown format '{fmt}' (csv, ndjson or json)")
    except UnicodeDecodeError as exc:
        raise SourceUnreadable(name_hint, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except (OSError, EOFError, zlib.error, zipfile.BadZipFile) as exc:
        raise SourceUnreadable(name_hint, f"cannot read the stream: {exc}") from exc
    finally:
        # The caller owns the binary stream; only release our wrapper's hold on it (the caller may
        # already have closed it when it abandoned the records half way).
        with contextlib.suppress(ValueError):
            text.detach()


def _csv_records(text: IO[str], name: str, delimiter: str, nulls: frozenset[str]) -> Iterator[Record]:
    reader = csv.reader(text, delimiter=delimiter, strict=True)
    try:
        header = next(reader, None)
        if header is None:
            return
        if len(set(header)) != len(header):
            repeated = sorted({column for column in header if header.count(column) > 1})
            raise SourceUnreadable(name, f"line 1: repeated column name {', '.join(repeated)}")
        width = len(header)
        for row in reader:
            if len(row) != width:
                if not row:  # blank line
                    continue
                raise SourceUnreadable(
                    name, f"line {reader.line_num}: {len(row)} fields where the header has {width}"
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
        raise SourceUnreadable(name, f"line {reader.line_num}: {exc}") from exc


def _as_text(value: Any, nulls: frozenset[str]) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return None if value in nulls else value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    # Nested values stay JSON, so a string column can still carry them.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _record_from_object(value: Any, name: str, line: int, nulls: frozenset[str]) -> Record:
    if not isinstance(value, dict):
        raise SourceUnreadable(name, f"line {line}: expected a JSON object, got {type(value).__name__}")
    return {str(key): _as_text(item, nulls) for key, item in value.items()}


def _ndjson_records(text: IO[str], name: str, nulls: frozenset[str]) -> Iterator[Record]:
    for line_number, line in enumerate(text, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SourceUnreadable(name, f"line {line_number}: invalid JSON ({exc.msg})") from exc
        yield _record_from_object(value, name, line_number, nulls)


_WHITESPACE = " \t\r\n"


def _json_array_records(text: IO[str], name: str, nulls: frozenset[str]) -> Iterator[Record]:
    """Stream the objects of a top-level JSON array without holding the whole document."""
    decoder = json.JSONDecoder()
    buffer = ""
    position = 0
    lines_before = 0  # newlines in text already dropped from the buffer
    eof = False

    def line_at(offset: int) -> int:
        return lines_before + buffer.count("\n", 0, offset) + 1

    def fill() -> bool:
        nonlocal buffer, position, lines_before, eof
        if eof:
            return False
        more = text.read(_READ_SIZE)
        if not more:
            eof = True
            return False
        lines_before += buffer.count("\n", 0, position)
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

    first = next_significant()
    if first is None:
        raise SourceUnreadable(name, "empty document (expected a JSON array)")
    if first != "[":
        raise SourceUnreadable(name, f"line {line_at(position)}: expected a JSON array")
    position += 1
    expect_item = True  # right after '[' or ','
    first_item = True
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
                raise SourceUnreadable(name, f"line {line_at(position)}: expected ',' or ']' between items")
            position += 1
            expect_item = True
            continue
        while True:
            try:
                value, end = decoder.raw_decode(buffer, position)
                break
            except json.JSONDecodeError as exc:
                # An item cut by the read boundary decodes once more text arrives.
                if not fill():
                    raise SourceUnreadable(
                        name, f"line {line_at(exc.pos)}: invalid JSON ({exc.msg})"
                    ) from exc
        yield _record_from_object(value, name, line_at(position), nulls)
        position = end
        expect_item = False
        first_item = False

    if next_significant() is not None:
        raise SourceUnreadable(name, f"line {line_at(position)}: unexpected content after the array")


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
