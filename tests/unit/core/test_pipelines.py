"""Named pipelines: found as modules of the `pipelines` package, expanded to valid specs, bad names named;
dashboard declarations checked; a pipeline's hook held to its contract (transform.apply_hook).
pipelines/test_flights.py tests the flights pipeline itself."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from busline_core.dashboards import DashboardQuery
from busline_core.errors import InvalidTask
from busline_core.pipelines import InvalidPipeline, expand_pipeline, registry
from busline_core.transform import TableResult, apply_hook
from pydantic import ValidationError


def test_unknown_pipeline_is_named() -> None:
    with pytest.raises(InvalidPipeline) as caught:
        expand_pipeline("trains", {}, "b")
    assert "unknown pipeline 'trains'" in str(caught.value)
    assert caught.value.field == "pipeline"


def test_invalid_pipeline_is_a_value_error_and_an_invalid_task() -> None:
    # The API maps InvalidTask to 400; callers that only know the contract catch ValueError.
    with pytest.raises(ValueError):
        expand_pipeline("nope", {}, "b")
    with pytest.raises(InvalidTask):
        expand_pipeline("nope", {}, "b")


@pytest.mark.parametrize(
    ("statement", "problem"),
    [
        ("DELETE FROM {table}", "does not start with SELECT or WITH"),
        ("SELECT 1, 2 FROM {table}; DROP TABLE {table}", "is more than one statement"),
        ("/* looks like a comment */ UPDATE {table} SET x = 1", "does not start with SELECT or WITH"),
        ("SELECT 1, 2 FROM flights", "names no {table}"),
    ],
)
def test_a_dashboard_query_that_is_not_one_select_of_its_table_is_refused(statement: str, problem: str) -> None:
    # When a pipeline declares such a query / Then its declaration fails, naming why
    with pytest.raises(ValidationError, match=re.escape(problem)):
        DashboardQuery(name="q", title="Q", chart="bar", sql=statement)


def test_a_dashboard_query_may_end_in_a_semicolon_and_carry_comments() -> None:
    query = DashboardQuery(name="q", title="Q", chart="line", sql="-- per day\nSELECT day, count(*) FROM {table};")
    assert query.chart == "line"


# --- a pipeline added as one file -------------------------------------------------------------------

TINY_PIPELINE = '''"""Squares: the owner's numbers file, each number with its square (a hook computes it)."""
from busline_core.pipelines import Context, Pipeline, TableParam

class Params(TableParam):
    table: str = "squares"


def build(params: Params, context: Context) -> dict:
    return {
        "source": {"uri": f"s3://{context.data_bucket}/shared/numbers.csv", "format": "csv"},
        "columns": [{"name": "n", "type": "int", "required": True}, {"name": "square", "type": "int"}],
        "target": {"table": params.table, "key": ["n"], "mode": "upsert"},
    }


def squares(rows: list[dict]) -> list[dict]:
    return [{**row, "square": row["n"] ** 2} for row in rows if row["n"] >= 0]


PIPELINE = Pipeline(build=build, params=Params, hook=squares)
'''


@pytest.fixture
def project_pipelines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A project whose pipelines/ folder is this test's own (the registry reads it afresh)."""
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    saved = {name: module for name, module in sys.modules.items() if name.split(".")[0] == "pipelines"}
    for name in saved:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.cache_clear()
    yield folder
    registry.cache_clear()
    for name in [name for name in sys.modules if name.split(".")[0] == "pipelines"]:
        del sys.modules[name]
    sys.modules.update(saved)


def test_a_pipeline_added_as_one_file_is_found_with_its_params_and_hook(project_pipelines: Path) -> None:
    # Given one file of 20 lines in pipelines/ (and its test beside it, which is not a pipeline)
    (project_pipelines / "squares.py").write_text(TINY_PIPELINE)
    (project_pipelines / "test_squares.py").write_text("def test_nothing() -> None:\n    pass\n")
    assert len(TINY_PIPELINE.splitlines()) == 20
    # When the pipelines are read
    found = registry()
    # Then it is the one pipeline, expanded from its params, with its hook
    assert sorted(found) == ["squares"]
    spec = expand_pipeline("squares", {"table": "my_squares"}, "bucket")
    assert (spec.source.uri, spec.target.table, spec.chunkRows) == ("s3://bucket/shared/numbers.csv", "my_squares", 20000)
    assert found["squares"].default_table == "squares"
    with pytest.raises(InvalidPipeline) as caught:
        expand_pipeline("squares", {"table": "x", "extra": 1}, "bucket")
    assert caught.value.field == "params.extra"


# --- hooks: transform.apply_hook ---------------------------------------------------------------------

SCHEMA = pa.schema([pa.field("n", pa.int64()), pa.field("square", pa.int64())])


def _typed(*numbers: int) -> TableResult:
    table = pa.table({"n": list(numbers), "square": [None] * len(numbers)}, schema=SCHEMA)
    return TableResult(table=table, rejects=[], filtered=1)


def test_a_hooks_rows_are_loaded_and_the_rows_it_leaves_out_are_filtered() -> None:
    # Given a typed chunk of 4 rows (1 already filtered) and a hook that squares and drops negatives
    def squares(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{**row, "square": row["n"] ** 2} for row in rows if row["n"] >= 0]

    # When it runs
    result = apply_hook(_typed(3, -1, 4, -2), squares)
    # Then 2 rows go on, squared, and the 2 left out are counted as filtered
    assert result.table.to_pylist() == [{"n": 3, "square": 9}, {"n": 4, "square": 16}]
    assert (result.filtered, result.rejects) == (3, [])


@pytest.mark.parametrize(
    ("hook", "reason"),
    [
        (lambda rows: 1 / 0, "pipeline hook: division by zero"),
        (lambda rows: "not rows", "pipeline hook: returned str, not a list of rows (dicts)"),
        (lambda rows: [{"n": "three", "square": 1}], "pipeline hook: Could not convert 'three' with type str"),
    ],
)
def test_a_hook_that_fails_rejects_every_row_of_its_batch_with_the_message(hook: Any, reason: str) -> None:
    # When a hook raises, or returns what does not fit the columns
    result = apply_hook(_typed(3, 4), hook)
    # Then both rows are rejected with the message (and their data), nothing goes on, the task does not fail
    assert result.table.num_rows == 0
    assert [(reject.row, reject.at, reject.data) for reject in result.rejects] == [
        (None, "pipeline hook", {"n": 3, "square": None}),
        (None, "pipeline hook", {"n": 4, "square": None}),
    ]
    assert all(reject.reason.startswith(reason) for reject in result.rejects), result.rejects[0].reason


def test_a_hook_sees_its_own_batch_only_and_a_copy_of_it() -> None:
    # Given a hook that keeps what it is given and scribbles over it
    seen: list[list[dict[str, Any]]] = []

    def nosy(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        seen.append([dict(row) for row in rows])
        for row in rows:
            row["n"] = -999
        return []

    # When it runs over two batches
    first, second = _typed(1, 2), _typed(3)
    apply_hook(first, nosy)
    apply_hook(second, nosy)
    # Then each call saw exactly its batch, and its scribbles reached neither chunk
    assert seen == [[{"n": 1, "square": None}, {"n": 2, "square": None}], [{"n": 3, "square": None}]]
    assert first.table.column("n").to_pylist() == [1, 2]
    assert second.table.column("n").to_pylist() == [3]
