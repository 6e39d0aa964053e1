"""The predict core: schema checks on rows to score, every row scored, extra columns kept; a
classifier's labels and probabilities; the schema a model carries in its metadata; and the parts
of the Spark engine that need no Spark (its end-to-end test: tests/integration/test_spark_predict.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from mlflow.models import infer_signature

from steps import predict
from steps.core.errors import ConfigError, DataError, InputError
from steps.core.schema import DataSchema, parse_schema
from steps.core.tasks import classes
from steps.mlflow_io.registry import RegisteredModel
from steps.mlflow_io.step_run import settings
from tests.conftest import PROJECT_ROOT, SMALL_SCHEMA, fit_model, log_model, make_frame


@pytest.fixture
def model(tracking_uri, small_schema) -> mlflow.pyfunc.PyFuncModel:
    fitted = fit_model(make_frame(rows=60), small_schema, alpha=0.01, l1_ratio=0.5)
    with mlflow.start_run():
        info = log_model(fitted)
    mlflow.register_model(info.model_uri, "unit-model")
    MlflowClient().set_registered_model_alias("unit-model", "champion", "1")
    return mlflow.pyfunc.load_model(info.model_uri)


def test_every_row_is_scored_without_a_target_and_extra_columns_are_kept(model, small_schema):
    rows = make_frame(rows=12, seed=3).drop(columns="y")  # with missing values in x1, x2 and color
    rows.insert(0, "customer_id", [f"c{i}" for i in range(len(rows))])
    out = predict.run(rows, model, small_schema, source="new.csv").predictions
    assert list(out.columns) == ["customer_id", "x1", "x2", "color", "prediction"]
    assert len(out) == 12
    assert np.isfinite(out["prediction"]).all()
    assert out["customer_id"].tolist() == rows["customer_id"].tolist()
    expected = model.predict(rows[small_schema.features])
    np.testing.assert_allclose(out["prediction"], expected)


def test_a_target_column_is_checked_and_kept_when_present(model, small_schema):
    rows = make_frame(rows=5, seed=4)
    out = predict.run(rows, model, small_schema, source="labelled.csv").predictions
    assert list(out.columns) == ["x1", "x2", "color", "y", "prediction"]
    rows["y"] = rows["y"].astype(object)
    rows.loc[2, "y"] = "n/a"
    with pytest.raises(DataError, match=r"labelled.csv: column 'y'"):
        predict.run(rows, model, small_schema, source="labelled.csv")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns="x2"), r"new.csv: missing column\(s\) 'x2' required by the schema"),
        (lambda f: f.assign(x1=-5.0), r"new.csv: column 'x1': 5 value\(s\) outside \[0, 100\]"),
        (lambda f: f.assign(color="purple"), r"new.csv: column 'color': 5 value\(s\) not in allowed"),
        (lambda f: f.head(0), r"new.csv: no data rows \(only a header\)"),
        (lambda f: f.assign(prediction=1.0), r"new.csv: has a column named 'prediction', which predict writes"),
    ],
)
def test_bad_rows_name_the_file_and_column_before_any_model_is_used(small_schema, change, message):
    rows = change(make_frame(rows=5, seed=5, missing=False).drop(columns="y"))
    with pytest.raises((DataError, InputError), match=message):
        predict.run(rows, model=None, schema=small_schema, source="new.csv")


def test_the_model_defaults_to_the_champion_resolved_to_its_version(model):
    client = MlflowClient()
    assert predict.model_to_use(client, "", "unit-model") == ("models:/unit-model/1", RegisteredModel("unit-model", "1"))
    assert predict.model_to_use(client, "models:/unit-model/1", "ignored")[0] == "models:/unit-model/1"
    assert predict.model_to_use(client, "runs:/abc/model", "unit-model") == ("runs:/abc/model", None)
    with pytest.raises(InputError, match=r"model models:/other@champion: the alias points at no version yet"):
        predict.model_to_use(client, "", "other")


# --- a classifier's outputs, and the schema the model carries -----------------------------------

# The small schema with a target that names classes: string labels by default.
LABELS = {"string": ("benign", "malignant"), "bool": (True, False), "int": (1, 2, 3)}


def classifier_schema(dtype: str = "string") -> DataSchema:
    target = {"dtype": dtype, "categorical": True}
    columns = {name: spec for name, spec in SMALL_SCHEMA["columns"].items() if name != "y"}
    return parse_schema({"target": "label", "columns": {**columns, "label": target}}, source="classifier schema")


def labelled_frame(rows: int = 60, seed: int = 0, dtype: str = "string") -> pd.DataFrame:
    """make_frame's rows with a class label instead of y: the label follows y's tertiles (two classes: its median)."""
    frame = make_frame(rows=rows, seed=seed, missing=False)
    labels = LABELS[dtype]
    bins = np.quantile(frame["y"], np.linspace(0, 1, len(labels) + 1)[1:-1])
    frame["label"] = [labels[i] for i in np.digitize(frame.pop("y"), bins)]
    return frame


def log_classifier(frame: pd.DataFrame, schema: DataSchema, name: str, estimator: str | None = None, metadata: dict | None = None):
    """Fit and log a classifier as train does (a signature; the task, classes and schema as its
    ``metadata`` unless given), register it as ``name``'s champion; the loaded model."""
    fitted = fit_model(frame, schema, estimator=estimator)
    sample = frame[schema.features]
    if metadata is None:
        metadata = {"task": "classification", "classes": classes(frame[schema.target]), "schema": schema.to_dict()}
    with mlflow.start_run():
        info = log_model(fitted, signature=infer_signature(sample, fitted.predict(sample)), metadata=metadata or None)
    version = mlflow.register_model(info.model_uri, name)
    MlflowClient().set_registered_model_alias(name, "champion", version.version)
    return mlflow.pyfunc.load_model(info.model_uri)


