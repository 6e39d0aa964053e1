"""End to end: `mlflow run . -e sweep` after a pipeline run, and over another estimator's arguments, into temporary stores."""

from __future__ import annotations

import pytest

from tests.conftest import check_card
from tests.integration.conftest import PipelineRun, explain, run_pipeline

pytestmark = pytest.mark.e2e

GRID = ("alphas=0.05,2", "l1_ratios=0.1,0.9")
TREE = "sklearn.tree.DecisionTreeRegressor"
TREE_SWEEP = (f"model.estimator={TREE}", "sweep.grid.max_depth=2,4", "model.params.random_state=0")
RMSE = "root_mean_squared_error"


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[PipelineRun, PipelineRun]:
    """A pipeline run (alpha 0.3: champion version 1), then a 2 x 2 sweep in the same store."""
    workdir = tmp_path_factory.mktemp("sweep")
    pipeline = run_pipeline(workdir, "alpha=0.3")
    assert pipeline.process.returncode == 0, explain(pipeline)
    sweep = run_pipeline(workdir, *GRID, entry_point="sweep")
    assert sweep.process.returncode == 0, explain(sweep)
    return pipeline, sweep


@pytest.fixture(scope="module")
def tree_swept(tmp_path_factory: pytest.TempPathFactory) -> PipelineRun:
    """A sweep of a decision tree's max_depth (not the file's ElasticNet grid) in a store of its own."""
    sweep = run_pipeline(tmp_path_factory.mktemp("tree-sweep"), *TREE_SWEEP, entry_point="sweep")
    assert sweep.process.returncode == 0, explain(sweep)
    return sweep


def _sweep_parents(run: PipelineRun) -> list:
    return [r for r in run.runs() if r.data.tags.get("mlflow.project.entryPoint") == "sweep"]


def _children(run: PipelineRun, parent_id: str, **tags: str) -> list:
    """Runs whose parent is ``parent_id`` and whose tags include ``tags``."""
    return [
        r
        for r in run.runs()
        if r.data.tags.get("mlflow.parentRunId") == parent_id and all(r.data.tags.get(k) == v for k, v in tags.items())
    ]


def _trials(run: PipelineRun, parent_id: str) -> list:
    return _children(run, parent_id, **{"pipeline.kind": "trial"})


def test_each_grid_point_is_a_trial_run_under_one_parent_with_its_own_train_and_evaluate(swept):
    _, sweep = swept
    (parent,) = _sweep_parents(sweep)
    assert parent.info.status == "FINISHED" and parent.data.tags["pipeline.kind"] == "sweep"
    trials = _trials(sweep, parent.info.run_id)
    grid = {(float(t.data.params["model.params.alpha"]), float(t.data.params["model.params.l1_ratio"])) for t in trials}
    assert grid == {(0.05, 0.1), (0.05, 0.9), (2.0, 0.1), (2.0, 0.9)}
    for trial in trials:
        assert trial.info.status == "FINISHED"
        params = trial.data.params
        assert (params["model.task"], params["model.estimator"], params["model.params.max_iter"]) == (
            "regression", "sklearn.linear_model.ElasticNet", "5000",
        )  # fmt: skip
        assert (params["evaluation.metric"], params["registry.model_name"]) == ("rmse", "diabetes-elasticnet")
        steps = {r.data.tags["mlflow.project.entryPoint"]: r for r in _children(sweep, trial.info.run_id)}
        assert set(steps) == {"train", "evaluate"}, trial.info.run_id
        assert steps["train"].data.params["params.alpha"] == params["model.params.alpha"]
        # The trial carries its evaluation's metrics, the task's (for compare and the UI's chart view).
        assert set(trial.data.metrics) == {RMSE, "mean_absolute_error", "r2_score"}
        assert trial.data.metrics[RMSE] == pytest.approx(steps["evaluate"].data.metrics[RMSE])
        text, _ = check_card(sweep.artifact_text(trial.info.run_id, "card.html"))
        assert f"Model: regression, sklearn.linear_model.ElasticNet (alpha={params['model.params.alpha']}, " in text


def test_ingest_and_featurize_come_from_the_cache(swept):
    pipeline, sweep = swept
    (parent,) = _sweep_parents(sweep)
    first = pipeline.parent()
    for step in ("ingest", "featurize"):
        assert parent.data.tags[f"pipeline.{step}.cache_hit"] == "true", step
        assert parent.data.tags[f"pipeline.{step}.run_id"] == first.data.tags[f"pipeline.{step}.run_id"], step


