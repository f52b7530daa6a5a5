"""Named pipelines: the modules of the top-level `pipelines/` folder, each declaring `PIPELINE = Pipeline(...)`.

The folder ships as its own layer (PipelinesLayer: `sam build` runs pipelines/Makefile, which puts the
modules in the package `pipelines`; the local cloud builds it the same way), so adding a pipeline is adding
one file there. A short request `{"pipeline": name, "params": {...}}` becomes a full TaskSpec here: the
params are validated by the pipeline's own pydantic model (its JSON Schema is what GET /pipelines shows),
then its `build` returns the spec.

A pipeline may also declare `hook`: a function over one chunk's typed rows (a list of dicts, output column
-> value) returning the rows to load. The contract, which transform.py enforces:
- a hook sees its batch and nothing else: a copy of the chunk's rows, no clients, no task, no other chunk,
  and it is called once per delivery of the chunk (so it must not count on being called once);
- what it returns is held to the output columns' types like any row; a row it leaves out is filtered;
- if it raises, every row of the batch is rejected with the exception's message, and the task goes on.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .dashboards import DashboardQuery
from .errors import InvalidTask, PipelineNotFound
from .limits import MAX_CHUNK_ROWS, MIN_CHUNK_ROWS
from .spec import DEFAULT_CHUNK_ROWS, TaskSpec, table_name_problem

PIPELINES_PACKAGE = "pipelines"  # what pipelines/Makefile builds the folder into

Rows = list[dict[str, Any]]
Hook = Callable[[Rows], Rows]


class InvalidPipeline(InvalidTask, ValueError):
    """Unknown pipeline or bad parameter; an InvalidTask, so the API answers 400."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", errors=[{"field": field, "message": message}])
        self.field = field


class PipelineParams(BaseModel):
    """What every pipeline's params model extends: unknown parameters are refused, chunkRows is common."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    chunkRows: int = Field(default=DEFAULT_CHUNK_ROWS, ge=MIN_CHUNK_ROWS, le=MAX_CHUNK_ROWS)


class TableParam(PipelineParams):
    """Params of a pipeline that loads one table the caller may rename."""

    table: str = "data"

    @field_validator("table")
    @classmethod
    def _plain_table_name(cls, value: str) -> str:
        problem = table_name_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value


@dataclass(frozen=True)
class Context:
    """What a pipeline's build may know besides its params."""

    data_bucket: str  # shared/ in it is readable by every owner (source_access.py)


@dataclass(frozen=True)
class Pipeline:
    build: Callable[[Any, Context], dict[str, Any]]  # (validated params, context) -> a TaskSpec's JSON
    params: type[PipelineParams] = PipelineParams
    description: str = ""
    dashboard: tuple[DashboardQuery, ...] = ()
    hook: Hook | None = None
    # its schedules offer each run the rows the previous run rejected, unless a schedule says otherwise
    retry_rejects: bool = False

    @property
    def default_table(self) -> str:
        """The table it loads when its params name none: the one its dashboard reads."""
        table = self.params.model_fields.get("table")
        return str(table.default) if table is not None else ""

    def schema(self) -> dict[str, Any]:
        return self.params.model_json_schema()


class PipelineInfo(BaseModel):
    """One pipeline as GET /pipelines lists it."""

    name: str
    description: str
    params: dict[str, Any]  # the JSON Schema of its params (`busline submit NAME --param KEY=VALUE`)
    defaultTable: str
    dashboard: list[str]  # its charts' names (GET /pipelines/{name}/dashboard)


class PipelineList(BaseModel):
    items: list[PipelineInfo]


def listed() -> PipelineList:
    return PipelineList(
        items=[
            PipelineInfo(
                name=name,
                description=pipeline.description,
                params=pipeline.schema(),
                defaultTable=pipeline.default_table,
                dashboard=[query.name for query in pipeline.dashboard],
            )
            for name, pipeline in sorted(registry().items())
        ]
    )


def _modules(package: ModuleType) -> list[str]:
    names = [info.name for info in pkgutil.iter_modules(package.__path__)]
    return sorted(name for name in names if not name.startswith(("_", "test_")))


@cache
def registry() -> dict[str, Pipeline]:
    """Every pipeline of the pipelines package, by module name; none when the layer is not there."""
    try:
        package = importlib.import_module(PIPELINES_PACKAGE)
    except ModuleNotFoundError:
        return {}
    found: dict[str, Pipeline] = {}
    for name in _modules(package):
        module = importlib.import_module(f"{PIPELINES_PACKAGE}.{name}")
        pipeline = getattr(module, "PIPELINE", None)
        if not isinstance(pipeline, Pipeline):
            raise TypeError(f"{module.__name__} declares no PIPELINE = Pipeline(...)")
        found[name] = pipeline
    return found


def pipeline_named(name: str) -> Pipeline:
    pipeline = registry().get(name)
    if pipeline is None:
        raise PipelineNotFound(name)
    return pipeline


def hook_of(name: str) -> Hook | None:
    pipeline = registry().get(name)
    return None if pipeline is None else pipeline.hook


def _params_error(error: ValidationError) -> InvalidPipeline:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    # a validator's own sentence, without pydantic's "Value error, " in front of it
    cause = (first.get("ctx") or {}).get("error")
    message = str(cause) if first["type"] == "value_error" and cause is not None else str(first["msg"])
    return InvalidPipeline(f"params.{where}" if where else "params", message)


def expand_pipeline(name: str, params: dict[str, Any] | None, data_bucket: str) -> TaskSpec:
    """The TaskSpec of pipeline `name` reading its data from `data_bucket`."""
    pipeline = registry().get(name)
    if pipeline is None:
        known = ", ".join(sorted(registry())) or "none"
        raise InvalidPipeline("pipeline", f"unknown pipeline '{name}' (known: {known})")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise InvalidPipeline("params", "must be an object")
    if not data_bucket:
        raise InvalidPipeline("pipeline", f"pipeline '{name}' needs the data bucket, and none is configured")
    try:
        validated = pipeline.params.model_validate(params)
    except ValidationError as exc:
        raise _params_error(exc) from exc
    spec = {"chunkRows": validated.chunkRows, **pipeline.build(validated, Context(data_bucket=data_bucket))}
    try:
        return TaskSpec.model_validate(spec)
    except ValidationError as exc:
        # Parameters were checked above, so this is a bug in the pipeline itself; still name the field.
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "spec"
        raise InvalidPipeline(field, first["msg"]) from exc
