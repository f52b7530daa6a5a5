"""`busline new project DIR`: the Busline app and one example pipeline, as a project of its own."""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

import busline
from busline.scaffold.generate import ScaffoldError, new_pipeline

# What a project carries of Busline: the app as `sam build` and the local cloud read it
APP_FILES = ("template.yaml", "samconfig.toml", "docs/runbook.md", ".ci/run", "pipelines/Makefile")
APP_FOLDERS = ("src", "web")
GITIGNORE = ".venv/\n.busline/\n.aws-sam/\n__pycache__/\n"


def busline_source() -> Path:
    """The checkout this Busline runs from: the app's files are copied from it."""
    root = Path(busline.__file__).resolve().parents[1]
    if not (root / "template.yaml").is_file():
        raise ScaffoldError(f"{root} holds no template.yaml: `busline new project` needs Busline's source checkout")
    return root


def new_project(folder: Path, source: Path | None = None) -> list[Path]:
    """Write the project into `folder` (new or empty); returns the files written, folders as one entry."""
    source = source or busline_source()
    if folder.exists() and any(folder.iterdir()):
        raise ScaffoldError(f"{folder} is not empty: pick a new folder")
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for name in APP_FOLDERS:
        shutil.copytree(source / name, folder / name, ignore=ignore)
        written.append(folder / name)
    for name in APP_FILES:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / name, folder / name)
        written.append(folder / name)
    written += new_pipeline("example", folder / "pipelines")
    templates = resources.files("busline.scaffold")
    made = {
        "Makefile": templates.joinpath("project_makefile.tmpl").read_text().format(busline_source=source),
        "README.md": templates.joinpath("project_readme.md.tmpl").read_text().format(name=folder.name),
        ".gitignore": GITIGNORE,
    }
    for name, text in made.items():
        (folder / name).write_text(text, encoding="utf-8")
        written.append(folder / name)
    return written
