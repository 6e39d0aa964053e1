"""End to end: ``mlflow run . -e predict -P engine=spark`` scores rows on Apache Spark.

One temporary store holds a registered champion (trained here, in-process, in a few seconds).
The real CLI then scores a few rows with ``-P engine=spark -P spark_master=local[2]`` and the
predictions must equal the pandas engine's on the same rows; a file without a required column must
fail like the pandas engine's, before Spark starts. A classifier with string labels, logged with
the metadata train writes, is scored on Spark too, without ``-P schema``: its labels and
``probability_<class>`` columns must equal the pandas engine's (two Spark sessions in all).

Skipped only when there is no Java: pyspark itself is a test dependency (requirements-dev.txt).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.models import infer_signature

from steps import predict
from steps.core.schema import load_schema, parse_schema, validate_frame
from steps.core.tasks import classes
from steps.mlflow_io.artifacts import read_table
from tests.conftest import PROJECT_ROOT, fit_model, log_model
from tests.integration.conftest import mlflow_cli

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.spark,
    pytest.mark.skipif(shutil.which("java") is None, reason="engine=spark needs Java 17 or later, and there is no java on PATH"),
]

MODEL = "diabetes-elasticnet"
CLASSIFIER = "diabetes-progression-classifier"
ROWS = 30
ERROR_PREFIX = "error: "


@dataclass
class Store:
    path: Path
    model_id: str

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.path / 'mlflow.db'}"

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(self.tracking_uri)

    def predict(self, data: Path, *params: str) -> subprocess.CompletedProcess:
        args = ["run", str(PROJECT_ROOT), "-e", "predict", "--env-manager", "local", "-P", f"data_uri={data}"]
        for param in params:
            args += ["-P", param]
        return mlflow_cli(*args, workdir=self.path, tracking_uri=self.tracking_uri)

    def predict_runs(self, status: str) -> list[Run]:
        runs = self.client.search_runs(["0"], max_results=100)
        return [r for r in runs if r.data.tags.get("mlflow.project.entryPoint") == "predict" and r.info.status == status]


def _register_champion(directory: Path) -> str:
    """Train the pipeline's model on the example data (in-process, as train does), register it as the champion."""
    schema = load_schema("conf/schema.yaml")
    data = validate_frame(pd.read_csv(PROJECT_ROOT / "data/example_data.csv"), schema, "example_data.csv")
    model = fit_model(data, schema, alpha=0.3, l1_ratio=0.5, max_iter=5000)
    features = data[schema.features]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(directory)  # the store's artifacts (./mlruns) beside it
        mlflow.set_tracking_uri(f"sqlite:///{directory / 'mlflow.db'}")
        try:
            with mlflow.start_run():
                info = log_model(model, signature=infer_signature(features, model.predict(features)))
            version = mlflow.register_model(info.model_uri, MODEL)
            MlflowClient().set_registered_model_alias(MODEL, "champion", version.version)
        finally:
            mlflow.set_tracking_uri(None)
    return info.model_id


def _register_classifier(directory: Path) -> None:
    """A classifier of the example data (progression "high" or "low", against the median), logged
    with the metadata train writes (task, classes, schema), registered as CLASSIFIER's champion."""
    raw = load_schema("conf/schema.yaml").to_dict()
    columns = {name: spec for name, spec in raw["columns"].items() if name != "target"}
    schema = parse_schema({"target": "progression", "columns": {**columns, "progression": {"dtype": "string"}}}, "classifier schema")
    data = pd.read_csv(PROJECT_ROOT / "data/example_data.csv")
    data["progression"] = np.where(data.pop("target") > 140, "high", "low")  # 140: about the median
    data = validate_frame(data, schema, "example_data.csv")
    model = fit_model(data, schema)
    features = data[schema.features]
    metadata = {"task": "classification", "classes": classes(data["progression"]), "schema": schema.to_dict()}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(directory)
        mlflow.set_tracking_uri(f"sqlite:///{directory / 'mlflow.db'}")
        try:
            with mlflow.start_run():
                info = log_model(model, signature=infer_signature(features, model.predict(features)), metadata=metadata)
            version = mlflow.register_model(info.model_uri, CLASSIFIER)
            MlflowClient().set_registered_model_alias(CLASSIFIER, "champion", version.version)
        finally:
            mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    path = tmp_path_factory.mktemp("spark-predict")
    return Store(path, _register_champion(path))


@pytest.fixture(scope="module")
def rows(store: Store) -> Path:
    """A few rows to score: an ID column the schema does not know, the target, and a missing value."""
    frame = pd.read_csv(PROJECT_ROOT / "data/example_data.csv").head(ROWS)
    frame.insert(0, "patient_id", [f"p{i:03d}" for i in range(ROWS)])
    frame["bmi"] = frame["bmi"].astype(object)
    frame.loc[4, "bmi"] = None  # imputed by the model, on either engine
    path = store.path / "new_patients.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def spark_run(store: Store, rows: Path) -> tuple[subprocess.CompletedProcess, Run]:
    process = store.predict(rows, "engine=spark", "spark_master=local[2]")
    assert process.returncode == 0, process.stderr[-5000:]
    (run,) = store.predict_runs("FINISHED")
    return process, store.client.get_run(run.info.run_id)


