"""The preprocessing and the model unit on small synthetic frames with missing values (no MLflow)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from steps import train
from steps.core import features, model
from steps.core.data import split
from steps.core.errors import ConfigError
from steps.core.schema import DataSchema
from steps.core.tasks import CLASSIFICATION, R2, REGRESSION, RMSE
from tests.conftest import estimator_spec, make_frame


def test_preprocessing_is_fitted_on_the_train_split_only(small_schema):
    data = make_frame(rows=60)
    train_rows, _ = split(data, test_size=0.5, seed=1, source="f.csv")
    out = features.fit_preprocessing(train_rows, small_schema)
    means = np.array([out.transformer.named_transformers_[f"numeric{i}"].named_steps["scale"].mean_[0] for i in range(2)])
    numeric = train_rows[["x1", "x2"]]
    np.testing.assert_allclose(means, numeric.fillna(numeric.median()).mean().to_numpy())
    everything = data[["x1", "x2"]]
    assert not np.allclose(means, everything.fillna(everything.median()).mean().to_numpy())
    assert out.feature_names == ["x1", "x2", "color_blue", "color_green", "color_red"]


def test_one_imputer_and_scaler_per_column_transform_like_one_for_all_columns(small_schema):
    # Per-column parts keep memory down on large data; the numbers must not change.
    frame = make_frame(rows=80)
    together = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]).fit(frame[["x1", "x2"]])
    per_column = features.fit_preprocessing(frame, small_schema).transformer
    np.testing.assert_allclose(per_column.transform(frame)[:, :2], together.transform(frame[["x1", "x2"]]))


def test_training_in_chunks_gives_the_model_of_one_piece(small_schema, monkeypatch):
    frame = make_frame(rows=90)
    transformer = features.fit_preprocessing(frame, small_schema).transformer
    params = estimator_spec(alpha=0.1, l1_ratio=0.5, max_iter=5000)
    whole = train.run(frame, transformer, small_schema, params)
    monkeypatch.setattr(features, "CHUNK_ROWS", 7)
    monkeypatch.setattr(model, "CHUNK_ROWS", 7)
    chunked = train.run(frame, transformer, small_schema, params)
    assert chunked.description.weights == pytest.approx(whole.description.weights, rel=1e-12, abs=1e-12)
    assert chunked.metrics == pytest.approx(whole.metrics, rel=1e-12)


def test_transform_handles_missing_and_unseen_values(small_schema, small_frame):
    transformer = features.fit_preprocessing(small_frame, small_schema).transformer
    rows = pd.DataFrame({"x1": [np.nan, 5.0], "x2": [1.0, np.nan], "color": ["purple", np.nan]})
    encoded = transformer.transform(rows)
    assert np.isfinite(encoded).all()
    assert encoded[0, 2:].sum() == 0  # an unseen category encodes as all zeros


def test_schema_without_categorical_columns(small_schema, small_frame):
    numeric_only = DataSchema(target="y", columns=tuple(c for c in small_schema.columns if c.name != "color"))
    out = features.fit_preprocessing(small_frame.drop(columns=["color"]), numeric_only)
    assert out.feature_names == ["x1", "x2"]


def test_transformer_round_trips_through_skops(tmp_path, small_schema, small_frame):
    transformer = features.fit_preprocessing(small_frame, small_schema).transformer
    path = tmp_path / "preprocessor.skops"
    features.save_transformer(transformer, path)
    loaded = features.load_transformer_file(path)
    np.testing.assert_allclose(loaded.transform(small_frame), transformer.transform(small_frame))
    assert features.transformer_digest(loaded) == features.transformer_digest(transformer)


def test_train_builds_one_pipeline_that_predicts_from_raw_rows(small_schema):
    frame = make_frame(rows=200)
    transformer = features.fit_preprocessing(frame, small_schema).transformer
    out = train.run(frame, transformer, small_schema, estimator_spec(alpha=0.01, l1_ratio=0.5, max_iter=5000))
    assert [name for name, _ in out.model.steps] == ["preprocess", "regressor"]
    assert out.model.named_steps["preprocess"] is transformer  # featurize's fit is kept, not redone
    raw_rows = frame[small_schema.features].head(5)
    assert np.isfinite(out.model.predict(raw_rows)).all()
    assert out.metrics["train_r2"] > 0.9
    described = out.description
    assert described.weight_kind == "coefficient" and described.intercept is not None
    assert set(described.weights) == {"x1", "x2", "color_blue", "color_green", "color_red"}
    assert described.weights["x1"] > 0 > described.weights["x2"]
    assert described.facts["iterations"] >= 1


def test_stronger_regularisation_shrinks_the_coefficients(small_schema):
    frame = make_frame(rows=100)
    transformer = features.fit_preprocessing(frame, small_schema).transformer
    weak = train.run(frame, transformer, small_schema, estimator_spec(alpha=0.01, l1_ratio=1.0, max_iter=5000))
    strong = train.run(frame, transformer, small_schema, estimator_spec(alpha=1000.0, l1_ratio=1.0, max_iter=5000))
    assert strong.metrics["nonzero_coefficients"] < weak.metrics["nonzero_coefficients"]


def test_another_estimator_is_a_change_of_settings_only(small_schema):
    frame = make_frame(rows=120)
    transformer = features.fit_preprocessing(frame, small_schema).transformer
    forest = train.run(
        frame, transformer, small_schema, estimator_spec("sklearn.ensemble.RandomForestRegressor", n_estimators=5, random_state=0)
    )
    assert forest.description.weight_kind == "importance"
    assert sum(forest.description.weights.values()) == pytest.approx(1.0)
    assert "nonzero_coefficients" not in forest.metrics
    neighbours = train.run(frame, transformer, small_schema, estimator_spec("sklearn.neighbors.KNeighborsRegressor", n_neighbors=3))
    assert neighbours.description.weight_kind is None and neighbours.description.weights == {}  # nothing invented


def test_build_lets_an_estimator_overwrite_its_temporary_input_only_when_asked():
    params = estimator_spec(alpha=0.5, l1_ratio=0.5, max_iter=10)
    assert model.build(params, overwrite_input=True).copy_X is False
    assert model.build(params).copy_X is True
    assert model.build(estimator_spec(copy_X=True), overwrite_input=True).copy_X is True  # the settings decide


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"alpha": -1.0}, r"^model.params.alpha: must be >= 0, got -1.0$"),
        ({"l1_ratio": 2.0}, r"^model.params.l1_ratio: must be between 0 and 1, got 2.0$"),
        ({"max_iter": 0}, r"^model.params.max_iter: must be >= 1, got 0$"),
        ({"max_iter": 1.5}, r"^model.params.max_iter: expected an integer, got 1.5$"),
        ({"alpha": "high"}, r"^model.params.alpha: expected a number, got 'high'$"),
        ({"alhpa": 0.1}, r"^model.params.alhpa: not a parameter of ElasticNet \(did you mean 'alpha'\?\); its parameters: alpha, copy_X, "),
        ({"selection": "sideways"}, r"^model.params.selection: must be a str among .*, got 'sideways'$"),
    ],
)
def test_bad_estimator_parameters_are_one_line_naming_the_key(values, message):
    with pytest.raises(ConfigError, match=message):
        estimator_spec(**values)


@pytest.mark.parametrize(
    ("estimator", "message"),
    [
        ("sklearn.linear_model.Nope", r"model.estimator: 'sklearn.linear_model.Nope' is not a class"),
        ("nope.Estimator", r"model.estimator: cannot import 'nope.Estimator' \(No module named 'nope'\)"),
        (
            "sklearn.linear_model.LogisticRegression",
            r"^model.estimator: sklearn.linear_model.LogisticRegression is a classifier, for classification; "
            r"this run's task is regression \(model.task\)$",
        ),
        ("collections.OrderedDict", r"model.estimator: collections.OrderedDict is not a scikit-learn-compatible estimator"),
    ],
)
def test_an_unusable_estimator_is_named(estimator, message):
    with pytest.raises(ConfigError, match=message):
        estimator_spec(estimator)


def test_a_classifier_is_accepted_for_classification_and_a_regressor_refused():
    spec = estimator_spec("sklearn.linear_model.LogisticRegression", task="classification")
    assert (spec.name, spec.task, spec.has_proba) == ("LogisticRegression", CLASSIFICATION, True)
    assert isinstance(model.build(spec), LogisticRegression)
    refused = r"^model.estimator: sklearn.linear_model.ElasticNet is a regressor, for regression; this run's task is classification"
    with pytest.raises(ConfigError, match=refused + r" \(model.task\)$"):
        estimator_spec(task="classification")


def test_metrics_know_their_direction_and_the_default_one_ranks():
    assert [m.short for m in REGRESSION.metrics] == ["rmse", "mae", "r2"]
    assert REGRESSION.default_metric is RMSE and not RMSE.higher_is_better and R2.higher_is_better
    assert RMSE.better(1.0, than=2.0) and R2.better(0.9, than=0.5)
    assert REGRESSION.metric("R2_SCORE") is R2 and REGRESSION.metric(" rmse ") is RMSE
    with pytest.raises(ConfigError, match=r"^evaluation.metric: 'auc' is not a regression metric; choose one of rmse, mae, r2$"):
        REGRESSION.metric("auc")


def test_model_requirements_pick_the_model_packages_pins():
    text = "# comment\nmatplotlib==1.0\nMLflow==9.9.9\nscikit-learn==2.0\nskops==3.0\npandas==4.0\nnumpy==5.0\nscipy==6.0\n"
    assert model.requirements(text) == ["MLflow==9.9.9", "scikit-learn==2.0", "skops==3.0", "pandas==4.0", "numpy==5.0", "scipy==6.0"]
    with pytest.raises(KeyError):
        model.requirements("mlflow==1\n")
    assert model.requirements()[0] == "mlflow==3.17.2"  # the project's requirements.txt
