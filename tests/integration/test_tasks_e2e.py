"""End to end: tasks, estimators and the baseline gate through the real `mlflow run` CLI.

Each scenario builds its own data (scikit-learn's bundled datasets, or random numbers) and its
own schema in a temporary directory, runs the pipeline into a store of its own and checks what
was recorded: the exit status, the runs' status and tags, evaluate's metrics and plots, the
registry's aliases, what the registered model predicts, and the summary on stdout.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Run
from sklearn import datasets

from tests.conftest import PROJECT_ROOT, check_card
from tests.integration.conftest import STEPS, PipelineRun, explain, run_pipeline

pytestmark = pytest.mark.e2e

ERROR_PREFIX = "error: "
# The classifier metrics evaluate logs (MLflow's names), each with its baseline's as baseline_<name>.
CLASSIFIER_METRICS = ("log_loss", "roc_auc", "f1_score", "accuracy_score")
REGRESSOR_METRICS = ("root_mean_squared_error", "mean_absolute_error", "r2_score")
# The wine data's three classes are three cultivars of Piedmont (UCI's wine data).
WINE_CULTIVARS = {0: "barolo", 1: "grignolino", 2: "barbera"}


# --- data and schemas -------------------------------------------------------------------------


def write_dataset(directory: Path, name: str, frame: pd.DataFrame, schema: dict[str, Any]) -> list[str]:
    """``frame`` as ``<name>.csv`` and ``schema`` as ``<name>.yaml`` in ``directory``; the -P values that select both."""
    directory.mkdir(parents=True, exist_ok=True)
    data, schema_file = directory / f"{name}.csv", directory / f"{name}.yaml"
    frame.to_csv(data, index=False)
    schema_file.write_text(json.dumps(schema, indent=2))  # JSON is YAML: no guessing of types
    return [f"data_uri={data}", f"schema={schema_file}"]


def float_features(frame: pd.DataFrame, target: str) -> dict[str, dict[str, Any]]:
    return {name: {"dtype": "float"} for name in frame.columns if name != target}


def breast_cancer(directory: Path) -> list[str]:
    """569 tumours, 30 measurements; target 0 (malignant) / 1 (benign) as int classes."""
    frame = datasets.load_breast_cancer(as_frame=True).frame
    schema = {"target": "target", "columns": {**float_features(frame, "target"), "target": {"dtype": "int", "categorical": True}}}
    return write_dataset(directory, "breast_cancer", frame, schema)


def wine(directory: Path, *, labels: bool) -> list[str]:
    """178 wines, 13 measurements; the cultivar as text labels, or as the ambiguous int codes 0/1/2."""
    frame = datasets.load_wine(as_frame=True).frame
    if labels:
        frame["target"] = frame["target"].map(WINE_CULTIVARS)
        target = {"dtype": "string", "allowed": list(WINE_CULTIVARS.values())}
    else:
        target = {"dtype": "int"}  # neither `categorical: true` nor a task: classes or a quantity?
    schema = {"target": "target", "columns": {**float_features(frame, "target"), "target": target}}
    return write_dataset(directory, "wine", frame, schema)


NOISE_ROWS = 600
NOISE_FEATURES = 5


def noise_features(rng: np.random.Generator) -> pd.DataFrame:
    return pd.DataFrame(rng.normal(size=(NOISE_ROWS, NOISE_FEATURES)), columns=[f"x{i}" for i in range(NOISE_FEATURES)])


def noise_classes(directory: Path) -> list[str]:
    """Random features and random true/false labels, 80/20: nothing to learn."""
    rng = np.random.default_rng(11)
    frame = noise_features(rng).assign(flag=rng.random(NOISE_ROWS) < 0.2)
    schema = {"target": "flag", "columns": {**float_features(frame, "flag"), "flag": {"dtype": "bool"}}}
    return write_dataset(directory, "noise_classes", frame, schema)


def noise_quantity(directory: Path) -> list[str]:
    """Random features and a random quantity: nothing to learn."""
    rng = np.random.default_rng(12)
    frame = noise_features(rng).assign(y=rng.normal(50, 10, NOISE_ROWS))
    schema = {"target": "y", "columns": {**float_features(frame, "y"), "y": {"dtype": "float"}}}
    return write_dataset(directory, "noise_quantity", frame, schema)


# --- what a run recorded ----------------------------------------------------------------------


def error_lines(run: PipelineRun) -> list[str]:
    return [line for line in run.process.stderr.splitlines() if line.startswith(ERROR_PREFIX)]


def one_error_line(run: PipelineRun) -> str:
    """A failed run's one ``error:`` line (no traceback, nothing else starting with ``error:``)."""
    assert run.process.returncode != 0, explain(run)
    assert "Traceback (most recent call last)" not in run.process.stderr, explain(run)
    errors = error_lines(run)
    assert len(errors) == 1, explain(run)
    assert run.parent().info.status == "FAILED"
    assert run.parent().data.tags["pipeline.error"] == errors[0].removeprefix(ERROR_PREFIX)
    return errors[0]