def test_spark_predictions_equal_the_pandas_engines_and_keep_every_column(store, rows, spark_run):
    _, run = spark_run
    assert run.data.params["engine"] == "spark"
    assert run.data.metrics["rows"] == ROWS
    mlflow.set_tracking_uri(store.tracking_uri)
    try:
        local = Path(
            mlflow.artifacts.download_artifacts(run.data.tags["pipeline.output.predictions_uri"], dst_path=str(store.path / "out"))
        )
        # The pandas engine's core on the same file, with the same registered version.
        schema = load_schema("conf/schema.yaml")
        model = mlflow.pyfunc.load_model(f"models:/{MODEL}/1")
        expected = predict.run(read_table(str(rows), text_columns=schema.text_columns), model, schema, source=str(rows)).predictions
    finally:
        mlflow.set_tracking_uri(None)
    # A directory of Parquet part files (no Spark bookkeeping files), read as one table.
    assert local.is_dir()
    assert sorted(p.name for p in local.iterdir()) and all(p.name.startswith("part-") for p in local.iterdir())
    scored = pd.read_parquet(local).sort_values("patient_id", ignore_index=True)
    assert len(scored) == ROWS
    assert list(scored.columns) == [*pd.read_csv(rows, nrows=0).columns, "prediction"]
    assert scored["patient_id"].tolist() == [f"p{i:03d}" for i in range(ROWS)]
    assert np.isfinite(scored["prediction"]).all()
    np.testing.assert_allclose(scored["prediction"], expected["prediction"], rtol=0, atol=1e-9)
    pd.testing.assert_frame_equal(scored, expected, check_exact=False, rtol=0, atol=1e-9)


def test_the_spark_run_is_tagged_and_linked_to_the_model_like_the_pandas_engines(store, spark_run):
    _, run = spark_run
    tags = run.data.tags
    assert tags["pipeline.step"] == "predict"
    assert tags["pipeline.model_name"] == MODEL
    assert tags["pipeline.model_version"] == "1"
    assert tags["pipeline.model_uri"] == f"models:/{MODEL}/1"
    assert tags["pipeline.model_id"] == store.model_id
    assert tags["pipeline.output.predictions_uri"] == f"runs:/{run.info.run_id}/predictions/predictions.parquet"
    assert [m.model_id for m in run.inputs.model_inputs] == [store.model_id]
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.name == "scored"
    assert [t.value for t in dataset.tags if t.key == "mlflow.data.context"] == ["prediction"]


def test_the_spark_run_stays_quiet_and_local(spark_run):
    process, run = spark_run
    assert run.data.params["spark_master"].strip("'") == "local[2]"
    assert "Traceback" not in process.stderr
    assert not [line for line in process.stderr.splitlines() if line.startswith(ERROR_PREFIX)]
    assert "master local[2]" in process.stderr  # the step's log names the master it used


def test_spark_rows_without_a_required_column_fail_with_one_clear_line(store, rows):
    bad = store.path / "no_bmi.csv"
    pd.read_csv(rows).drop(columns=["bmi"]).to_csv(bad, index=False)
    process = store.predict(bad, "engine=spark", "spark_master=local[2]")
    assert process.returncode == 1, process.stderr[-3000:]
    assert "Traceback" not in process.stderr
    errors = [line for line in process.stderr.splitlines() if line.startswith(ERROR_PREFIX)]
    assert errors == [f"error: predict: {bad}: missing column(s) 'bmi' required by the schema"], process.stderr[-3000:]
    (failed,) = store.predict_runs("FAILED")
    assert failed.data.params["data_uri"] == str(bad)
    assert failed.data.tags["pipeline.error"] == errors[0].removeprefix(ERROR_PREFIX)


@pytest.fixture(scope="module")
def classifier_run(store: Store, rows: Path) -> Run:
    _register_classifier(store.path)
    process = store.predict(rows, "engine=spark", "spark_master=local[2]", f"model_name={CLASSIFIER}")
    assert process.returncode == 0, process.stderr[-5000:]
    assert f"checking the rows against the schema models:/{CLASSIFIER}/1 was trained with" in process.stderr
    (run,) = [r for r in store.predict_runs("FINISHED") if r.data.tags.get("pipeline.model_name") == CLASSIFIER]
    return store.client.get_run(run.info.run_id)


def test_a_classifier_on_spark_writes_the_labels_and_probabilities_of_the_pandas_engine(store, rows, classifier_run):
    mlflow.set_tracking_uri(store.tracking_uri)
    try:
        local = mlflow.artifacts.download_artifacts(
            classifier_run.data.tags["pipeline.output.predictions_uri"], dst_path=str(store.path / "classified")
        )
        model = mlflow.pyfunc.load_model(f"models:/{CLASSIFIER}/1")
        schema = predict.trained_schema(model, f"models:/{CLASSIFIER}/1")
        raw = read_table(str(rows), text_columns=schema.text_columns)
        expected = predict.run(raw, model, schema, source=str(rows)).predictions
    finally:
        mlflow.set_tracking_uri(None)
    scored = pd.read_parquet(local).sort_values("patient_id", ignore_index=True)
    labels = model.get_raw_model().classes_.tolist()
    assert list(scored.columns) == [*raw.columns, "prediction", *[f"probability_{label}" for label in labels]]
    assert labels == ["high", "low"]
    assert scored["prediction"].tolist() == expected["prediction"].tolist()
    assert set(scored["prediction"]) == {"high", "low"}
    probabilities = scored[["probability_high", "probability_low"]]
    np.testing.assert_allclose(probabilities, expected[["probability_high", "probability_low"]], rtol=0, atol=1e-12)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
