"""Shared by every test folder: make the Lambda layer (`busline_core`) importable as it is on AWS."""

import sys
from pathlib import Path

LAYER_DIR = Path(__file__).resolve().parent.parent / "src" / "layer"
if str(LAYER_DIR) not in sys.path:
    sys.path.insert(0, str(LAYER_DIR))
