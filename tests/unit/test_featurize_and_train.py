"""The featurize and train cores on small synthetic frames with missing values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from steps import featurize, ingest, train
from steps.core.errors import InputError
from steps.core.schema import DataSchema
from tests.conftest import make_frame


def test_preprocessing_is_fitted_on_the_train_split_only(small_schema):
    split = ingest.run(make_frame(rows=60), ingest.IngestParams(schema=small_schema, test_size=0.5, seed=1), "f.csv")
    out = featurize.run(split.train, small_schema)
    means = np.array([out.transformer.named_transformers_[f"numeric{i}"].named_steps["scale"].mean_[0] for i in range(2)])
    numeric = split.train[["x1", "x2"]]
    np.testing.assert_allclose(means, numeric.fillna(numeric.median()).mean().to_numpy())
    everything = split.data[["x1", "x2"]]
    assert not np.allclose(means, everything.fillna(everything.median()).mean().to_numpy())
    assert out.feature_names == ["x1", "x2", "color_blue", "color_green", "color_red"]


def test_one_imputer_and_scaler_per_column_transform_like_one_for_all_columns(small_schema):
    # Per-column parts keep memory down on large data; the numbers must not change.
    frame = make_frame(rows=80)
    together = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]).fit(frame[["x1", "x2"]])
    per_column = featurize.run(frame, small_schema).transformer
    np.testing.assert_allclose(per_column.transform(frame)[:, :2], together.transform(frame[["x1", "x2"]]))


def test_training_in_chunks_gives_the_model_of_one_piece(small_schema, monkeypatch):
    frame = make_frame(rows=90)
    transformer = featurize.run(frame, small_schema).transformer
    params = train.TrainParams(alpha=0.1, l1_ratio=0.5, max_iter=5000)
    whole = train.run(frame, transformer, small_schema, params)
    monkeypatch.setattr(train, "CHUNK_ROWS", 7)
    chunked = train.run(frame, transformer, small_schema, params)
    assert chunked.coefficients == pytest.approx(whole.coefficients, rel=1e-12, abs=1e-12)
    assert chunked.metrics == pytest.approx(whole.metrics, rel=1e-12)


def test_transform_handles_missing_and_unseen_values(small_schema, small_frame):
    transformer = featurize.run(small_frame, small_schema).transformer
    rows = pd.DataFrame({"x1": [np.nan, 5.0], "x2": [1.0, np.nan], "color": ["purple", np.nan]})
    encoded = transformer.transform(rows)
    assert np.isfinite(encoded).all()
    assert encoded[0, 2:].sum() == 0  # an unseen category encodes as all zeros


def test_schema_without_categorical_columns(small_schema, small_frame):
    numeric_only = DataSchema(target="y", columns=tuple(c for c in small_schema.columns if c.name != "color"))
    out = featurize.run(small_frame.drop(columns=["color"]), numeric_only)
    assert out.feature_names == ["x1", "x2"]


def test_transformer_round_trips_through_skops(tmp_path, small_schema, small_frame):
    transformer = featurize.run(small_frame, small_schema).transformer
    path = tmp_path / "preprocessor.skops"
    featurize.save_transformer(transformer, path)
    loaded = featurize.load_transformer(str(path))
    np.testing.assert_allclose(loaded.transform(small_frame), transformer.transform(small_frame))


def test_loading_something_else_as_a_transformer_is_a_clear_error(tmp_path):
    path = tmp_path / "preprocessor.skops"
    path.write_text("not a skops file")
    with pytest.raises(InputError, match=r"transformer .*preprocessor.skops: not a transformer saved by featurize"):
        featurize.load_transformer(str(path))


def test_train_builds_one_pipeline_that_predicts_from_raw_rows(small_schema):
    frame = make_frame(rows=200)
    transformer = featurize.run(frame, small_schema).transformer
    out = train.run(frame, transformer, small_schema, train.TrainParams(alpha=0.01, l1_ratio=0.5, max_iter=5000))
    assert [name for name, _ in out.model.steps] == ["preprocess", "regressor"]
    assert out.model.named_steps["preprocess"] is transformer  # featurize's fit is kept, not redone
    raw_rows = frame[small_schema.features].head(5)
    assert np.isfinite(out.model.predict(raw_rows)).all()
    assert out.metrics["train_r2"] > 0.9
    assert set(out.coefficients) == {"intercept", "x1", "x2", "color_blue", "color_green", "color_red"}
    assert out.coefficients["x1"] > 0 > out.coefficients["x2"]


def test_stronger_regularisation_shrinks_the_coefficients(small_schema):
    frame = make_frame(rows=100)
    transformer = featurize.run(frame, small_schema).transformer
    weak = train.run(frame, transformer, small_schema, train.TrainParams(alpha=0.01, l1_ratio=1.0, max_iter=5000))
    strong = train.run(frame, transformer, small_schema, train.TrainParams(alpha=1000.0, l1_ratio=1.0, max_iter=5000))
    assert strong.metrics["nonzero_coefficients"] < weak.metrics["nonzero_coefficients"]


def test_model_requirements_pick_the_model_packages_pins():
    text = "# comment\nmatplotlib==1.0\nMLflow==9.9.9\nscikit-learn==2.0\nskops==3.0\npandas==4.0\nnumpy==5.0\nscipy==6.0\n"
    assert train.model_requirements(text) == ["MLflow==9.9.9", "scikit-learn==2.0", "skops==3.0", "pandas==4.0", "numpy==5.0", "scipy==6.0"]
    with pytest.raises(KeyError):
        train.model_requirements("mlflow==1\n")
    assert train.model_requirements()[0] == "mlflow==3.17.2"  # the project's requirements.txt
