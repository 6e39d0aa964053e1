"""End to end: `mlflow run . -e compare` after pipeline runs of two registered models, in one store.

The pipeline runs twice for the default model (alpha 0.1, then 1.0: the second can reuse ingest
and featurize) and once for another model name with a decision tree; compare then ranks the
default model's runs by RMSE (the metric their gate used), leaves the tree's run out and says
so, and logs the table, the plots and a card on its own run; ``-P model_name`` compares the
other model instead. A bad ``-P metric`` fails with one ``error:`` line and a FAILED run.
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
# alpha varies between the two runs; l1_ratio and max_iter do not: one plot.
PLOTS = ("plots/rmse_vs_alpha.png",)
MODEL = "diabetes-elasticnet"
TREE_MODEL = "diabetes-tree"
TREE_RUN = (f"model_name={TREE_MODEL}", "model.estimator=sklearn.tree.DecisionTreeRegressor", "model.params.max_depth=3")


@dataclass
class Compared:
    store: Path
    pipelines: dict[float, PipelineRun]  # by alpha
    tree: PipelineRun
    compare: subprocess.CompletedProcess
    compare_tree: subprocess.CompletedProcess
    unknown_metric: subprocess.CompletedProcess
    other_task_metric: subprocess.CompletedProcess

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(f"sqlite:///{self.store / 'mlflow.db'}")

    def parent_of(self, run: PipelineRun) -> Run:
        """The parent run of a pipeline run (its id starts the summary it printed)."""
        match = re.search(r"^Pipeline run ([0-9a-f]{32}) ", run.process.stdout, flags=re.MULTILINE)
        assert match, explain(run)
        return self.client.get_run(match.group(1))

    def parent(self, alpha: float) -> Run:
        return self.parent_of(self.pipelines[alpha])

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


def _ok(process: subprocess.CompletedProcess) -> str:
    return f"--- stdout ---\n{process.stdout[-3000:]}\n--- stderr ---\n{process.stderr[-5000:]}"


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> Compared:
    store = tmp_path_factory.mktemp("compare")
    pipelines = {}
    for alpha in (0.1, 1.0):
        pipelines[alpha] = run_pipeline(store, f"alpha={alpha}")
        assert pipelines[alpha].process.returncode == 0, explain(pipelines[alpha])
    tree = run_pipeline(store, *TREE_RUN)
    assert tree.process.returncode == 0, explain(tree)
    # Side by side, to keep the module short: the unknown metric fails before reading any run.
    with ThreadPoolExecutor(max_workers=4) as pool:
        jobs = [
            pool.submit(_compare, store, *params)
            for params in ((), (f"model_name={TREE_MODEL}",), ("metric=precision",), ("metric=accuracy",))
        ]
        good, good_tree, unknown, other_task = (job.result() for job in jobs)
    assert good.returncode == 0, _ok(good)
    assert good_tree.returncode == 0, _ok(good_tree)
    return Compared(store, pipelines, tree, good, good_tree, unknown, other_task)


def test_the_compare_run_finishes_with_the_table_plots_and_card(compared):
    run = compared.run_of(compared.compare)
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlflow.project.entryPoint"] == "compare"
    assert run.data.tags["pipeline.kind"] == "compare"
    client = compared.client
    files = {f.path for f in client.list_artifacts(run.info.run_id)}
    files |= {f.path for folder in ("compare", "plots") for f in client.list_artifacts(run.info.run_id, folder)}
    assert {"card.html", "compare/runs.csv", *PLOTS} <= files
    assert "plots/rmse_vs_l1_ratio.png" not in files
    for plot in PLOTS:
        png = compared.artifact(run, plot)
        assert png.startswith(PNG_MAGIC)
        height, width, _ = matplotlib.image.imread(io.BytesIO(png), format="png").shape
        assert height > 100 and width > 100
    card = compared.artifact(run, "card.html").decode()
    assert card.count('<img src="data:image/png;base64,') == len(PLOTS)
    for alpha in compared.pipelines:
        assert f"/#/experiments/0/runs/{compared.parent(alpha).info.run_id}" in card
    assert compared.parent_of(compared.tree).info.run_id not in card
    # The model, its task and estimator; the other model's run, counted.
    for fact in (MODEL, "regression", "sklearn.linear_model.ElasticNet", f"{TREE_MODEL} (1 run)"):
        assert f">{fact}<" in card, fact


def test_the_table_has_the_models_runs_with_their_alpha_and_the_evaluate_runs_rmse_best_first(compared):
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
        assert (row.model_name, row.task, row.estimator, row.primary_metric) == (
            MODEL,
            "regression",
            "sklearn.linear_model.ElasticNet",
            "rmse",
        )
        assert row.evaluation in ("passed", "rejected")
    assert "accuracy_score" not in table  # the task's metrics only
    assert list(table[RMSE]) == sorted(table[RMSE])
    best_id = table.loc[0, "run_id"]
    assert run.data.tags["pipeline.compare.best_run_id"] == best_id
    assert (run.data.metrics["runs_compared"], run.data.metrics["runs_left_out"]) == (2, 1)
    assert run.data.metrics["best_rmse"] == pytest.approx(expected[best_id][1])


def test_stdout_is_the_table_best_first_and_names_the_runs_left_out(compared):
    lines = compared.compare.stdout.splitlines()
    assert lines[0] == f"2 pipeline runs of model '{MODEL}' (regression) in experiment Default (id 0), best first by RMSE (lower is better)"
    assert lines[1].split()[:6] == ["#", "run", "id", "run", "name", "kind"]
    assert "alpha" in lines[1].split() and "l1_ratio" not in lines[1].split()
    ids = [compared.parent(alpha).info.run_id for alpha in compared.pipelines]
    ranked = [line.split()[1] for line in lines[2:4]]
    assert sorted(ranked) == sorted(ids)
    assert lines[4] == f"Left out: 1 run of other models: {TREE_MODEL} (1 run); compare them with -P model_name=<name>"
    assert lines[5].startswith(f"Best by RMSE: run {ranked[0]} ")
    assert "ElasticNet with alpha=" in lines[5] and "l1_ratio=0.5" in lines[5]


def test_minus_p_model_name_compares_the_other_models_runs(compared):
    run = compared.run_of(compared.compare_tree)
    tree_parent = compared.parent_of(compared.tree)
    assert run.data.tags["pipeline.compare.best_run_id"] == tree_parent.info.run_id
    assert (run.data.metrics["runs_compared"], run.data.metrics["runs_left_out"]) == (1, 2)
    lines = compared.compare_tree.stdout.splitlines()
    assert lines[0].startswith(f"1 pipeline run of model '{TREE_MODEL}' (regression) in experiment Default (id 0)")
    assert lines[-2] == f"Left out: 2 runs of other models: {MODEL} (2 runs); compare them with -P model_name=<name>"
    assert lines[-1].endswith("DecisionTreeRegressor with max_depth=3")


@pytest.mark.parametrize(
    ("which", "message"),
    [
        (
            "unknown_metric",
            "error: compare: -P metric: unknown metric 'precision'; valid: rmse, mae, r2 (regression); "
            "log_loss, roc_auc, f1, accuracy (classification) (or MLflow's names, e.g. root_mean_squared_error)",
        ),
        (
            "other_task_metric",
            f"error: compare: -P metric: accuracy is a classification metric; the runs of model '{MODEL}' are regression: "
            "choose one of rmse, mae, r2",
        ),
    ],
)
def test_a_bad_metric_fails_with_one_error_line_naming_the_parameter(compared, which, message):
    bad = getattr(compared, which)
    assert bad.returncode != 0
    errors = [line for line in bad.stderr.splitlines() if line.startswith("error:")]
    assert errors == [message], bad.stderr[-3000:]
    assert "Traceback" not in bad.stderr
    run = compared.run_of(bad)
    assert run.info.status == "FAILED"
    assert run.data.tags["pipeline.error"] == errors[0].removeprefix("error: ")
    assert bad.stdout == ""
