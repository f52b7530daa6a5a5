"""`busline new pipeline NAME`: the module and test it writes pass ruff and their own test, as a project's
`make test` runs them; a taken or malformed name is refused and nothing is written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from busline.cli.main import app

REPO = Path(__file__).resolve().parents[3]


def test_a_new_pipeline_is_one_short_file_and_its_test_that_passes(tmp_path: Path) -> None:
    # Given a project's empty pipelines folder
    folder = tmp_path / "pipelines"
    # When `busline new pipeline orders` runs there
    result = CliRunner().invoke(app, ["new", "pipeline", "orders", "--dir", str(folder)])
    # Then it wrote the package, the module and its test
    assert result.exit_code == 0, result.output
    assert sorted(path.name for path in folder.iterdir()) == ["__init__.py", "orders.py", "test_orders.py"]
    assert len((folder / "orders.py").read_text().splitlines()) == 19  # within the 20 lines a pipeline should need
    # And both files are ruff-clean under the project's rules
    lint = subprocess.run([sys.executable, "-m", "ruff", "check", "--config", str(REPO / "pyproject.toml"), str(folder)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert lint.returncode == 0, lint.stdout + lint.stderr
    # And its test passes, importing the pipeline as the functions do (the layer and the project on the path)
    tested = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(folder)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO / "src" / "layer")])},
    )  # fmt: skip
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "2 passed" in tested.stdout


def test_a_taken_or_malformed_name_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    # Given a folder that has an orders pipeline already
    folder = tmp_path / "pipelines"
    assert CliRunner().invoke(app, ["new", "pipeline", "orders", "--dir", str(folder)]).exit_code == 0
    before = sorted(path.name for path in folder.iterdir())
    # When orders is asked for again, then a name with a dash, then a test's name
    answers = [CliRunner().invoke(app, ["new", "pipeline", name, "--dir", str(folder)]) for name in
               ("orders", "my-orders", "test_x")]  # fmt: skip
    # Then each is refused (exit 2) saying why, and the folder is as it was
    assert [answer.exit_code for answer in answers] == [2, 2, 2]
    assert "already exists: pick another name" in answers[0].output
    assert "lowercase letters, digits and _" in answers[1].output
    assert "a Python keyword, or a test's name" in answers[2].output
    assert sorted(path.name for path in folder.iterdir()) == before
