"""End to end: a classifier with string labels, trained by the real `mlflow run`, served and scored.

The data is scikit-learn's breast cancer set, written here: 30 float features (snake_case names)
and a string target ``diagnosis`` (malignant or benign), with a schema file of its own. The full
pipeline trains and registers the champion into a temporary store (``-P data_uri -P schema -P
model_name``); then

- ``mlflow models serve -m models:/<name>@champion --env-manager local`` answers a
  ``dataframe_split`` request with the labels themselves;
- ``mlflow run . -e predict`` with that model and WITHOUT ``-P schema`` checks the rows against
  the schema the model records in its metadata, and writes the labels and one
  ``probability_<class>`` column per class.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from mlflow.entities import Run
from sklearn.datasets import load_breast_cancer

from tests.conftest import PROJECT_ROOT
from tests.integration.conftest import PipelineRun, explain, mlflow_cli, post_json, run_pipeline, served_model

pytestmark = pytest.mark.e2e

MODEL = "breast-cancer-classifier"
LABELS = ("benign", "malignant")
TARGET = "diagnosis"
SCORED_ROWS = 40


def snake_case(name: str) -> str:
    return re.sub(r"\W+", "_", name.strip()).lower()


@dataclass
class Trained:
    pipeline: PipelineRun
    data: pd.DataFrame  # every row, with the target
    schema: dict  # the schema file's content

    @property
    def store(self) -> Path:
        return self.pipeline.workdir

    @property
    def tracking_uri(self) -> str:
        return self.pipeline.tracking_uri

    @property
    def features(self) -> list[str]:
        return [c for c in self.data.columns if c != TARGET]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """The whole pipeline on the breast cancer data, its own schema and model name, into a fresh store."""
    workdir = tmp_path_factory.mktemp("classifier")
    bunch = load_breast_cancer(as_frame=True)
    data = bunch.data.rename(columns=snake_case)
    data[TARGET] = np.asarray(bunch.target_names)[bunch.target.to_numpy()]
    assert set(data[TARGET]) == set(LABELS)
    data.to_csv(workdir / "breast_cancer.csv", index=False)
    schema = {"target": TARGET, "columns": {**{name: {"dtype": "float"} for name in data.columns[:-1]}, TARGET: {"dtype": "string"}}}
    (workdir / "breast_cancer.yaml").write_text(yaml.safe_dump(schema, sort_keys=False), encoding="utf-8")
    run = run_pipeline(
        workdir,
        f"data_uri={workdir / 'breast_cancer.csv'}",
        f"schema={workdir / 'breast_cancer.yaml'}",
        f"model_name={MODEL}",
        tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}",
    )
    assert run.process.returncode == 0, explain(run)
    return Trained(run, data, schema)


def test_the_pipeline_trains_a_classifier_and_makes_it_the_champion(trained):
    client = trained.pipeline.client
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert str(champion.version) == "1"
    assert champion.tags["model.task"] == "classification"
    assert trained.pipeline.children()["train"].data.tags["pipeline.task"] == "classification"


def test_the_champion_carries_its_schema_task_and_classes_in_its_metadata(trained):
    mlflow.set_tracking_uri(trained.tracking_uri)
    try:
        metadata = mlflow.models.get_model_info(f"models:/{MODEL}@champion").metadata
    finally:
        mlflow.set_tracking_uri(None)
    assert metadata["task"] == "classification"
    assert metadata["classes"] == list(LABELS)
    recorded = metadata["schema"]
    assert recorded["target"] == TARGET
    assert recorded["columns"] == {
        **{name: {"dtype": "float", "categorical": False, "nullable": True} for name in trained.features},
        TARGET: {"dtype": "string", "categorical": True, "nullable": False},
    }


@pytest.fixture(scope="module")
def served_champion(trained):
    """The README's command: ``mlflow models serve -m models:/<name>@champion --env-manager local``."""
    with served_model(f"models:/{MODEL}@champion", workdir=trained.store, env={"MLFLOW_TRACKING_URI": trained.tracking_uri}) as url:
        yield url


