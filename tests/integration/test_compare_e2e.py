"""End to end: `mlflow run . -e compare` after two pipeline runs with different alpha, in one store.

The pipeline runs twice (alpha 0.1, then 1.0: the second can reuse ingest and featurize), then
compare ranks both by RMSE and logs the table, the plots and a card on its own run; a bad
``-P metric`` fails with one ``error:`` line and a FAILED run.
"""

from __future__ import annotations

import io
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import matplotlib.image
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import Run

from tests.conftest import PROJECT_ROOT
from tests.integration.conftest import PipelineRun, explain, mlflow_cli, run_pipeline

pytestmark = pytest.mark.e2e

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RMSE = "root_mean_squared_error"
PLOTS = ("plots/rmse_vs_alpha.png", "plots/rmse_vs_l1_ratio.png")


@dataclass
class Compared:
    store: Path
    pipelines: dict[float, PipelineRun]  # by alpha
    compare: subprocess.CompletedProcess
    bad_metric: subprocess.CompletedProcess

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(f"sqlite:///{self.store / 'mlflow.db'}")

    def parent(self, alpha: float) -> Run:
        """The parent run of the pipeline run with ``alpha`` (its id starts the summary it printed)."""
        run = self.pipelines[alpha]
        match = re.search(r"^Pipeline run ([0-9a-f]{32}) ", run.process.stdout, flags=re.MULTILINE)
        assert match, explain(run)
        return self.client.get_run(match.group(1))

    def run_of(self, process: subprocess.CompletedProcess) -> Run:
        """The run `mlflow run` created for ``process``."""
        match = re.search(r"=== Run \(ID '([0-9a-f]{32})'\) (succeeded|failed) ===", process.stderr)
        assert match, process.stderr[-3000:]
        return self.client.get_run(match.group(1))

    def artifact(self, run: Run, path: str) -> bytes:
        local = self.client.download_artifacts(run.info.run_id, path, str(self.store / "downloads" / run.info.run_id))
        return Path(local).read_bytes()


def _compare(store: Path, *params: str) -> subprocess.CompletedProcess:
    args = ["run", str(PROJECT_ROOT), "-e", "compare", "--env-manager", "local"]
    for param in params:
        args += ["-P", param]
    return mlflow_cli(*args, workdir=store)


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> Compared:
    store = tmp_path_factory.mktemp("compare")
    pipelines = {}
    for alpha in (0.1, 1.0):
        pipelines[alpha] = run_pipeline(store, f"alpha={alpha}")
        assert pipelines[alpha].process.returncode == 0, explain(pipelines[alpha])
    # Side by side: the bad one fails before reading any run, and the module stays well under 90 s.
    with ThreadPoolExecutor(max_workers=2) as pool:
        good, bad = pool.submit(_compare, store), pool.submit(_compare, store, "metric=accuracy")
        compare, bad_metric = good.result(), bad.result()
    assert compare.returncode == 0, f"--- stdout ---\n{compare.stdout[-3000:]}\n--- stderr ---\n{compare.stderr[-5000:]}"
    return Compared(store, pipelines, compare, bad_metric)


def test_the_compare_run_finishes_with_the_table_plots_and_card(compared):
    run = compared.run_of(compared.compare)
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlflow.project.entryPoint"] == "compare"
    assert run.data.tags["pipeline.kind"] == "compare"
    client = compared.client
    files = {f.path for f in client.list_artifacts(run.info.run_id)}
    files |= {f.path for folder in ("compare", "plots") for f in client.list_artifacts(run.info.run_id, folder)}
    assert {"card.html", "compare/runs.csv", *PLOTS} <= files
    for plot in PLOTS:
        png = compared.artifact(run, plot)
        assert png.startswith(PNG_MAGIC)
        height, width, _ = matplotlib.image.imread(io.BytesIO(png), format="png").shape
        assert height > 100 and width > 100
    card = compared.artifact(run, "card.html").decode()
    assert card.count('<img src="data:image/png;base64,') == 2
    for alpha in compared.pipelines:
        assert f"/#/experiments/0/runs/{compared.parent(alpha).info.run_id}" in card


def test_the_table_has_both_runs_with_their_alpha_and_the_evaluate_runs_rmse_best_first(compared):
    run = compared.run_of(compared.compare)
    table = pd.read_csv(io.BytesIO(compared.artifact(run, "compare/runs.csv")), dtype={"run_id": str, "evaluate_run_id": str})
    expected = {}
    for alpha in compared.pipelines:
        parent = compared.parent(alpha)
        evaluation = compared.client.get_run(parent.data.tags["pipeline.evaluate.run_id"])
        expected[parent.info.run_id] = (alpha, evaluation.data.metrics[RMSE])
    assert set(table["run_id"]) == set(expected)
    for row in table.itertuples():
        assert (row.alpha, getattr(row, RMSE)) == pytest.approx(expected[row.run_id])
        assert row.evaluation in ("passed", "rejected")
    assert list(table[RMSE]) == sorted(table[RMSE])
    best_id = table.loc[0, "run_id"]
    assert run.data.tags["pipeline.compare.best_run_id"] == best_id
    assert run.data.metrics["runs_compared"] == 2
    assert run.data.metrics["best_rmse"] == pytest.approx(expected[best_id][1])


def test_stdout_is_the_table_best_first(compared):
    lines = compared.compare.stdout.splitlines()
    assert lines[0] == "2 pipeline runs of experiment Default (id 0), best first by RMSE (lower is better)", compared.compare.stdout
    assert lines[1].split()[:4] == ["#", "run", "id", "run"]
    ids = [compared.parent(alpha).info.run_id for alpha in compared.pipelines]
    ranked = [line.split()[1] for line in lines[2:4]]
    assert sorted(ranked) == sorted(ids)
    assert lines[4].startswith(f"Best by RMSE: run {ranked[0]} ")
    assert "alpha=" in lines[4] and "l1_ratio=0.5" in lines[4]


def test_an_unknown_metric_fails_with_one_error_line_naming_the_parameter(compared):
    bad = compared.bad_metric
    assert bad.returncode != 0
    errors = [line for line in bad.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: compare: -P metric: unknown metric 'accuracy'; valid: rmse, mae, r2 "
                      "(or MLflow's names root_mean_squared_error, mean_absolute_error, r2_score)"], bad.stderr[-3000:]  # fmt: skip
    assert "Traceback" not in bad.stderr
    run = compared.run_of(bad)
    assert run.info.status == "FAILED"
    assert run.data.tags["pipeline.error"] == errors[0].removeprefix("error: ")
    assert bad.stdout == ""