@pytest.mark.parametrize("dtype", ["string", "bool", "int"])
def test_a_classifier_writes_its_labels_and_the_probability_of_each_class(tracking_uri, dtype):
    schema = classifier_schema(dtype)
    model = log_classifier(labelled_frame(dtype=dtype), schema, "unit-classifier")
    rows = labelled_frame(rows=15, seed=7, dtype=dtype).drop(columns="label")
    rows.insert(0, "customer_id", [f"c{i}" for i in range(len(rows))])
    out = predict.run(rows, model, schema, source="new.csv").predictions
    sklearn_model = model.get_raw_model()
    labels = sklearn_model.classes_.tolist()
    assert list(out.columns) == ["customer_id", "x1", "x2", "color", "prediction", *[f"probability_{label}" for label in labels]]
    # The labels as they were in the training data: "benign", True, 2 (not 2.0).
    assert out["prediction"].tolist() == sklearn_model.predict(rows[schema.features]).tolist()
    assert {type(label) for label in out["prediction"].tolist()} == {type(LABELS[dtype][0])}
    assert set(out["prediction"]) <= set(LABELS[dtype])
    probabilities = out[[f"probability_{label}" for label in labels]].to_numpy()
    np.testing.assert_allclose(probabilities, sklearn_model.predict_proba(rows[schema.features]))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)


def test_a_classifier_without_predict_proba_writes_its_labels_only(tracking_uri):
    schema = classifier_schema()
    model = log_classifier(labelled_frame(), schema, "unit-classifier", estimator="sklearn.linear_model.RidgeClassifier")
    out = predict.run(labelled_frame(rows=8, seed=2).drop(columns="label"), model, schema, source="new.csv").predictions
    assert list(out.columns) == ["x1", "x2", "color", "prediction"]
    assert set(out["prediction"]) <= {"benign", "malignant"}


def test_a_classifier_logged_elsewhere_is_known_by_its_scikit_learn_model(tracking_uri):
    schema = classifier_schema()
    model = log_classifier(labelled_frame(), schema, "unit-classifier", metadata={})
    assert not model.metadata.metadata
    output = predict.model_output(model)
    assert output.classification
    assert output.classes == ("benign", "malignant")
    assert output.columns == ["prediction", "probability_benign", "probability_malignant"]


def test_a_regressor_writes_a_float_prediction_only(model):
    output = predict.model_output(model)  # logged without metadata: known by its scikit-learn model
    assert (output.classification, output.columns, output.spark_type) == (False, ["prediction"], "double")


