"""Shared by every test folder: make the Lambda layer (`busline_core`) importable as it is on AWS."""

import sys
from pathlib import Path

LAYER_DIR = Path(__file__).resolve().parent.parent / "src" / "layer"
if str(LAYER_DIR) not in sys.path:
    sys.path.insert(0, str(LAYER_DIR))


import shutil  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture
def cloud_data_dir() -> Iterator[Path]:
    """A data dir for `busline local up`: pytest's tmp_path sits under a 0700 folder that the
    `pgserver` user (Postgres, when we run as root) cannot enter."""
    folder = Path(tempfile.mkdtemp(prefix="busline-test-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)
