"""Shared by every test folder: make the Lambda layer (`busline_core`) importable as it is on AWS."""

import sys
from pathlib import Path

LAYER_DIR = Path(__file__).resolve().parent.parent / "src" / "layer"
if str(LAYER_DIR) not in sys.path:
    sys.path.insert(0, str(LAYER_DIR))



import shutil  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402

from busline.localcloud.testing import new_data_dir  # noqa: E402


@pytest.fixture
def cloud_data_dir() -> Iterator[Path]:
    """A data dir for `busline local up` that Postgres can enter (pytest's tmp_path is under a 0700 folder)."""
    folder = new_data_dir("test")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)