def assert_finished(run: PipelineRun) -> dict[str, Run]:
    """A run that finished: exit 0, no error line, the parent and every step FINISHED; its step runs."""
    assert run.process.returncode == 0, explain(run)
    assert error_lines(run) == [], explain(run)
    assert run.parent().info.status == "FINISHED"
    children = run.children()
    assert {step: child.info.status for step, child in children.items()} == dict.fromkeys(STEPS, "FINISHED")
    return children


def parent_of(run: PipelineRun) -> Run:
    """The parent run this invocation created (its id starts the summary it printed)."""
    match = re.search(r"^Pipeline run ([0-9a-f]{32}) ", run.process.stdout, flags=re.MULTILINE)
    assert match, explain(run)
    return run.client.get_run(match.group(1))


def aliases(run: PipelineRun, name: str) -> dict[str, str]:
    """The registered model's aliases -> the version each points at."""
    return {alias: str(version) for alias, version in run.client.get_registered_model(name).aliases.items()}


def evaluation_result(run: PipelineRun, evaluate_run_id: str) -> dict[str, Any]:
    return json.loads(run.artifact_text(evaluate_run_id, "evaluation/result.json"))


def artifact_paths(run: PipelineRun, run_id: str) -> set[str]:
    """Every artifact file of ``run_id``, at any depth."""
    paths, folders = set(), [None]
    while folders:
        for info in run.client.list_artifacts(run_id, folders.pop()):
            if info.is_dir:
                folders.append(info.path)
            else:
                paths.add(info.path)
    return paths


def champion_predictions(run: PipelineRun, name: str, rows: pd.DataFrame) -> list[Any]:
    """What ``models:/<name>@champion`` predicts for ``rows``, loaded with mlflow.pyfunc."""
    mlflow.set_tracking_uri(run.tracking_uri)
    try:
        predictions = mlflow.pyfunc.load_model(f"models:/{name}@champion").predict(rows)
    finally:
        mlflow.set_tracking_uri(None)
    return list(np.asarray(predictions).reshape(-1))


def assert_classifier_evaluation(run: PipelineRun, children: dict[str, Run]) -> set[str]:
    """evaluate logged MLflow's classifier metrics, the baseline's beside them, and the confusion matrix; its artifacts."""
    evaluate = children["evaluate"]
    for metric in CLASSIFIER_METRICS:
        assert metric in evaluate.data.metrics, (metric, sorted(evaluate.data.metrics))
        assert f"baseline_{metric}" in evaluate.data.metrics, (metric, sorted(evaluate.data.metrics))
    assert not set(REGRESSOR_METRICS) & set(evaluate.data.metrics)
    files = artifact_paths(run, evaluate.info.run_id)
    assert "confusion_matrix.png" in files, sorted(files)
    assert "plots/predicted_vs_actual.png" not in files  # a regression plot has no place here
    for step in ("ingest", "train", "evaluate"):
        assert children[step].data.tags["pipeline.task"] == "classification", step
    return files


# --- 1. binary classification, integer labels -------------------------------------------------


