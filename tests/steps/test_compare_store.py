"""compare against a real (temporary) MLflow tracking store: collecting one model's runs, finding the experiment, the CLI body."""

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
from steps.core import ranking
from steps.core.errors import InputError
from steps.core.tasks import MAE, R2, RMSE

MODEL = "diabetes-elasticnet"
ELASTICNET = "sklearn.linear_model.ElasticNet"
TREE = "sklearn.tree.DecisionTreeRegressor"


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


def model_params(name: str = MODEL, estimator: str = ELASTICNET, task: str = "regression", metric: str = "rmse", **params: str) -> dict:
    """The params main's parent and a trial log about their model."""
    logged = {"registry.model_name": name, "model.task": task, "model.estimator": estimator, "evaluation.metric": metric}
    return logged | {f"model.params.{key}": value for key, value in params.items()}


@dataclass
class Store:
    uri: str
    client: MlflowClient
    experiment_id: str
    ids: dict[str, str]
    evaluations: dict[str, str]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """An experiment with pipeline runs, a sweep and its trial, runs of other models, runs that must not be compared (built once)."""
    root = tmp_path_factory.mktemp("compare-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("tuning", artifact_location=(root / "artifacts").as_uri())
    client.create_experiment("empty", artifact_location=(root / "empty").as_uri())
    e1 = _run(client, exp, 10, metrics={RMSE.name: 50.0, MAE.name: 40.0, R2.name: 0.5}, tags={"pipeline.evaluation.passed": "true"})
    g1 = _run(client, exp, 11, tags={"pipeline.output.model_version": "3"})
    e2 = _run(client, exp, 20, metrics={RMSE.name: 60.0, MAE.name: 45.0, R2.name: 0.3}, tags={"pipeline.evaluation.passed": "false"})
    e3 = _run(client, exp, 30, metrics={RMSE.name: 99.0, MAE.name: 99.0, R2.name: -1.0}, tags={"pipeline.evaluation.passed": "true"})
    e4 = _run(client, exp, 40, metrics={RMSE.name: 30.0, MAE.name: 20.0, R2.name: 0.9}, tags={"pipeline.evaluation.passed": "true"})
    e5 = _run(client, exp, 50, metrics={RMSE.name: 55.0}, tags={"pipeline.evaluation.passed": "true"})
    ids = {
        "old": _run(
            client,
            exp,
            1000,
            tags={"pipeline.evaluate.run_id": e1, "pipeline.register.run_id": g1},
            params=model_params(alpha="0.1", l1_ratio="0.5", max_iter="5000") | {"alpha": "0.1"},
        ),
        "pipeline": _run(
            client,
            exp,
            2000,
            tags={"pipeline.evaluate.run_id": e2, "pipeline.kind": "pipeline"},
            params=model_params(alpha="1.0", max_iter="5000"),
        ),
        # A trial carries its own copy of the metrics: those win over its evaluate run's.
        "trial": _run(
            client,
            exp,
            3000,
            tags={"pipeline.evaluate.run_id": e3, "pipeline.kind": "trial"},
            params=model_params(alpha="0.01", l1_ratio="0.9", max_iter="5000") | {"trial": "1"},
            metrics={RMSE.name: 45.0, R2.name: 0.6},
        ),
        "gone": _run(client, exp, 4000, tags={"pipeline.evaluate.run_id": "0" * 32}, params=model_params(alpha="2", max_iter="5000")),
    }
    # Runs of another registered model (the best RMSE of all), and from before runs named their model.
    others = {
        "tree": _run(
            client,
            exp,
            3300,
            tags={"pipeline.evaluate.run_id": e4, "pipeline.kind": "pipeline"},
            params=model_params("tree", TREE, max_depth="3"),
        ),
        "nameless": _run(client, exp, 3400, tags={"pipeline.evaluate.run_id": e5}, params={"model.alpha": "0.1"}),
    }
    _run(
        client, exp, 3500, tags={"pipeline.evaluate.run_id": e3, "pipeline.kind": "sweep"}, params=model_params(), metrics={RMSE.name: 45.0}
    )
    _run(client, exp, 3600, tags={"pipeline.evaluate.run_id": e1}, params=model_params(), status="FAILED")
    _run(client, exp, 3700, tags={"pipeline.evaluate.run_id": e1}, params=model_params(), status=None)  # still running
    _run(client, exp, 3800, tags={"pipeline.kind": "compare"}, params={"model_name": MODEL})
    _run(client, exp, 3900, tags={"pipeline.evaluate.run_id": ""}, params=model_params())
    return Store(uri, client, exp, ids | others, {"e1": e1, "e3": e3})


@pytest.fixture
def active_store(store: Store, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """``store`` as the tracking store of this process, as in a compare run's process."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    mlflow.set_tracking_uri(store.uri)
    yield store
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(None)


def test_collect_reads_one_models_finished_pipeline_runs_and_trials_with_their_evaluations(active_store):
    exp, ids, evals = active_store.experiment_id, active_store.ids, active_store.evaluations
    frame = compare.collect(exp, 1000, MODEL)
    assert run_ids(frame) == [ids["gone"], ids["trial"], ids["pipeline"], ids["old"]]  # newest first; no tree, no nameless run
    typed = ranking.rank(frame, RMSE)
    assert list(typed.columns) == [
        *ranking.RUN_COLUMNS,
        "alpha",
        "l1_ratio",
        "max_iter",
        RMSE.name,
        MAE.name,
        R2.name,
        *ranking.RESULT_COLUMNS,
    ]
    rows = typed.set_index("run_id")
    old, pipeline, trial, gone = (rows.loc[ids[k]] for k in ("old", "pipeline", "trial", "gone"))
    assert (old["kind"], old["alpha"], old["l1_ratio"], old[RMSE.name], old[MAE.name], old[R2.name]) == (
        "pipeline",
        0.1,
        0.5,
        50.0,
        40.0,
        0.5,
    )
    assert (old["model_name"], old["task"], old["estimator"], old["primary_metric"]) == (MODEL, "regression", ELASTICNET, "rmse")
    assert (old["evaluation"], old["model_version"], old["evaluate_run_id"]) == ("passed", "3", evals["e1"])
    assert (pipeline["alpha"], pipeline[RMSE.name], pipeline["evaluation"]) == (1.0, 60.0, "rejected")
    assert pd.isna(pipeline["model_version"]) and math.isnan(pipeline["l1_ratio"])
    assert (trial["kind"], trial["alpha"], trial["l1_ratio"], trial[RMSE.name], trial[R2.name], trial[MAE.name]) == (
        "trial", 0.01, 0.9, 45.0, 0.6, 99.0,
    )  # fmt: skip
    assert math.isnan(gone[RMSE.name]) and pd.isna(gone["evaluation"])
    assert old["start_time"] == pd.Timestamp(1000, unit="ms", tz="UTC")


def test_the_runs_of_other_models_are_counted_by_name(active_store):
    exp = active_store.experiment_id
    assert compare.other_models(exp, MODEL, 1000) == {"tree": 1, "no model name": 1}
    assert compare.other_models(exp, "tree", 1000) == {MODEL: 4, "no model name": 1}
    tree = compare.collect(exp, 1000, "tree")
    assert run_ids(tree) == [active_store.ids["tree"]]
    assert ranking.rank(tree, RMSE).loc[0, "max_depth"] == 3.0
    assert compare.collect(exp, 1000, "nope").empty
    assert compare.collect(exp, 1000, "it's").empty  # quoted for MLflow's filter
    with pytest.raises(InputError, match=r"^-P model_name: .* has both kinds of quotes; MLflow's search cannot look it up$"):
        compare.collect(exp, 1000, 'it\'s "odd"')


def test_collect_takes_the_newest_max_runs_of_the_model(active_store):
    exp, ids = active_store.experiment_id, active_store.ids
    assert run_ids(compare.collect(exp, 2, MODEL)) == [ids["gone"], ids["trial"]]
    assert run_ids(compare.collect(exp, 1, MODEL)) == [ids["gone"]]


def test_evaluations_are_looked_up_in_chunks(active_store, monkeypatch):
    whole = compare.collect(active_store.experiment_id, 1000, MODEL)
    monkeypatch.setattr(compare, "LOOKUP_CHUNK", 1)
    pd.testing.assert_frame_equal(compare.collect(active_store.experiment_id, 1000, MODEL), whole)


def test_experiments_are_found_by_name_or_id_or_default_to_the_current_one(store):
    client, exp = store.client, store.experiment_id
    assert compare.find_experiment(client, "tuning", "0").experiment_id == exp
    assert compare.find_experiment(client, exp, "0").name == "tuning"
    assert compare.find_experiment(client, "", exp).name == "tuning"
    for wanted in ("nope", "12345"):
        with pytest.raises(InputError, match=rf"^-P experiment: no experiment named or with id '{wanted}'$"):
            compare.find_experiment(client, wanted, "0")


def args(**given) -> argparse.Namespace:
    return argparse.Namespace(**({"experiment": "tuning", "metric": None, "max_runs": None, "model_name": None} | given))


def test_the_cli_body_logs_the_table_plots_card_and_best_run_and_prints_the_table(active_store, capsys):
    store = active_store
    client, exp, ids = store.client, store.experiment_id, store.ids
    with mlflow.start_run(experiment_id=store.client.get_experiment_by_name("empty").experiment_id) as active:
        outputs = compare._compare(args(metric="R2", max_runs=1000))
    run = client.get_run(active.info.run_id)
    assert run.data.tags["pipeline.kind"] == "compare"
    assert run.data.tags["pipeline.compare.best_run_id"] == ids["trial"]  # the tree's R² is better, but it is another model
    assert run.data.tags["pipeline.compare.metric"] == R2.name
    assert run.data.params["model_name"] == MODEL  # the file's, logged
    assert (run.data.metrics["runs_compared"], run.data.metrics["runs_left_out"], run.data.metrics["best_r2"]) == (4, 2, 0.6)
    files = {f.path for f in client.list_artifacts(active.info.run_id)} | {
        f.path for d in ("compare", "plots") for f in client.list_artifacts(active.info.run_id, d)
    }
    assert {"card.html", "compare/runs.csv", "plots/r2_vs_alpha.png", "plots/r2_vs_l1_ratio.png"} <= files
    assert "plots/r2_vs_max_iter.png" not in files  # the same in every run
    assert outputs["runs_uri"].uri == f"runs:/{active.info.run_id}/compare/runs.csv"
    printed = capsys.readouterr().out.splitlines()
    assert (
        printed[0]
        == f"4 pipeline runs of model '{MODEL}' (regression) in experiment tuning (id {exp}), best first by R² (higher is better)"
    )
    assert printed[-2] == "Left out: 2 runs of other models: no model name (1 run), tree (1 run); compare them with -P model_name=<name>"
    assert printed[-1].startswith(f"Best by R²: run {ids['trial']} ")
    card = mlflow.artifacts.load_text(f"runs:/{active.info.run_id}/card.html")
    assert f">{MODEL}<" in card and f">{ELASTICNET}<" in card and ">no model name (1 run), tree (1 run)<" in card


def test_the_cli_body_ranks_by_the_metric_the_runs_gate_used_unless_told(active_store, capsys):
    with mlflow.start_run(experiment_id=active_store.experiment_id) as active:
        compare._compare(args(model_name="tree"))
    run = active_store.client.get_run(active.info.run_id)
    assert run.data.tags["pipeline.compare.metric"] == RMSE.name
    assert run.data.tags["pipeline.compare.best_run_id"] == active_store.ids["tree"]
    assert capsys.readouterr().out.splitlines()[0].startswith("1 pipeline run of model 'tree' (regression) in experiment tuning")


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
        compare._compare(args(experiment="", metric="rmse", max_runs=10))
    with (
        mlflow.start_run(experiment_id=empty),
        pytest.raises(InputError, match=r"^no finished pipeline runs of model 'nope' .* it has runs of diabetes-elasticnet \(4 runs\), "),
    ):
        compare._compare(args(model_name="nope"))


def test_an_unknown_metric_fails_before_any_run_is_read(active_store, monkeypatch):
    monkeypatch.setattr(compare, "collect", lambda *a: pytest.fail("read the runs"))
    with mlflow.start_run(experiment_id=active_store.experiment_id), pytest.raises(InputError, match=r"^-P metric: unknown metric 'nope'"):
        compare._compare(args(metric="nope"))


def test_runs_of_a_model_that_mix_tasks_are_refused(tracking_uri, tmp_path):
    client = MlflowClient()
    exp = client.create_experiment("mixed", artifact_location=(tmp_path / "artifacts").as_uri())
    for start, task, metric in ((100, "regression", "rmse"), (200, "classification", "log_loss")):
        evaluation = _run(client, exp, start - 1, metrics={RMSE.name: 50.0} if task == "regression" else {"log_loss": 0.5})
        _run(client, exp, start, tags={"pipeline.evaluate.run_id": evaluation}, params=model_params("m", task=task, metric=metric))
    with mlflow.start_run(experiment_id=exp), pytest.raises(InputError) as caught:
        compare._compare(args(experiment="mixed", model_name="m"))
    assert (
        str(caught.value) == "the runs of model 'm' mix tasks: classification (1 run), regression (1 run); their metrics cannot be compared"
    )


def test_runs_that_reused_an_evaluation_are_shown_once_as_the_run_that_did_the_work(tracking_uri, tmp_path):
    client = MlflowClient()
    exp = client.create_experiment("repeats", artifact_location=(tmp_path / "artifacts").as_uri())
    evaluation = _run(client, exp, 10, metrics={RMSE.name: 50.0, MAE.name: 40.0, R2.name: 0.5})
    first = _run(client, exp, 100, tags={"pipeline.evaluate.run_id": evaluation, "pipeline.kind": "trial"}, params=model_params(alpha="1"))
    # The same sweep again: a new trial run whose steps were all reused.
    _run(client, exp, 200, tags={"pipeline.evaluate.run_id": evaluation, "pipeline.kind": "trial"}, params=model_params(alpha="1"))
    assert run_ids(compare.collect(exp, 1000, MODEL)) == [first]


def test_any_estimators_parameters_are_columns_numbers_where_they_parse(tracking_uri, tmp_path):
    client = MlflowClient()
    exp = client.create_experiment("forest", artifact_location=(tmp_path / "artifacts").as_uri())
    forest = "sklearn.ensemble.RandomForestRegressor"
    for start, depth, criterion in ((100, "3", "squared_error"), (200, "8", "poisson")):
        evaluation = _run(client, exp, start - 1, metrics={RMSE.name: 50.0 + start / 100})
        params = model_params(estimator=forest, max_depth=depth, criterion=criterion, n_estimators="100")
        _run(client, exp, start, tags={"pipeline.evaluate.run_id": evaluation, "pipeline.kind": "trial"}, params=params)
    frame = ranking.rank(compare.collect(exp, 1000, MODEL), RMSE)
    assert ranking.parameters(frame) == ["criterion", "max_depth", "n_estimators"]
    assert set(frame["estimator"]) == {forest}
    assert list(frame["max_depth"]) == [3.0, 8.0] and list(frame["criterion"]) == ["squared_error", "poisson"]
    # Plots of the number parameters that vary: not criterion (text), not n_estimators (the same).
    assert list(ranking.plots(frame, RMSE, numbers_only=True)) == ["plots/rmse_vs_max_depth.png"]


def test_an_evaluate_run_in_another_experiment_is_found_there(tracking_uri, tmp_path):
    client = MlflowClient()
    exp = client.create_experiment("here", artifact_location=(tmp_path / "here").as_uri())
    elsewhere = client.create_experiment("elsewhere", artifact_location=(tmp_path / "elsewhere").as_uri())
    evaluation = _run(client, elsewhere, 10, metrics={RMSE.name: 51.0}, tags={"pipeline.evaluation.passed": "true"})
    _run(client, exp, 100, tags={"pipeline.evaluate.run_id": evaluation}, params=model_params(alpha="1"))
    (row,) = ranking.rank(compare.collect(exp, 1000, MODEL), RMSE).itertuples()
    assert (row.alpha, getattr(row, RMSE.name), row.evaluation) == (1.0, 51.0, "passed")
