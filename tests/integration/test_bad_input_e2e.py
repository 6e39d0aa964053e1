"""End to end: a catalogue of bad inputs, each one real `mlflow run` against one shared store.

A good run (default parameters) first makes version 1 of the model the champion. Then every bad
input runs the pipeline in its own experiment (``MLFLOW_EXPERIMENT_NAME``), so its parent run is
the only ``main`` run there, and must:

- exit non-zero, with exactly one ``error: `` line on stderr that names the file, column or
  parameter and the problem, and no traceback;
- leave its parent run FAILED, the step that failed (ingest, for bad data) FAILED, no step run
  RUNNING and nothing downstream of the failure;
- register nothing: version 1 is still the only version and still the champion.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import Run

from tests.conftest import PROJECT_ROOT
from tests.integration.conftest import PipelineRun, explain, run_pipeline

pytestmark = pytest.mark.e2e

MODEL = "diabetes-elasticnet"
EXPERIMENT_VARIABLE = "MLFLOW_EXPERIMENT_NAME"
GOOD_EXPERIMENT = "good-input"
ERROR_PREFIX = "error: "
# Rows of the bad files: enough to split, so only the flaw itself can stop the pipeline.
SAMPLE_ROWS = 12

# Writes a bad input under a directory and returns its data_uri (the request gives fixtures).
DataSource = Callable[[Path, pytest.FixtureRequest], str]


@functools.cache
def _example() -> pd.DataFrame:
    return pd.read_csv(PROJECT_ROOT / "data/example_data.csv").head(SAMPLE_ROWS)


def _sample() -> pd.DataFrame:
    return _example().copy()


def csv_file(write: Callable[[Path], None]) -> DataSource:
    """A data source that is a local CSV file written by ``write``."""

    def source(directory: Path, request: pytest.FixtureRequest) -> str:
        path = directory / "data.csv"
        write(path)
        return str(path)

    return source


def frame_csv(make: Callable[[pd.DataFrame], pd.DataFrame], **to_csv: object) -> DataSource:
    """A CSV file of ``make(sample of the example data)``."""
    return csv_file(lambda path: make(_sample()).to_csv(path, index=False, **to_csv))


def with_value(column: str, row: int, value: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """The frame with ``value`` in ``column`` at 0-based ``row`` (the error counts rows from 1)."""

    def make(frame: pd.DataFrame) -> pd.DataFrame:
        frame[column] = frame[column].astype(object)
        frame.loc[row, column] = value
        return frame

    return make


def missing_path(directory: Path, request: pytest.FixtureRequest) -> str:
    return str(directory / "nope.csv")


def http_404(directory: Path, request: pytest.FixtureRequest) -> str:
    _, base_url = request.getfixturevalue("http_root")  # tests/conftest.py: a local http.server
    return f"{base_url}/missing.csv"


@dataclass(frozen=True)
class Case:
    """One bad input and the words its error line must contain (``{data}``: the data_uri)."""

    name: str
    expected: tuple[str, ...]
    data: DataSource | None = None
    params: tuple[str, ...] = ()

    @property
    def failed_step(self) -> str | None:
        """Bad data fails in ingest; a bad parameter before any step runs."""
        return "ingest" if self.data else None


CASES = [
    Case("empty-file", ("{data}", "the file is empty"), csv_file(lambda path: path.write_bytes(b""))),
    Case("header-only", ("{data}", "no data rows", "only a header"), frame_csv(lambda f: f.iloc[0:0])),
    Case(
        "missing-target",
        ("{data}", "missing target column 'target'", "required by the schema"),
        frame_csv(lambda f: f.drop(columns=["target"])),
    ),
    Case("text-in-numeric-column", ("{data}", "column 'bmi'", "non-numeric", "'high' at row 4"), frame_csv(with_value("bmi", 3, "high"))),
    Case("all-nan-column", ("{data}", "column 's3'", "every value is missing"), frame_csv(lambda f: f.assign(s3=np.nan))),
    Case("semicolon-delimiter", ("{data}", "delimited by ';'", "instead of ','"), frame_csv(lambda f: f, sep=";")),
    Case("nan-in-target", ("{data}", "column 'target'", "1 missing value(s)", "row 3"), frame_csv(with_value("target", 2, np.nan))),
    Case("inf-in-target", ("{data}", "column 'target'", "1 infinite value(s)", "row 3"), frame_csv(with_value("target", 2, np.inf))),
    Case(
        "duplicate-column-names",
        ("{data}", "duplicate column name(s) 'bmi'"),
        frame_csv(lambda f: f.set_axis(["age", "bmi", *f.columns[2:]], axis=1)),
    ),
    # A file saved as Latin-1: 'î' is the byte 0xee, which is not valid UTF-8.
    Case("not-utf8", ("{data}", "not UTF-8", "0xee"), frame_csv(lambda f: f.assign(clinic="Nîmes"), encoding="latin-1")),
    Case("path-not-found", ("dataset {data}", "file not found"), missing_path),
    Case("http-404", ("dataset {data}", "HTTP 404"), http_404),
    Case(
        "too-few-rows",
        ("{data}", "3 row(s) are too few to split", "at least 2 rows each"),
        frame_csv(lambda f: f.head(3)),
    ),
    Case(
        "mistyped-config-key",
        ("main: -P model.alpah", "unknown parameter", "did you mean 'alpha'?"),
        params=("model.alpah=0.3",),
    ),
    Case("negative-alpha", ("main: -P alpha", "model.params.alpha", "must be >= 0", "got -1.0"), params=("alpha=-1",)),
    # A column name that differs only in spaces or case is named, not just reported missing.
    Case(
        "near-miss-column",
        ("{data}", "missing column(s) 'bmi'", "the file has ' bmi' for 'bmi'", "check case and spaces"),
        frame_csv(lambda f: f.rename(columns={"bmi": " bmi"})),
    ),
    # A broken export after a good champion exists: RMSE 0 and R² 1 on it must not replace the champion.
    Case(
        "constant-target",
        ("{data}", "column 'target'", "every row has the same target value (100.0)", "cannot learn from it"),
        frame_csv(lambda f: f.assign(target=100.0)),
    ),
    Case(
        "100k-identical-rows",
        ("{data}", "column 'target'", "every row has the same target value"),
        frame_csv(lambda f: pd.concat([f.head(1)] * 100_000, ignore_index=True)),
    ),
    # The registry is searched by name: a quote in it would break the search after registering.
    Case("quote-in-model-name", ("main: -P model_name", "registry.model_name", "must not contain quotes"), params=("model_name=o'brien",)),
]


@dataclass
class Store:
    """The tracking store every case shares, after the good run."""

    path: Path
    good: PipelineRun

    @property
    def client(self) -> MlflowClient:
        return self.good.client


def experiment_runs(client: MlflowClient, name: str) -> list[Run]:
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None, f"no experiment {name!r}"
    return client.search_runs([experiment.experiment_id], max_results=100)


def parent_and_steps(client: MlflowClient, experiment: str) -> tuple[Run, dict[str, Run]]:
    """The one pipeline run in ``experiment`` and its step runs by entry point."""
    runs = experiment_runs(client, experiment)
    parents = [r for r in runs if r.data.tags.get("mlflow.project.entryPoint") == "main"]
    assert len(parents) == 1, [r.info.run_id for r in parents]
    parent = parents[0]
    steps = {r.data.tags["mlflow.project.entryPoint"]: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    return parent, steps


def assert_version_1_is_the_only_version_and_champion(client: MlflowClient) -> None:
    assert sorted(str(v.version) for v in client.search_model_versions(f"name='{MODEL}'")) == ["1"]
    assert [v.name for v in client.search_model_versions()] == [MODEL]
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    path = tmp_path_factory.mktemp("bad-input")
    good = run_pipeline(path, env={EXPERIMENT_VARIABLE: GOOD_EXPERIMENT})
    assert good.process.returncode == 0, explain(good)
    assert_version_1_is_the_only_version_and_champion(good.client)
    return Store(path, good)


def test_the_good_run_and_its_steps_use_the_experiment_named_in_the_environment(store):
    parent, steps = parent_and_steps(store.client, GOOD_EXPERIMENT)
    assert parent.info.status == "FINISHED"
    assert {name: run.info.status for name, run in steps.items()} == dict.fromkeys(
        ("ingest", "featurize", "train", "evaluate", "register"), "FINISHED"
    )
    assert not [line for line in store.good.process.stderr.splitlines() if line.startswith(ERROR_PREFIX)]


@pytest.mark.parametrize("case", [pytest.param(case, id=case.name) for case in CASES])
def test_bad_input_fails_with_one_clear_line_and_registers_nothing(store, case, tmp_path, request):
    params = list(case.params)
    data_uri = case.data(tmp_path, request) if case.data else ""
    if case.data:
        params.append(f"data_uri={data_uri}")
    experiment = f"bad-input-{case.name}"
    run = run_pipeline(store.path, *params, env={EXPERIMENT_VARIABLE: experiment})
    stderr = run.process.stderr

    assert run.process.returncode != 0, explain(run)
    assert "Traceback (most recent call last)" not in stderr, explain(run)
    errors = [line for line in stderr.splitlines() if line.startswith(ERROR_PREFIX)]
    assert len(errors) == 1, explain(run)
    (line,) = errors
    for words in case.expected:
        assert words.format(data=data_uri) in line, line

    parent, steps = parent_and_steps(run.client, experiment)
    assert parent.info.status == "FAILED"
    assert parent.data.tags["pipeline.error"] == line.removeprefix(ERROR_PREFIX)
    assert [name for name, step in steps.items() if step.info.status == "RUNNING"] == []
    if case.failed_step is None:
        assert steps == {}, "a bad parameter must stop the pipeline before any step runs"
    else:
        # The failed step and nothing after it; the line is the driver's report of its error.
        assert {name: step.info.status for name, step in steps.items()} == {case.failed_step: "FAILED"}
        step_error = steps[case.failed_step].data.tags["pipeline.error"]
        assert line == f"{ERROR_PREFIX}step {case.failed_step} failed: {step_error}"

    assert_version_1_is_the_only_version_and_champion(run.client)