def test_binary_classification_with_int_labels_promotes_a_model_that_predicts_ints(tmp_path):
    run = run_pipeline(tmp_path / "store", *breast_cancer(tmp_path), "model_name=breast-cancer")
    children = assert_finished(run)
    files = assert_classifier_evaluation(run, children)
    evaluate = children["evaluate"]
    metrics = evaluate.data.metrics
    assert evaluate.data.tags["pipeline.evaluation.passed"] == "true", evaluate.data.tags["pipeline.evaluation.reason"]
    assert metrics["log_loss"] < metrics["baseline_log_loss"]
    assert metrics["roc_auc"] > 0.95
    assert metrics["baseline_roc_auc"] == 0.5
    # MLflow's plots for two classes: the ROC and precision-recall curves.
    for plot in ("roc_curve_plot.png", "precision_recall_curve_plot.png"):
        assert plot in files, (plot, sorted(files))
    assert children["train"].data.tags["pipeline.estimator"] == "sklearn.linear_model.LogisticRegression"

    assert aliases(run, "breast-cancer") == {"champion": "1", "challenger": "1"}
    assert run.client.get_model_version("breast-cancer", "1").tags["decision"] == "promoted"
    rows = datasets.load_breast_cancer(as_frame=True).frame.drop(columns=["target"]).iloc[[0, 1, 19]]  # malignant x2, benign
    predictions = champion_predictions(run, "breast-cancer", rows)
    assert all(isinstance(p, int | np.integer) for p in predictions), predictions
    assert set(predictions) <= {0, 1}
    assert predictions == [0, 0, 1]

    # The pipeline's card and metrics carry the classifier's evaluation, as they do a regressor's.
    parent = run.parent()
    for metric in CLASSIFIER_METRICS:
        assert parent.data.metrics[metric] == pytest.approx(metrics[metric]), metric
    main_card, _ = check_card(run.artifact_text(parent.info.run_id, "card.html"), min_images=1)
    assert "Decision: promoted to champion" in main_card
    assert re.findall(r"^.* main WARNING .*$", run.process.stderr, flags=re.MULTILINE) == []

    out = run.process.stdout
    assert re.search(r"Evaluation \(test split\): log loss [\d.]+, ROC AUC [\d.]+, F1 [\d.]+, accuracy [\d.]+\n", out), out
    baseline = r"\(the baseline: the train split's class frequencies\)"
    assert re.search(rf"Verdict: passed: log loss [\d.]+ reaches [\d.]+, 5% of the way from [\d.]+ {baseline} to 0", out), out
    assert "Decision: promoted to champion\nChampion: breast-cancer version 1 (this run's model)" in out


# --- 2. multiclass, string labels, another estimator ------------------------------------------


def test_multiclass_with_string_labels_and_a_chosen_estimator(tmp_path):
    run = run_pipeline(
        tmp_path / "store",
        *wine(tmp_path, labels=True),
        "model_name=wine",
        "model.estimator=sklearn.ensemble.RandomForestClassifier",
        "model.params.n_estimators=20",
        "model.params.random_state=0",  # the same forest on every run
    )
    children = assert_finished(run)
    assert_classifier_evaluation(run, children)
    train = children["train"]
    assert train.data.tags["pipeline.estimator"] == "sklearn.ensemble.RandomForestClassifier"
    # The step's own options: the estimator's import path and its arguments (as YAML text).
    assert train.data.params["estimator"] == "sklearn.ensemble.RandomForestClassifier", train.data.params
    assert train.data.params["params.n_estimators"] == "20", train.data.params
    parent = run.parent()
    assert parent.data.params["model.estimator"] == "sklearn.ensemble.RandomForestClassifier"
    assert parent.data.params["model.params.n_estimators"] == "20"
    assert "model.params.max_iter" not in parent.data.params  # LogisticRegression's default argument is not carried over
    # The logged model records what it is.
    model_id = train.data.tags["pipeline.output.model_uri"].removeprefix("models:/")
    logged = run.client.get_logged_model(model_id).params
    assert logged["estimator"] == "sklearn.ensemble.RandomForestClassifier"
    assert logged["n_estimators"] == "20"

    assert aliases(run, "wine")["champion"] == "1", run.process.stdout
    version = run.client.get_model_version("wine", "1")
    assert version.tags["model.estimator"] == "sklearn.ensemble.RandomForestClassifier"
    assert version.tags["model.task"] == "classification"
    frame = datasets.load_wine(as_frame=True).frame
    predictions = champion_predictions(run, "wine", frame.drop(columns=["target"]))
    assert all(isinstance(p, str) for p in predictions), predictions[:3]
    assert set(predictions) == set(WINE_CULTIVARS.values())
    # The labels are the right ones, not a shuffle of them: nearly every row gets its own cultivar.
    expected = [WINE_CULTIVARS[c] for c in frame["target"]]
    assert np.mean(np.asarray(predictions) == np.asarray(expected)) > 0.95
    assert "Champion: wine version 1 (this run's model)" in run.process.stdout


