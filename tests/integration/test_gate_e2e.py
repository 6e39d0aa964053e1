"""End to end: the champion/challenger gate, rollback, serving the champion and batch prediction.

One tracking store lives through a realistic history (each step builds on the one before):

1. the default run: version 1 becomes the champion;
2. ``alpha=100``, far worse (every coefficient shrunk to zero: one prediction for every row):
   version 2 is the challenger, rejected; the run still finishes;
3. ``alpha=5`` with ``fail_on_reject=true``: beats the baseline and the data's thresholds but is
   worse than the champion: version 3 rejected, and the run fails as asked;
4. ``alpha=0.3``, slightly better: version 4 is promoted;
5. ``-e rollback``: the champion goes back to version 1.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from tests.conftest import PROJECT_ROOT
from tests.integration.conftest import PipelineRun, explain, mlflow_cli, post_json, run_pipeline, served_model

pytestmark = pytest.mark.e2e

MODEL = "diabetes-elasticnet"


@dataclass
class History:
    store: Path
    first: PipelineRun
    worse: PipelineRun
    rejected_strict: PipelineRun
    better: PipelineRun
    rollback: subprocess.CompletedProcess

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.store / 'mlflow.db'}"

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(self.tracking_uri)

    def version(self, number: int):
        return self.client.get_model_version(MODEL, str(number))


def _parent_of(run: PipelineRun):
    """The parent run this invocation created (its id starts the summary it printed)."""
    match = re.search(r"^Pipeline run ([0-9a-f]{32}) ", run.process.stdout, flags=re.MULTILINE)
    assert match, explain(run)
    return run.client.get_run(match.group(1))


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    store = tmp_path_factory.mktemp("gate")
    first = run_pipeline(store)
    assert first.process.returncode == 0, explain(first)
    worse = run_pipeline(store, "alpha=100")
    assert worse.process.returncode == 0, explain(worse)
    rejected_strict = run_pipeline(store, "alpha=5", "fail_on_reject=true")
    assert rejected_strict.process.returncode != 0, explain(rejected_strict)
    better = run_pipeline(store, "alpha=0.3")
    assert better.process.returncode == 0, explain(better)
    rollback = mlflow_cli(
        "run", str(PROJECT_ROOT), "-e", "rollback", "--env-manager", "local", "-P", "reason=complaints from the clinic", workdir=store
    )
    assert rollback.returncode == 0, rollback.stderr[-3000:]
    return History(store, first, worse, rejected_strict, better, rollback)


def _step_runs(run: PipelineRun) -> dict:
    parent = _parent_of(run)
    client = run.client
    return {step: client.get_run(parent.data.tags[f"pipeline.{step}.run_id"]) for step in ("evaluate", "register")}


def test_the_first_good_run_becomes_champion(history):
    first = history.version(1)
    assert first.tags["decision"] == "promoted"
    assert first.tags["champion.previous"] == "none"
    assert first.tags["evaluation.champion_version"] == "none"
    assert "Champion: diabetes-elasticnet version 1 (this run's model)" in history.first.process.stdout


def test_a_clearly_worse_run_is_registered_as_challenger_and_explained(history):
    out = history.worse.process.stdout
    assert _parent_of(history.worse).info.status == "FINISHED"
    version = history.version(2)
    assert version.tags["decision"] == "rejected"
    assert version.tags["evaluation.passed"] == "false"
    assert version.tags["evaluation.champion_version"] == "1"
    assert "for every test row" in version.tags["decision.reason"]  # degenerate: one prediction for every row
    assert "Registered: diabetes-elasticnet version 2, alias challenger\nDecision: rejected (see the verdict above)" in out
    assert "Verdict: rejected: the candidate predicts " in out and "(the baseline: the train split's mean)" in out
    assert "< min 0.3 (the schema's threshold)" in out and "> max 65 (the schema's threshold)" in out
    assert "Champion: diabetes-elasticnet version 1\n" in out

    # Both metric sets, on the same test split, are on the evaluate run and in its report.
    evaluate = _step_runs(history.worse)["evaluate"]
    metrics = evaluate.data.metrics
    assert metrics["champion_root_mean_squared_error"] < metrics["root_mean_squared_error"]
    assert evaluate.data.tags["pipeline.evaluation.champion_version"] == "1"
    mlflow.set_tracking_uri(history.tracking_uri)
    result = json.loads(mlflow.artifacts.load_text(f"runs:/{evaluate.info.run_id}/evaluation/result.json"))
    assert result["passed"] is False
    assert result["champion"]["version"] == "1"
    assert result["champion"]["metrics"]["root_mean_squared_error"] == pytest.approx(metrics["champion_root_mean_squared_error"])
    checks = {c["name"]: c["passed"] for c in result["checks"]}
    assert checks == {"constant": False, "baseline": False, "min r2": False, "max rmse": False, "champion": False}
    report = mlflow.artifacts.load_text(f"runs:/{evaluate.info.run_id}/evaluation/report.md")
    assert report.startswith("# Evaluation: **rejected**")
    assert "champion (version 1)" in report


def test_fail_on_reject_makes_a_rejection_fail_the_run(history):
    run = history.rejected_strict
    parent = _parent_of(run)
    assert parent.info.status == "FAILED"
    assert parent.data.tags["pipeline.error"].startswith("the candidate was rejected and fail_on_reject=true: RMSE ")
    assert "worse than champion version 1's" in parent.data.tags["pipeline.error"]
    assert "error: the candidate was rejected and fail_on_reject=true" in run.process.stderr
    # A rejection is still a complete, recorded outcome: registered as version 3, not champion.
    assert _step_runs(run)["register"].info.status == "FINISHED"
    assert history.version(3).tags["decision"] == "rejected"


def test_a_better_run_promotes_and_records_what_it_replaced(history):
    version = history.version(4)
    assert version.tags["decision"] == "promoted"
    assert version.tags["champion.previous"] == "1"
    assert version.tags["champion.promoted_by.run_id"] == _parent_of(history.better).info.run_id
    assert "Decision: promoted to champion\nChampion: diabetes-elasticnet version 4 (this run's model)" in history.better.process.stdout
    assert str(history.client.get_model_version_by_alias(MODEL, "challenger").version) == "4"


def test_rollback_points_the_champion_back_and_records_who_and_why(history):
    client = history.client
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"
    demoted = history.version(4).tags
    assert demoted["champion.rolled_back.reason"] == "complaints from the clinic"
    assert demoted["champion.rolled_back.by.user"]
    (rollback,) = [r for r in history.first.runs() if r.data.tags.get("mlflow.project.entryPoint") == "rollback"]
    assert rollback.info.status == "FINISHED"
    assert rollback.data.tags["pipeline.rollback.from"] == "4"
    assert rollback.data.tags["pipeline.rollback.to"] == "1"
    assert rollback.data.tags["pipeline.rollback.reason"] == "complaints from the clinic"
    assert rollback.data.tags["pipeline.rollback.by"] == rollback.data.tags["mlflow.user"]
    assert "rolled back from version 4 to 1" in client.get_registered_model(MODEL).tags["champion.last_change"]


def test_rollback_with_nothing_earlier_fails_clearly(history):
    # The champion (version 1) was the first: there is nothing before it.
    process = mlflow_cli("run", str(PROJECT_ROOT), "-e", "rollback", "--env-manager", "local", workdir=history.store)
    assert process.returncode != 0
    assert "error: rollback: diabetes-elasticnet version 1 is the first champion: there is no earlier one to roll back to" in process.stderr
    assert str(history.client.get_model_version_by_alias(MODEL, "champion").version) == "1"


@pytest.fixture(scope="module")
def served_champion(history):
    """The README's command: ``mlflow models serve -m models:/<name>@champion --env-manager local``."""
    with served_model(f"models:/{MODEL}@champion", workdir=history.store, env={"MLFLOW_TRACKING_URI": history.tracking_uri}) as url:
        yield url


