"""Write a new pipeline's module and test from the templates beside this file."""

from __future__ import annotations

import keyword
import re
from importlib import resources
from pathlib import Path

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_PACKAGE_INIT = '"""Named pipelines: one module each, declaring PIPELINE = Pipeline(...)."""\n'


class ScaffoldError(ValueError):
    """What the user asked for cannot be written; the message says why."""


def pipeline_name_problem(name: str) -> str | None:
    if not _NAME.match(name):
        return f"{name!r}: a pipeline name is lowercase letters, digits and _, starting with a letter (at most 63)"
    if keyword.iskeyword(name) or name.startswith("test_"):
        return f"{name!r} cannot name a module of pipelines/ (a Python keyword, or a test's name)"
    return None


def _template(file_name: str) -> str:
    return resources.files("busline.scaffold").joinpath(file_name).read_text(encoding="utf-8")


def new_pipeline(name: str, folder: Path) -> list[Path]:
    """`<folder>/<name>.py` and `<folder>/test_<name>.py` (and the package's __init__.py if the folder is
    new); refuses to overwrite anything."""
    problem = pipeline_name_problem(name)
    if problem is not None:
        raise ScaffoldError(problem)
    module, test = folder / f"{name}.py", folder / f"test_{name}.py"
    existing = [path for path in (module, test) if path.exists()]
    if existing:
        raise ScaffoldError(f"{', '.join(str(path) for path in existing)} already exists: pick another name")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    init = folder / "__init__.py"
    if not init.exists():
        init.write_text(_PACKAGE_INIT, encoding="utf-8")
        written.append(init)
    module.write_text(_template("pipeline_module.py.tmpl").format(name=name), encoding="utf-8")
    test.write_text(_template("pipeline_test.py.tmpl").format(name=name), encoding="utf-8")
    return [*written, module, test]