# --- 3. an int target that could be classes or a quantity -------------------------------------


def test_an_ambiguous_int_target_is_refused_in_ingest(tmp_path):
    run = run_pipeline(tmp_path / "store", *wine(tmp_path, labels=False), "model_name=wine")
    line = one_error_line(run)
    assert line.startswith("error: step ingest failed: "), line
    for words in ("column 'target' (int) has 3 distinct values", "model.task", "categorical: true"):
        assert words in line, line
    children = run.children()
    assert {step: child.info.status for step, child in children.items()} == {"ingest": "FAILED"}
    assert run.registered_versions() == []


# --- 4. regression with another estimator ------------------------------------------------------


def test_regression_with_a_random_forest_records_its_feature_importances(tmp_path):
    run = run_pipeline(tmp_path / "store", "model.estimator=sklearn.ensemble.RandomForestRegressor", "model.params.n_estimators=20")
    children = assert_finished(run)
    train = children["train"]
    assert train.data.tags["pipeline.task"] == "regression"
    assert train.data.tags["pipeline.estimator"] == "sklearn.ensemble.RandomForestRegressor"
    for metric in REGRESSOR_METRICS:
        assert metric in children["evaluate"].data.metrics
    importances = json.loads(run.artifact_text(train.info.run_id, "train/coefficients.json"))
    assert "intercept" not in importances  # a forest has no intercept: importances only
    assert any("bmi" in name for name in importances), importances
    assert all(value >= 0 for value in importances.values()), importances
    assert sum(importances.values()) == pytest.approx(1.0)
    text, _ = check_card(run.artifact_text(train.info.run_id, "card.html"), min_images=1)
    assert text.startswith("train: RandomForestRegressor"), text
    assert "Feature importances" in text, text
    assert "nonzero_coefficients" not in train.data.metrics


# --- 5. noise must not be promoted --------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "task", "metric", "constant"),
    [
        # Logistic regression on noise predicts the majority class for every row, but its
        # probabilities still differ from row to row: not degenerate, refused by the baseline.
        pytest.param(noise_classes, "classification", "log loss", None, id="classes"),
        pytest.param(noise_quantity, "regression", "RMSE", None, id="quantity"),
    ],
)
def test_a_noise_target_is_rejected_by_the_baseline_and_the_run_still_finishes(tmp_path, make, task, metric, constant):
    run = run_pipeline(tmp_path / "store", *make(tmp_path), "model_name=noise")
    children = assert_finished(run)  # a rejection is a normal outcome: exit 0
    evaluate = children["evaluate"]
    assert evaluate.data.tags["pipeline.task"] == task
    assert evaluate.data.tags["pipeline.evaluation.passed"] == "false"
    reason = evaluate.data.tags["pipeline.evaluation.reason"]
    assert "baseline" in reason and metric in reason, reason
    result = evaluation_result(run, evaluate.info.run_id)
    checks = {c["name"]: c for c in result["checks"]}
    assert checks["baseline"]["passed"] is False, result["checks"]
    if constant:
        assert checks["constant"] == {"name": "constant", "passed": False, "detail": constant}, result["checks"]
        assert constant in reason, reason
    assert "np." not in reason, reason  # values in words, not numpy's reprs

    assert children["register"].data.tags["pipeline.decision"] == "rejected"
    assert "champion" not in aliases(run, "noise")
    assert aliases(run, "noise") == {"challenger": "1"}
    out = run.process.stdout
    assert re.search(rf"Verdict: rejected: .*{re.escape(metric)} [\d.]+ misses .*\(the baseline: the train split's", out), out
    assert "Decision: rejected (see the verdict above)" in out
    assert "Champion: none (no version of noise has passed evaluation yet)" in out