def test_rows_with_a_column_named_like_a_probability_are_refused(tracking_uri):
    schema = classifier_schema()
    model = log_classifier(labelled_frame(), schema, "unit-classifier")
    rows = labelled_frame(rows=5, seed=3).drop(columns="label").assign(probability_benign=0.5)
    with pytest.raises(InputError, match=r"^new.csv: has a column named 'probability_benign', which predict writes; rename it$"):
        predict.run(rows, model, schema, source="new.csv")
    names = [str(c) for c in rows.columns]
    with pytest.raises(InputError, match=r"^new.csv: has a column named 'probability_benign', which predict writes"):
        predict.check_columns(names, schema, "new.csv", predict.model_output(model).columns)


@pytest.mark.parametrize(
    ("labels", "spark_type"),
    [(("benign", "malignant"), "string"), ((False, True), "boolean"), ((1, 2, 3), "long"), ((0.5, 1.5), "double"), ((), None)],
)
def test_on_spark_the_prediction_has_the_type_of_the_labels(labels, spark_type):
    assert predict.ModelOutput(classification=True, classes=labels).spark_type == spark_type


def test_the_model_carries_the_schema_it_was_trained_with_in_its_mlmodel_metadata(tracking_uri):
    schema = classifier_schema()
    model = log_classifier(labelled_frame(), schema, "unit-classifier")
    # MLflow keeps the nested mapping and reads it back, for every kind of URI to the model.
    info = mlflow.models.get_model_info("models:/unit-classifier@champion")
    assert info.metadata["schema"] == schema.to_dict()
    assert info.metadata["task"] == "classification"
    assert info.metadata["classes"] == ["benign", "malignant"]
    # The columns in the schema's order (MLmodel's YAML sorts mapping keys; the signature does not).
    assert list(info.metadata["schema"]["columns"]) == ["color", "label", "x1", "x2"]
    assert predict.trained_schema(model, "models:/unit-classifier/1") == schema


def write_schema(path: Path, schema: dict) -> str:
    path.write_text(yaml.safe_dump(schema, sort_keys=False), encoding="utf-8")
    return str(path)


def predict_in_process(*argv: str) -> dict:
    """The step's body as ``mlflow run . -e predict`` runs it, in a run of this process."""
    with mlflow.start_run() as run:
        outputs = predict._predict(predict.build_parser().parse_args(list(argv)))
    return {"run_id": run.info.run_id, **outputs}


def test_predict_checks_the_rows_against_the_schema_of_the_model_without_minus_p_schema(tracking_uri, tmp_path, caplog):
    schema = classifier_schema()
    log_classifier(labelled_frame(), schema, "unit-classifier")
    rows = tmp_path / "new.csv"
    labelled_frame(rows=9, seed=4).drop(columns="label").to_csv(rows, index=False)  # not conf/schema.yaml's columns
    with caplog.at_level("INFO", logger="steps.predict"):
        outputs = predict_in_process(f"--data_uri={rows}", "--model_name=unit-classifier")
    assert "checking the rows against the schema models:/unit-classifier/1 was trained with (recorded in its metadata)" in caplog.text
    local = mlflow.artifacts.download_artifacts(outputs["predictions_uri"].uri, dst_path=str(tmp_path / "out"))
    scored = pd.read_parquet(local)
    assert list(scored.columns) == ["x1", "x2", "color", "prediction", "probability_benign", "probability_malignant"]
    assert set(scored["prediction"]) <= {"benign", "malignant"}
    np.testing.assert_allclose(scored[["probability_benign", "probability_malignant"]].sum(axis=1), 1.0)


def test_an_explicit_schema_wins_over_the_models_own_and_says_so(tracking_uri, tmp_path, caplog):
    schema = classifier_schema()
    log_classifier(labelled_frame(), schema, "unit-classifier")
    stricter = schema.to_dict()
    stricter["columns"]["x1"]["max"] = 10
    path = write_schema(tmp_path / "stricter.yaml", stricter)
    rows = tmp_path / "new.csv"
    labelled_frame(rows=9, seed=4).drop(columns="label").to_csv(rows, index=False)
    with (
        caplog.at_level("INFO", logger="steps.predict"),
        pytest.raises(DataError, match=r"new.csv: column 'x1': \d+ value\(s\) outside \[0, 10\]"),
    ):
        predict_in_process(f"--data_uri={rows}", "--model_name=unit-classifier", f"--schema={path}")
    expected = f"checking the rows against -P schema {path}, not the schema models:/unit-classifier/1 was trained with"
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("checking the rows")] == [
        f"{expected} (recorded in its metadata)"
    ]