def test_the_best_trial_goes_through_the_gate_and_the_registry(swept):
    _, sweep = swept
    (parent,) = _sweep_parents(sweep)
    client = sweep.client
    trials = _trials(sweep, parent.info.run_id)
    best = min(trials, key=lambda t: t.data.metrics[RMSE])
    assert parent.data.tags["pipeline.sweep.best_trial_run_id"] == best.info.run_id
    assert parent.data.params["best.alpha"] == best.data.params["model.params.alpha"]
    # The parent names no alpha of its own (each trial has its own), only the estimator's fixed arguments.
    assert "model.params.alpha" not in parent.data.params and parent.data.params["model.params.max_iter"] == "5000"
    # The gate: evaluate under the sweep's parent, against champion version 1 of the first run.
    evaluate = client.get_run(parent.data.tags["pipeline.evaluate.run_id"])
    assert evaluate.data.tags["pipeline.evaluation.champion_version"] == "1"
    (best_train,) = _children(sweep, best.info.run_id, **{"mlflow.project.entryPoint": "train"})
    assert evaluate.data.params["model_uri"] == best_train.data.tags["pipeline.output.model_uri"]
    register = client.get_run(parent.data.tags["pipeline.register.run_id"])
    version = client.get_model_version("diabetes-elasticnet", register.data.tags["pipeline.model_version"])
    assert str(version.version) == "2" and version.tags["pipeline.run_id"] == parent.info.run_id
    assert str(client.get_model_version_by_alias("diabetes-elasticnet", "challenger").version) == "2"
    # The summary lists every trial and names the best; the card shows them with the plots.
    assert "Trials: 4 of 4 over alpha x l1_ratio (best by test RMSE marked *)" in sweep.process.stdout
    assert "Best: trial" in sweep.process.stdout
    assert sweep.process.stdout.count("[4/4]") + sweep.process.stderr.count("[4/4]") == 1  # progress, once per trial
    text, _ = check_card(sweep.artifact_text(parent.info.run_id, "card.html"), min_images=3)
    assert "Trials (4 of 4)" in text and "Sweep run" in text
    assert "RMSE of each trial against alpha" in text and "RMSE of each trial against l1_ratio" in text


def test_a_second_sweep_reuses_every_trial_and_registers_nothing_new(swept, tmp_path):
    _, sweep = swept
    again = run_pipeline(sweep.workdir, *GRID, entry_point="sweep")
    assert again.process.returncode == 0, explain(again)
    assert again.process.stdout.count("REUSED") >= 4 + 4  # the steps and every trial
    assert "Registered: nothing new" in again.process.stdout
    assert len(again.client.search_model_versions("name = 'diabetes-elasticnet'")) == 2


def test_a_sweep_over_another_estimators_argument_trains_that_estimator_per_point(tree_swept):
    sweep = tree_swept
    (parent,) = _sweep_parents(sweep)
    assert parent.info.status == "FINISHED"
    trials = _trials(sweep, parent.info.run_id)
    assert sorted(t.data.params["model.params.max_depth"] for t in trials) == ["2", "4"]
    for trial in trials:
        assert (trial.data.params["model.estimator"], trial.data.params["model.params.random_state"]) == (TREE, "0")
        assert "model.params.alpha" not in trial.data.params  # the file's ElasticNet grid is replaced, not added to
        (train,) = _children(sweep, trial.info.run_id, **{"mlflow.project.entryPoint": "train"})
        assert train.data.tags["pipeline.estimator"] == TREE and train.data.tags["pipeline.task"] == "regression"
    best = min(trials, key=lambda t: (t.data.metrics[RMSE], int(t.data.params["trial"])))
    assert parent.data.tags["pipeline.sweep.best_trial_run_id"] == best.info.run_id
    assert parent.data.params["best.max_depth"] == best.data.params["model.params.max_depth"]
    assert "model.params.max_depth" not in parent.data.params and parent.data.params["model.params.random_state"] == "0"
    # The best trial's tree is the registered version (no champion yet: the evaluation is the trial's own).
    (version,) = sweep.client.search_model_versions("name = 'diabetes-elasticnet'")
    assert version.tags["model.estimator"] == TREE and version.tags["model.task"] == "regression"
    stdout = sweep.process.stdout
    assert f"Model: regression, {TREE} (random_state=0)" in stdout
    assert "Trials: 2 of 2 over max_depth (best by test RMSE marked *)" in stdout
    text, _ = check_card(sweep.artifact_text(parent.info.run_id, "card.html"), min_images=1)
    assert "RMSE of each trial against max_depth" in text and "against alpha" not in text


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (("alphas=0.1,-1",), "error: sweep: -P alphas: sweep.grid.alpha: must be >= 0, got -1.0"),
        (("l1_ratios=",), "error: sweep: -P l1_ratios: sweep.grid.l1_ratio: name at least one value"),
        (
            ("model.params.alpha=0.3",),
            "error: sweep: -P model.params.alpha: model.params.alpha is also swept by sweep.grid.alpha (conf/pipeline.yaml): "
            "each trial takes alpha from the grid; set it in one of them",
        ),
        (
            ("model.estimator=sklearn.ensemble.RandomForestRegressor",),
            "error: sweep: sweep.grid.alpha: not a parameter of RandomForestRegressor",
        ),
    ],
)
def test_a_bad_grid_fails_before_any_step_with_one_line(tmp_path, params, message):
    run = run_pipeline(tmp_path, *params, entry_point="sweep")
    assert run.process.returncode != 0
    errors = [line for line in run.process.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(message), explain(run)
    if "RandomForest" in message:
        assert errors[0].endswith("set the grid with -P sweep.grid.<name>=v1,v2 (a grid given by -P replaces the file's)")
    (parent,) = _sweep_parents(run)
    assert parent.info.status == "FAILED"
    assert [r for r in run.runs() if r.info.run_id != parent.info.run_id] == []