# --- 6. bad model settings fail before any step runs ------------------------------------------


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        pytest.param(
            ("model.estimator=sklearn.ensemble.RandomForestRegressor", "alpha=0.3"),
            ("-P alpha", "not a parameter of RandomForestRegressor", "-P model.params.<name>"),
            id="alpha-for-a-forest",
        ),
        pytest.param(
            ("model.estimator=sklearn.ensemble.RandomWoodsRegressor",),
            ("-P model.estimator", "model.estimator", "sklearn.ensemble has no 'RandomWoodsRegressor'", "RandomForestRegressor"),
            id="unknown-estimator",
        ),
        pytest.param(
            ("model.estimator=sklearn.ensemble.RandomForestRegressor", "model.params.n_estimatorz=20"),
            ("-P model.params.n_estimatorz", "not a parameter of RandomForestRegressor", "did you mean 'n_estimators'?"),
            id="unknown-parameter",
        ),
    ],
)
def test_bad_model_settings_are_one_error_line_before_any_step(tmp_path, params, expected):
    run = run_pipeline(tmp_path, *params)
    line = one_error_line(run)
    for words in expected:
        assert words in line, line
    assert run.children() == {}, "a bad setting must stop the pipeline before any step runs"
    assert run.registered_versions() == []


# --- 7. an equal candidate does not churn the champion ----------------------------------------


def test_an_equal_candidate_leaves_the_champion_in_place(tmp_path):
    first = run_pipeline(tmp_path)
    assert_finished(first)
    assert aliases(first, "diabetes-elasticnet") == {"champion": "1", "challenger": "1"}
    second = run_pipeline(tmp_path, "use_cache=false")  # the same model again, trained anew
    assert second.process.returncode == 0, explain(second)
    assert error_lines(second) == [], explain(second)
    parent = parent_of(second)
    assert parent.info.status == "FINISHED"
    steps = {step: second.client.get_run(parent.data.tags[f"pipeline.{step}.run_id"]) for step in ("evaluate", "register")}
    assert steps["evaluate"].data.tags["pipeline.evaluation.passed"] == "false"
    assert steps["evaluate"].data.tags["pipeline.evaluation.champion_version"] == "1"
    assert steps["register"].data.tags["pipeline.decision"] != "promoted"
    assert aliases(second, "diabetes-elasticnet") == {"champion": "1", "challenger": "2"}
    assert second.client.get_model_version("diabetes-elasticnet", "2").tags["decision"] == "rejected"
    out = second.process.stdout
    assert re.search(
        r"Verdict: rejected: RMSE ([\d.]+) equals champion version 1's \1 on the same test split: an equal model does not", out
    ), out
    assert "Champion: diabetes-elasticnet version 1\n" in out, out


# --- 8. rows with no target value -----------------------------------------------------------------


def diabetes_without_two_targets(directory: Path) -> Path:
    data = pd.read_csv(PROJECT_ROOT / "data/example_data.csv")
    data["target"] = data["target"].astype(object)
    data.loc[[5, 17], "target"] = ""
    path = directory / "diabetes_gaps.csv"
    data.to_csv(path, index=False)
    return path


def test_rows_without_a_target_fail_by_default_naming_the_setting(tmp_path):
    data = diabetes_without_two_targets(tmp_path)
    run = run_pipeline(tmp_path / "store", f"data_uri={data}")
    line = one_error_line(run)
    for words in (str(data), "column 'target'", "2 missing value(s), first at row 6", "data.drop_missing_target"):
        assert words in line, line
    assert {step: child.info.status for step, child in run.children().items()} == {"ingest": "FAILED"}
    assert run.registered_versions() == []


def test_rows_without_a_target_are_dropped_when_asked(tmp_path):
    data = diabetes_without_two_targets(tmp_path)
    run = run_pipeline(tmp_path / "store", f"data_uri={data}", "data.drop_missing_target=true")
    children = assert_finished(run)
    ingest = children["ingest"]
    assert ingest.data.metrics["dropped_rows"] == 2
    assert ingest.data.metrics["rows"] == 440
    assert ingest.data.metrics["train_rows"] + ingest.data.metrics["test_rows"] == 440
    text, _ = check_card(run.artifact_text(ingest.info.run_id, "card.html"))
    assert "rows dropped for no target value 2" in text, text