def test_a_model_that_records_no_schema_is_checked_against_data_schema(model, tmp_path, caplog):
    rows = tmp_path / "new.csv"
    make_frame(rows=5, seed=5, missing=False).drop(columns="y").to_csv(rows, index=False)
    with caplog.at_level("INFO", logger="steps.predict"), pytest.raises(DataError, match=r"new.csv: missing column\(s\) 'age', 'sex'"):
        predict_in_process(f"--data_uri={rows}", "--model_name=unit-model")
    assert (
        "models:/unit-model/1 records no schema (not logged by this pipeline's train): checking the rows against data.schema" in caplog.text
    )
    # -P schema still serves such a model.
    path = write_schema(tmp_path / "small.yaml", SMALL_SCHEMA)
    with caplog.at_level("INFO", logger="steps.predict"):
        outputs = predict_in_process(f"--data_uri={rows}", "--model_name=unit-model", f"--schema={path}")
    assert f"checking the rows against -P schema {path}\n" in caplog.text + "\n"
    scored = pd.read_parquet(mlflow.artifacts.download_artifacts(outputs["predictions_uri"].uri, dst_path=str(tmp_path / "out")))
    assert list(scored.columns) == ["x1", "x2", "color", "prediction"]
    assert scored["prediction"].dtype == "float64"


def test_a_schema_in_the_metadata_that_cannot_be_read_is_one_line_naming_the_model(tracking_uri):
    schema = classifier_schema()
    broken = {**schema.to_dict(), "target": "diagnosis"}
    model = log_classifier(labelled_frame(), schema, "unit-classifier", metadata={"task": "classification", "schema": broken})
    with pytest.raises(
        InputError, match=r"^model models:/unit-classifier/1: metadata 'schema': target 'diagnosis' is not one of the columns"
    ):
        predict.schema_to_use(model, "models:/unit-classifier/1")


# --- engine=spark: the parts that need no Spark ------------------------------------------------


def test_engine_defaults_to_pandas_and_a_bad_one_is_one_line_naming_the_parameter():
    parser = predict.build_parser()
    assert settings(parser.parse_args([]), predict.PredictSettings, "predict").engine == "pandas"  # conf/pipeline.yaml
    assert settings(parser.parse_args(["--engine=spark"]), predict.PredictSettings, "predict").engine == "spark"
    with pytest.raises(ConfigError, match=r"^predict.engine: must be one of pandas, spark, got 'dask'$"):
        settings(parser.parse_args(["--engine=dask"]), predict.PredictSettings, "predict")
    assert parser.parse_args([]).spark_master == ""


def test_the_spark_master_comes_from_the_parameter_then_the_environment_then_local():
    assert predict.spark_master("spark://head:7077", {"SPARK_MASTER": "yarn"}) == "spark://head:7077"
    assert predict.spark_master(" ", {"SPARK_MASTER": "yarn"}) == "yarn"
    assert predict.spark_master("", {}) == "local[*]"


@pytest.mark.parametrize("master", ["local", "local[2]", "local[*]", "local[4,2]", "local-cluster[2,1,1024]"])
def test_a_local_spark_is_quiet_and_listens_on_the_loopback_interface_only(master):
    conf = predict.spark_conf(master)
    assert conf["spark.ui.enabled"] == "false"
    assert conf["spark.driver.bindAddress"] == conf["spark.driver.host"] == "127.0.0.1"
    assert int(conf["spark.sql.shuffle.partitions"]) <= 8
    assert conf["spark.ui.showConsoleProgress"] == "false"