def test_the_served_classifier_answers_with_the_labels(trained, served_champion):
    # Rows of both classes: the first rows of the file are malignant, the last ones mostly benign.
    rows = pd.concat([trained.data.head(10), trained.data.tail(10)], ignore_index=True)
    status, body = post_json(
        f"{served_champion}/invocations", {"dataframe_split": rows[trained.features].to_dict(orient="split", index=False)}
    )
    assert status == 200, body
    answers = body["predictions"]
    assert len(answers) == len(rows)
    assert set(answers) == set(LABELS), answers
    mlflow.set_tracking_uri(trained.tracking_uri)
    try:
        expected = mlflow.pyfunc.load_model(f"models:/{MODEL}/1").predict(rows[trained.features])
    finally:
        mlflow.set_tracking_uri(None)
    assert answers == list(expected)
    assert np.mean(np.asarray(answers) == rows[TARGET].to_numpy()) >= 0.9


@pytest.fixture(scope="module")
def predict_run(trained) -> tuple[str, Run, pd.DataFrame]:
    """``mlflow run . -e predict`` on unlabelled rows with an ID column, without -P schema."""
    rows = trained.data.sample(SCORED_ROWS, random_state=0).reset_index(drop=True)
    unlabelled = rows.drop(columns=TARGET)
    unlabelled.insert(0, "patient_id", [f"p{i:03d}" for i in range(SCORED_ROWS)])
    path = trained.store / "new_patients.csv"
    unlabelled.to_csv(path, index=False)
    process = mlflow_cli(
        "run", str(PROJECT_ROOT), "-e", "predict", "--env-manager", "local",
        "-P", f"data_uri={path}", "-P", f"model_name={MODEL}",
        workdir=trained.store, tracking_uri=trained.tracking_uri,
    )  # fmt: skip
    assert process.returncode == 0, process.stderr[-5000:]
    runs = trained.pipeline.runs()
    (run,) = [r for r in runs if r.data.tags.get("mlflow.project.entryPoint") == "predict"]
    return process.stderr, run, rows


def test_predict_checks_the_rows_against_the_models_own_schema(predict_run):
    stderr, run, _ = predict_run
    assert "schema" not in run.data.params or not run.data.params["schema"].strip("'")
    assert f"checking the rows against the schema models:/{MODEL}/1 was trained with (recorded in its metadata)" in stderr
    assert run.info.status == "FINISHED"
    assert run.data.tags["pipeline.model_version"] == "1"
    assert run.data.metrics["rows"] == SCORED_ROWS


def test_predict_writes_the_labels_and_a_probability_per_class(trained, predict_run):
    _, run, rows = predict_run
    mlflow.set_tracking_uri(trained.tracking_uri)
    try:
        local = mlflow.artifacts.download_artifacts(run.data.tags["pipeline.output.predictions_uri"], dst_path=str(trained.store / "out"))
        model = mlflow.pyfunc.load_model(f"models:/{MODEL}/1")
    finally:
        mlflow.set_tracking_uri(None)
    scored = pd.read_parquet(local)
    assert list(scored.columns) == ["patient_id", *trained.features, "prediction", "probability_benign", "probability_malignant"]
    assert scored["patient_id"].tolist() == [f"p{i:03d}" for i in range(SCORED_ROWS)]
    assert set(scored["prediction"]) == set(LABELS)
    assert scored["prediction"].tolist() == list(model.predict(rows[trained.features]))
    probabilities = scored[["probability_benign", "probability_malignant"]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    # The label is the more probable class (classes in the model's order: benign, malignant).
    assert scored["prediction"].tolist() == [LABELS[i] for i in probabilities.argmax(axis=1)]
    assert np.mean(scored["prediction"].to_numpy() == rows[TARGET].to_numpy()) >= 0.9
    assert MlflowClient(trained.tracking_uri).get_run(run.info.run_id).inputs.model_inputs
