"""The predict core: schema checks on rows to score, every row scored, extra columns kept."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from steps import featurize, predict, train
from steps.errors import DataError, InputError
from steps.registry import RegisteredModel
from tests.conftest import make_frame


@pytest.fixture
def model(tracking_uri, small_schema) -> mlflow.pyfunc.PyFuncModel:
    frame = make_frame(rows=60)
    transformer = featurize.run(frame, small_schema).transformer
    fitted = train.run(frame, transformer, small_schema, train.TrainParams(alpha=0.01, l1_ratio=0.5, max_iter=5000)).model
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            fitted, name="model", serialization_format="skops", skops_trusted_types=featurize.SKOPS_TRUSTED_TYPES
        )
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
