"""compare against a real (temporary) MLflow tracking store: collecting runs, finding the experiment, the CLI body."""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterator
from dataclasses import dataclass

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from steps import compare
from steps.core import model, ranking
from steps.core.errors import InputError
from steps.core.ranking import COLUMNS

RMSE, MAE, R2 = (m.name for m in model.METRICS)


def run_ids(frame: pd.DataFrame) -> list[str]:
    return list(frame["run_id"])


def _run(client: MlflowClient, experiment_id: str, start: int, *, status: str | None = "FINISHED", tags=None, params=None, metrics=None):
    run = client.create_run(experiment_id, start_time=start, tags=tags or {})
    run_id = run.info.run_id
    for key, value in (params or {}).items():
        client.log_param(run_id, key, value)
    for key, value in (metrics or {}).items():
        client.log_metric(run_id, key, value)
    if status:
        client.set_terminated(run_id, status)
    return run_id


@dataclass
class Store:
    uri: str
    client: MlflowClient
    experiment_id: str
    ids: dict[str, str]
    evaluations: dict[str, str]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """An experiment with pipeline runs, a sweep and its trial, and runs that must not be compared (built once: read-only)."""
    root = tmp_path_factory.mktemp("compare-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("tuning", artifact_location=(root / "artifacts").as_uri())
    client.create_experiment("empty", artifact_location=(root / "empty").as_uri())
    evaluated = {RMSE: 50.0, MAE: 40.0, R2: 0.5}
    e1 = _run(client, exp, 10, metrics=evaluated, tags={"pipeline.evaluation.passed": "true"})
    g1 = _run(client, exp, 11, tags={"pipeline.output.model_version": "3"})
    e2 = _run(client, exp, 20, metrics={RMSE: 60.0, MAE: 45.0, R2: 0.3}, tags={"pipeline.evaluation.passed": "false"})
    e3 = _run(client, exp, 30, metrics={RMSE: 99.0, MAE: 99.0, R2: -1.0}, tags={"pipeline.evaluation.passed": "true"})
    ids = {
        # main's parent before pipeline.kind existed: alpha logged by `mlflow run` and as model.alpha.
        "old": _run(
            client,
            exp,
            1000,
            tags={"pipeline.evaluate.run_id": e1, "pipeline.register.run_id": g1},
            params={"alpha": "0.1", "model.alpha": "0.1", "l1_ratio": "0.5", "model.l1_ratio": "0.5"},
        ),
        "pipeline": _run(
            client, exp, 2000, tags={"pipeline.evaluate.run_id": e2, "pipeline.kind": "pipeline"}, params={"model.alpha": "1.0"}
        ),
        # A trial carries its own copy of the metrics: those win over its evaluate run's.
        "trial": _run(
            client,
            exp,
            3000,
            tags={"pipeline.evaluate.run_id": e3, "pipeline.kind": "trial"},
            params={"model.alpha": "0.01", "model.l1_ratio": "0.9"},
            metrics={RMSE: 45.0, R2: 0.6},
        ),
        "gone": _run(client, exp, 4000, tags={"pipeline.evaluate.run_id": "0" * 32}, params={"model.alpha": "2"}),
    }
    _run(client, exp, 3500, tags={"pipeline.evaluate.run_id": e3, "pipeline.kind": "sweep"}, metrics={RMSE: 45.0})
    _run(client, exp, 3600, tags={"pipeline.evaluate.run_id": e1}, status="FAILED")
    _run(client, exp, 3700, tags={"pipeline.evaluate.run_id": e1}, status=None)  # still running
    _run(client, exp, 3800, tags={"pipeline.kind": "compare"})
    _run(client, exp, 3900, tags={"pipeline.evaluate.run_id": ""})
    return Store(uri, client, exp, ids, {"e1": e1, "e3": e3})


@pytest.fixture
def active_store(store: Store, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """``store`` as the tracking store of this process, as in a compare run's process."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    mlflow.set_tracking_uri(store.uri)
    yield store
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(None)


def test_collect_reads_finished_pipeline_runs_and_trials_with_their_evaluations(active_store):
    exp, ids, evals = active_store.experiment_id, active_store.ids, active_store.evaluations
    frame = compare.collect(exp, 1000)
    assert list(frame.columns) == list(COLUMNS)
    assert run_ids(frame) == [ids["gone"], ids["trial"], ids["pipeline"], ids["old"]]  # newest first
    rows = frame.set_index("run_id")
    old, pipeline, trial, gone = (rows.loc[ids[k]] for k in ("old", "pipeline", "trial", "gone"))
    assert (old["kind"], old["alpha"], old["l1_ratio"], old[RMSE], old[MAE], old[R2]) == ("pipeline", 0.1, 0.5, 50.0, 40.0, 0.5)
    assert (old["evaluation"], old["model_version"], old["evaluate_run_id"]) == ("passed", "3", evals["e1"])
    assert (pipeline["alpha"], pipeline[RMSE], pipeline["evaluation"]) == (1.0, 60.0, "rejected")
    assert pd.isna(pipeline["model_version"]) and math.isnan(pipeline["l1_ratio"])
    assert (trial["kind"], trial["alpha"], trial["l1_ratio"], trial[RMSE], trial[R2], trial[MAE]) == ("trial", 0.01, 0.9, 45.0, 0.6, 99.0)
    assert math.isnan(gone[RMSE]) and pd.isna(gone["evaluation"])
    assert old["start_time"] == pd.Timestamp(1000, unit="ms", tz="UTC")


def test_collect_takes_the_newest_max_runs(active_store):
    exp, ids = active_store.experiment_id, active_store.ids
    assert run_ids(compare.collect(exp, 2)) == [ids["gone"], ids["trial"]]
    assert run_ids(compare.collect(exp, 1)) == [ids["gone"]]


def test_evaluations_are_looked_up_in_chunks(active_store, monkeypatch):
    whole = compare.collect(active_store.experiment_id, 1000)
    monkeypatch.setattr(compare, "LOOKUP_CHUNK", 1)
    pd.testing.assert_frame_equal(compare.collect(active_store.experiment_id, 1000), whole)


def test_experiments_are_found_by_name_or_id_or_default_to_the_current_one(store):
    client, exp = store.client, store.experiment_id
    assert compare.find_experiment(client, "tuning", "0").experiment_id == exp
    assert compare.find_experiment(client, exp, "0").name == "tuning"
    assert compare.find_experiment(client, "", exp).name == "tuning"
    for wanted in ("nope", "12345"):
        with pytest.raises(InputError, match=rf"^-P experiment: no experiment named or with id '{wanted}'$"):
            compare.find_experiment(client, wanted, "0")


def test_the_cli_body_logs_the_table_plots_card_and_best_run_and_prints_the_table(active_store, capsys):
    store = active_store
    client, exp, ids = store.client, store.experiment_id, store.ids
    args = argparse.Namespace(experiment="tuning", metric="R2", max_runs=1000)
    with mlflow.start_run(experiment_id=store.client.get_experiment_by_name("empty").experiment_id) as active:
        outputs = compare._compare(args)
    run = client.get_run(active.info.run_id)
    assert run.data.tags["pipeline.kind"] == "compare"
    assert run.data.tags["pipeline.compare.best_run_id"] == ids["trial"]
    assert run.data.metrics["runs_compared"] == 4 and run.data.metrics["best_r2"] == 0.6
    files = {f.path for f in client.list_artifacts(active.info.run_id)} | {
        f.path for d in ("compare", "plots") for f in client.list_artifacts(active.info.run_id, d)
    }
    assert {"card.html", "compare/runs.csv", "plots/r2_vs_alpha.png", "plots/r2_vs_l1_ratio.png"} <= files
    assert outputs["runs_uri"].uri == f"runs:/{active.info.run_id}/compare/runs.csv"
    printed = capsys.readouterr().out
    assert printed.splitlines()[0] == "4 pipeline runs of experiment tuning (id " + exp + "), best first by R² (higher is better)"
    assert printed.splitlines()[-1].startswith(f"Best by R²: run {ids['trial']} ")


def test_the_cli_body_says_when_there_is_nothing_to_compare(active_store):
    # -P experiment empty: the compare run's own experiment, here one without pipeline runs.
    empty = active_store.client.get_experiment_by_name("empty").experiment_id
    with (
        mlflow.start_run(experiment_id=empty),
        pytest.raises(
            InputError,
            match=rf"^no finished pipeline runs with an evaluation in experiment 'empty' \(id {empty}\) \(run `mlflow run .` first\)$",
        ),
    ):
        compare._compare(argparse.Namespace(experiment="", metric="rmse", max_runs=10))


def test_runs_that_reused_an_evaluation_are_shown_once_as_the_run_that_did_the_work(tracking_uri, tmp_path):
    client = MlflowClient()
    exp = client.create_experiment("repeats", artifact_location=(tmp_path / "artifacts").as_uri())
    evaluation = _run(client, exp, 10, metrics={RMSE: 50.0, MAE: 40.0, R2: 0.5})
    first = _run(client, exp, 100, tags={"pipeline.evaluate.run_id": evaluation, "pipeline.kind": "trial"}, params={"model.alpha": "1"})
    # The same sweep again: a new trial run whose steps were all reused.
    _run(client, exp, 200, tags={"pipeline.evaluate.run_id": evaluation, "pipeline.kind": "trial"}, params={"model.alpha": "1"})
    assert run_ids(compare.collect(exp, 1000)) == [first]


def test_any_estimators_parameters_are_columns_numbers_where_they_parse(tracking_uri, tmp_path):
    client = MlflowClient()
    exp = client.create_experiment("forest", artifact_location=(tmp_path / "artifacts").as_uri())
    for start, depth, criterion in ((100, "3", "squared_error"), (200, "8", "poisson")):
        evaluation = _run(client, exp, start - 1, metrics={RMSE: 50.0 + start / 100})
        params = {"model.estimator": "sklearn.ensemble.RandomForestRegressor", "model.max_depth": depth, "model.criterion": criterion}
        _run(client, exp, start, tags={"pipeline.evaluate.run_id": evaluation, "pipeline.kind": "trial"}, params=params)
    frame = compare.collect(exp, 1000)
    assert list(frame.columns[4:8]) == ["alpha", "l1_ratio", "criterion", "max_depth"]
    assert "estimator" not in frame
    assert list(frame["max_depth"]) == [8.0, 3.0] and list(frame["criterion"]) == ["poisson", "squared_error"]
    # No run has alpha or l1_ratio: the plots are of the parameters that vary.
    rmse = compare.resolve_metric("rmse")
    assert list(ranking.plots(ranking.rank(frame, rmse), rmse)) == ["plots/rmse_vs_criterion.png", "plots/rmse_vs_max_depth.png"]


def test_an_evaluate_run_in_another_experiment_is_found_there(tracking_uri, tmp_path):
    client = MlflowClient()
    exp = client.create_experiment("here", artifact_location=(tmp_path / "here").as_uri())
    elsewhere = client.create_experiment("elsewhere", artifact_location=(tmp_path / "elsewhere").as_uri())
    evaluation = _run(client, elsewhere, 10, metrics={RMSE: 51.0}, tags={"pipeline.evaluation.passed": "true"})
    _run(client, exp, 100, tags={"pipeline.evaluate.run_id": evaluation}, params={"model.alpha": "1"})
    (row,) = compare.collect(exp, 1000).itertuples()
    assert (row.alpha, getattr(row, RMSE), row.evaluation) == (1.0, 51.0, "passed")