def test_the_served_champion_answers_like_the_pyfunc_model(history, served_champion):
    raw = pd.read_csv(PROJECT_ROOT / "data/example_data.csv").drop(columns=["target"]).head(25)
    status, body = post_json(f"{served_champion}/invocations", {"dataframe_split": raw.to_dict(orient="split", index=False)})
    assert status == 200, body
    mlflow.set_tracking_uri(history.tracking_uri)
    expected = mlflow.pyfunc.load_model(f"models:/{MODEL}/1").predict(raw)  # version 1 is the champion after the rollback
    np.testing.assert_allclose(np.asarray(body["predictions"]), np.asarray(expected), rtol=1e-9)


def test_a_request_missing_a_column_gets_a_4xx_naming_it(served_champion):
    raw = pd.read_csv(PROJECT_ROOT / "data/example_data.csv").drop(columns=["target", "bmi"]).head(3)
    status, body = post_json(f"{served_champion}/invocations", {"dataframe_split": raw.to_dict(orient="split", index=False)})
    assert 400 <= status < 500, (status, body)
    assert "missing inputs ['bmi']" in body["message"]


def test_predict_scores_every_row_with_the_champion_and_links_the_run_to_it(history):
    process = mlflow_cli(
        "run", str(PROJECT_ROOT), "-e", "predict", "--env-manager", "local", "-P", "data_uri=data/example_data.csv", workdir=history.store
    )
    assert process.returncode == 0, process.stderr[-3000:]
    client = history.client
    (run,) = [r for r in history.first.runs() if r.data.tags.get("mlflow.project.entryPoint") == "predict"]
    assert run.info.status == "FINISHED"
    assert run.data.tags["pipeline.model_name"] == MODEL
    assert run.data.tags["pipeline.model_version"] == "1"
    assert run.data.tags["pipeline.model_uri"] == f"models:/{MODEL}/1"
    model_id = client.get_model_version(MODEL, "1").source.removeprefix("models:/")
    assert run.data.tags["pipeline.model_id"] == model_id
    # The run's inputs link it to the logged model (search_runs leaves model inputs out: get_run).
    assert [m.model_id for m in client.get_run(run.info.run_id).inputs.model_inputs] == [model_id]
    assert run.data.metrics["rows"] == 442

    mlflow.set_tracking_uri(history.tracking_uri)
    local = mlflow.artifacts.download_artifacts(run.data.tags["pipeline.output.predictions_uri"], dst_path=str(history.store / "scored"))
    scored = pd.read_parquet(local)
    data = pd.read_csv(PROJECT_ROOT / "data/example_data.csv")
    assert len(scored) == len(data) == 442
    assert list(scored.columns) == [*data.columns, "prediction"]
    expected = mlflow.pyfunc.load_model(f"models:/{MODEL}/1").predict(data.drop(columns=["target"]))
    np.testing.assert_allclose(scored["prediction"], np.asarray(expected), rtol=1e-9)


def test_predict_on_bad_rows_fails_with_one_clear_line(history):
    bad = history.store / "no_bmi.csv"
    pd.read_csv(PROJECT_ROOT / "data/example_data.csv").drop(columns=["bmi"]).to_csv(bad, index=False)
    process = mlflow_cli(
        "run", str(PROJECT_ROOT), "-e", "predict", "--env-manager", "local", "-P", f"data_uri={bad}", workdir=history.store
    )
    assert process.returncode != 0
    assert f"error: predict: {bad}: missing column(s) 'bmi' required by the schema" in process.stderr
    assert "Traceback" not in process.stderr
    failed = [r for r in history.first.runs() if r.data.tags.get("mlflow.project.entryPoint") == "predict" and r.info.status == "FAILED"]
    assert len(failed) == 1