@pytest.mark.parametrize("master", ["spark://head:7077", "yarn", "k8s://https://api:6443", "localhost"])
def test_a_cluster_keeps_its_own_network_and_ui_settings(master):
    conf = predict.spark_conf(master)
    assert not {"spark.ui.enabled", "spark.driver.bindAddress", "spark.driver.host"} & set(conf)
    assert conf["spark.ui.showConsoleProgress"] == "false"


@pytest.mark.parametrize(
    "change",
    [
        lambda f: f.drop(columns="x2"),
        lambda f: f.drop(columns=["x1", "x2"]),
        lambda f: f.assign(prediction=1.0),
        lambda f: f.rename(columns={"x2": "x1"}),
        lambda f: pd.DataFrame({"x1;x2;color": ["1;2;red"]}),
        lambda f: pd.DataFrame(),
    ],
    ids=["missing", "two-missing", "prediction-column", "duplicate", "semicolons", "no-columns"],
)
def test_spark_column_checks_fail_with_the_pandas_engines_words(small_schema, change):
    rows = change(make_frame(rows=5, seed=5, missing=False).drop(columns="y"))
    with pytest.raises((DataError, InputError)) as pandas_error:
        predict.run(rows, model=None, schema=small_schema, source="new.csv")
    with pytest.raises(type(pandas_error.value)) as spark_error:
        predict.check_columns([str(c) for c in rows.columns], small_schema, source="new.csv")
    assert str(spark_error.value) == str(pandas_error.value)


def test_spark_column_checks_pick_the_features_and_the_target_only_when_present(small_schema):
    names = ["customer_id", "x1", "x2", "color"]
    assert [c.name for c in predict.check_columns(names, small_schema, "new.csv")] == ["x1", "x2", "color"]
    assert [c.name for c in predict.check_columns([*names, "y"], small_schema, "new.csv")] == ["x1", "x2", "color", "y"]


def test_value_checks_are_the_ones_the_column_can_fail(small_schema):
    assert predict.value_checks(small_schema.column("x1")) == {
        "non_numeric": "non-numeric value(s)",
        "infinite": "infinite value(s)",
        "out_of_range": "value(s) outside [0, 100]",
    }
    assert list(predict.value_checks(small_schema.column("x2"))) == ["non_numeric", "infinite"]
    assert list(predict.value_checks(small_schema.column("color"))) == ["not_allowed"]
    assert list(predict.value_checks(small_schema.column("y"))) == ["non_numeric", "infinite", "missing"]  # the target: never missing


def test_spark_value_problems_read_like_the_pandas_engines_with_an_example_instead_of_a_row(small_schema):
    x1, y = small_schema.column("x1"), small_schema.column("y")
    stats = predict.ColumnStats(
        missing=0,
        present=8,
        counts={"non_numeric": 1, "infinite": 0, "out_of_range": 2},
        examples={"non_numeric": "high", "out_of_range": -5.0},
    )
    assert predict.column_problems(x1, rows=10, stats=stats) == [
        "1 non-numeric value(s), e.g. 'high'",
        "2 value(s) outside [0, 100], e.g. -5.0",
    ]
    missing = predict.ColumnStats(missing=3, present=7, counts={"missing": 3})
    assert predict.column_problems(y, rows=10, stats=missing) == ["3 missing value(s)"]
    assert predict.column_problems(x1, rows=4, stats=predict.ColumnStats(missing=4, present=0)) == ["every value is missing"]
    # Nothing usable: only what the type found, as the pandas engine stops there too.
    unusable = predict.ColumnStats(missing=1, present=0, counts={"non_numeric": 3, "out_of_range": 0}, examples={"non_numeric": "n.a."})
    assert predict.column_problems(x1, rows=4, stats=unusable) == ["3 non-numeric value(s), e.g. 'n.a.'"]
    error = predict.data_error("new.csv", [f"column 'c{i}': bad" for i in range(5)])
    assert str(error) == "new.csv: column 'c0': bad; column 'c1': bad; column 'c2': bad (and 2 more problem(s))"


