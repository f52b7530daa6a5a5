"""`busline new project DIR` writes a project whose own `make test` passes on a fresh folder: it sets up its
own .venv from the layer's requirements and runs the example pipeline's test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def test_a_new_project_is_the_app_and_an_example_pipeline_and_its_make_test_passes(tmp_path: Path) -> None:
    # When a project is made in a new folder
    project = tmp_path / "acme-etl"
    made = subprocess.run([sys.executable, "-m", "busline.cli.main", "new", "project", str(project)],
                          capture_output=True, text=True, timeout=60, cwd=REPO)  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr
    # Then it holds the app, the two commands, a README, the runbook, a CI script and one example pipeline
    assert sorted(path.name for path in project.iterdir()) == [
        ".ci", ".gitignore", "Makefile", "README.md", "docs", "pipelines", "samconfig.toml", "src",
        "template.yaml", "web",
    ]  # fmt: skip
    assert sorted(path.name for path in (project / "pipelines").iterdir()) == [
        "Makefile", "__init__.py", "example.py", "test_example.py",
    ]  # fmt: skip
    assert (project / "template.yaml").read_text() == (REPO / "template.yaml").read_text()
    assert (project / ".ci" / "run").read_text().rstrip().endswith("make test")
    # When its own `make test` runs there, as CI would on a clean clone of it
    environment = {key: value for key, value in os.environ.items() if key not in ("VIRTUAL_ENV", "PYTHONPATH")}
    tested = subprocess.run(["make", "test"], capture_output=True, text=True, timeout=600, cwd=project,
                            env=environment)  # fmt: skip
    # Then it set up its .venv and the example pipeline's two tests passed
    assert tested.returncode == 0, tested.stdout[-3000:] + tested.stderr[-3000:]
    assert "2 passed" in tested.stdout
    assert (project / ".venv" / "bin" / "python").exists()


def test_a_project_is_not_written_over_a_folder_that_holds_files(tmp_path: Path) -> None:
    # Given a folder with a file in it
    (tmp_path / "notes.txt").write_text("mine")
    # When a project is asked for there
    made = subprocess.run([sys.executable, "-m", "busline.cli.main", "new", "project", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, cwd=REPO)  # fmt: skip
    # Then it is refused and the folder is as it was
    assert (made.returncode, made.stderr.strip()) == (2, f"{tmp_path} is not empty: pick a new folder")
    assert [path.name for path in tmp_path.iterdir()] == ["notes.txt"]
