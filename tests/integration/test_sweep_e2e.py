"""End to end: `mlflow run . -e sweep` after a pipeline run, into a temporary store."""

from __future__ import annotations

import pytest

from tests.conftest import check_card
from tests.integration.conftest import PipelineRun, explain, run_pipeline

pytestmark = pytest.mark.e2e

GRID = ("alphas=0.05,2", "l1_ratios=0.1,0.9")
TRIAL = {"pipeline.kind": "trial"}


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[PipelineRun, PipelineRun]:
    """A pipeline run (alpha 0.3: champion version 1), then a 2 x 2 sweep in the same store."""
    workdir = tmp_path_factory.mktemp("sweep")
    pipeline = run_pipeline(workdir, "alpha=0.3")
    assert pipeline.process.returncode == 0, explain(pipeline)
    sweep = run_pipeline(workdir, *GRID, entry_point="sweep")
    assert sweep.process.returncode == 0, explain(sweep)
    return pipeline, sweep


def _sweep_parents(run: PipelineRun) -> list:
    return [r for r in run.runs() if r.data.tags.get("mlflow.project.entryPoint") == "sweep"]


def _children(run: PipelineRun, parent_id: str, **tags: str) -> list:
    """Runs whose parent is ``parent_id`` and whose tags include ``tags``."""
    return [
        r
        for r in run.runs()
        if r.data.tags.get("mlflow.parentRunId") == parent_id and all(r.data.tags.get(k) == v for k, v in tags.items())
    ]


def test_each_grid_point_is_a_trial_run_under_one_parent_with_its_own_train_and_evaluate(swept):
    _, sweep = swept
    (parent,) = _sweep_parents(sweep)
    assert parent.info.status == "FINISHED" and parent.data.tags["pipeline.kind"] == "sweep"
    runs = sweep.runs()
    trials = [
        r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id and r.data.tags.get("pipeline.kind") == "trial"
    ]
    grid = {(float(t.data.params["model.alpha"]), float(t.data.params["model.l1_ratio"])) for t in trials}
    assert grid == {(0.05, 0.1), (0.05, 0.9), (2.0, 0.1), (2.0, 0.9)}
    for trial in trials:
        assert trial.info.status == "FINISHED"
        steps = {r.data.tags["mlflow.project.entryPoint"]: r for r in _children(sweep, trial.info.run_id)}
        assert set(steps) == {"train", "evaluate"}, trial.info.run_id
        assert steps["train"].data.params["alpha"] == trial.data.params["model.alpha"]
        # The trial carries its evaluation's metrics (for compare and the UI's chart view).
        assert trial.data.metrics["root_mean_squared_error"] == pytest.approx(steps["evaluate"].data.metrics["root_mean_squared_error"])
        check_card(sweep.artifact_text(trial.info.run_id, "card.html"))


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
    trials = [
        r
        for r in sweep.runs()
        if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id and r.data.tags.get("pipeline.kind") == "trial"
    ]
    best = min(trials, key=lambda t: t.data.metrics["root_mean_squared_error"])
    assert parent.data.tags["pipeline.sweep.best_trial_run_id"] == best.info.run_id
    assert parent.data.params["best.alpha"] == best.data.params["model.alpha"]
    # The gate: evaluate under the sweep's parent, against champion version 1 of the first run.
    evaluate = client.get_run(parent.data.tags["pipeline.evaluate.run_id"])
    assert evaluate.data.tags["pipeline.evaluation.champion_version"] == "1"
    best_train = next(
        r
        for r in sweep.runs()
        if r.data.tags.get("mlflow.parentRunId") == best.info.run_id and r.data.tags["mlflow.project.entryPoint"] == "train"
    )
    assert evaluate.data.params["model_uri"] == best_train.data.tags["pipeline.output.model_uri"]
    register = client.get_run(parent.data.tags["pipeline.register.run_id"])
    version = client.get_model_version("diabetes-elasticnet", register.data.tags["pipeline.model_version"])
    assert str(version.version) == "2" and version.tags["pipeline.run_id"] == parent.info.run_id
    assert str(client.get_model_version_by_alias("diabetes-elasticnet", "challenger").version) == "2"
    # The summary lists every trial and names the best; the card shows them with the plots.
    assert "Trials: 4 of 4" in sweep.process.stdout and "Best: trial" in sweep.process.stdout
    assert sweep.process.stdout.count("[4/4]") + sweep.process.stderr.count("[4/4]") == 1  # progress, once per trial
    text, _ = check_card(sweep.artifact_text(parent.info.run_id, "card.html"), min_images=3)
    assert "Trials (4 of 4)" in text and "Sweep run" in text


def test_a_second_sweep_reuses_every_trial_and_registers_nothing_new(swept, tmp_path):
    _, sweep = swept
    again = run_pipeline(sweep.workdir, *GRID, entry_point="sweep")
    assert again.process.returncode == 0, explain(again)
    assert again.process.stdout.count("REUSED") >= 4 + 4  # the steps and every trial
    assert "Registered: nothing new" in again.process.stdout
    assert len(again.client.search_model_versions("name = 'diabetes-elasticnet'")) == 2


@pytest.mark.parametrize(
    ("param", "message"),
    [
        ("alphas=0.1,-1", "error: sweep: -P alphas: sweep.alphas: every alpha must be >= 0, got -1.0"),
        ("l1_ratios=", "error: sweep: -P l1_ratios: sweep.l1_ratios: name at least one value"),
    ],
)
def test_a_bad_grid_fails_before_any_step_with_one_line(tmp_path, param, message):
    run = run_pipeline(tmp_path, param, entry_point="sweep")
    assert run.process.returncode != 0
    errors = [line for line in run.process.stderr.splitlines() if line.startswith("error:")]
    assert errors == [message], explain(run)
    (parent,) = _sweep_parents(run)
    assert parent.info.status == "FAILED"
    assert [r for r in run.runs() if r.info.run_id != parent.info.run_id] == []