SPARK_ERROR = """An error occurred while calling o39.collectToPython.
: org.apache.spark.SparkException: [FAILED_READ_FILE.NO_HINT] Encountered error while reading file file:///data/rows.csv.  SQLSTATE: KD001
\tat org.apache.spark.sql.errors.QueryExecutionErrors$.cannotReadFilesError(QueryExecutionErrors.scala:920)
Caused by: org.apache.spark.SparkException: [MALFORMED_RECORD_IN_PARSING.WITHOUT_SUGGESTION] Malformed records are detected: [3,4].
Parse Mode: FAILFAST. To process malformed records as null result, try setting the option 'mode' as 'PERMISSIVE'.  SQLSTATE: 22023
\t... 1 more
Caused by: org.apache.spark.SparkRuntimeException: [MALFORMED_CSV_RECORD] Malformed CSV record: 3,4,5 SQLSTATE: KD000
\t... 25 more
"""

PYTHON_WORKER_ERROR = """An exception was thrown from the Python worker. Please see the stack trace below.
Traceback (most recent call last):
  File "site-packages/mlflow/pyfunc/__init__.py", line 850, in predict
mlflow.exceptions.MlflowException: Failed to enforce schema of data: column 'bmi' is missing
"""


def test_a_spark_error_becomes_its_innermost_cause_on_one_line():
    assert predict.spark_failure(SPARK_ERROR) == "[MALFORMED_CSV_RECORD] Malformed CSV record: 3,4,5"
    assert predict.spark_failure(PYTHON_WORKER_ERROR) == "Failed to enforce schema of data: column 'bmi' is missing"
    assert predict.spark_failure(RuntimeError("plain message\nmore")) == "plain message"
    assert predict.spark_failure(RuntimeError()) == "RuntimeError"


def test_local_tables_give_their_columns_without_spark(tmp_path, small_frame):
    small_frame.to_csv(tmp_path / "rows.csv", index=False)
    assert predict.local_columns((tmp_path / "rows.csv").as_uri(), "csv") == ["x1", "x2", "color", "y"]
    parts = tmp_path / "rows.parquet"
    parts.mkdir()
    (parts / "_SUCCESS").touch()
    small_frame.to_parquet(parts / "part-00000.parquet")
    assert predict.local_columns(parts.as_uri(), "parquet") == ["x1", "x2", "color", "y"]
    small_frame.to_csv(tmp_path / "rows.csv.gz", index=False)
    assert predict.local_columns((tmp_path / "rows.csv.gz").as_uri(), "csv") is None  # Spark reads it
    assert predict.local_columns("hdfs://nn/rows.csv", "csv") is None
    (tmp_path / "empty.csv").touch()
    assert predict.local_columns((tmp_path / "empty.csv").as_uri(), "csv") == []


def test_spark_reads_local_paths_as_file_uris_and_hadoop_uris_as_they_are(tmp_path):
    (tmp_path / "rows.csv").write_text("x1\n1\n")
    assert predict.spark_input(str(tmp_path / "rows.csv"), tmp_path) == (tmp_path / "rows.csv").as_uri()
    assert predict.spark_input((tmp_path / "rows.csv").as_uri(), tmp_path) == (tmp_path / "rows.csv").as_uri()
    assert predict.spark_input("hdfs://nn:8020/data/rows.parquet", tmp_path) == "hdfs://nn:8020/data/rows.parquet"
    with pytest.raises(InputError, match=r"^dataset .*/nope.csv: file not found$"):
        predict.spark_input(str(tmp_path / "nope.csv"), tmp_path)


def test_the_pandas_engine_works_without_pyspark():
    # MLflow itself imports pyspark when it is installed (mlflow/types/schema.py), so block it.
    code = "import sys; sys.modules['pyspark'] = None; import steps.predict; steps.predict.build_parser()"
    process = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=False)
    assert process.returncode == 0, process.stderr


def test_engine_spark_without_pyspark_or_java_says_what_it_needs(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyspark.sql", None)
    with pytest.raises(ConfigError, match=r"^engine=spark needs pyspark: pip install -r requirements-spark.txt$"):
        predict.start_spark("local[1]")
    monkeypatch.undo()
    monkeypatch.setattr(predict.shutil, "which", lambda name: None)
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(ConfigError, match=r"^engine=spark needs Java 17 or later: there is no java on PATH and JAVA_HOME is not set$"):
        predict.start_spark("local[1]")
