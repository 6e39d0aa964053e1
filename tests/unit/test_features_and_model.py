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
from steps.core.conf import defaults, validate
from steps.core.data import split
from steps.core.errors import ConfigError
from steps.core.model import EstimatorSpec, ModelSettings
from steps.core.schema import DataSchema, parse_schema, validate_frame
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
        ("sklearn.linear_model.Nope", r"model.estimator: sklearn.linear_model has no 'Nope'"),
        (
            "sklearn.ensemble.RandomWoodsRegressor",
            r"model.estimator: sklearn.ensemble has no 'RandomWoodsRegressor' \(did you mean 'RandomForestRegressor'\?\)",
        ),
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


# -- which estimator a task trains: model.estimator, model.params and model.defaults ------------

ELASTICNET = "sklearn.linear_model.ElasticNet"
LOGISTIC = "sklearn.linear_model.LogisticRegression"


def model_settings(**values: object) -> ModelSettings:
    """conf/pipeline.yaml's model section with ``values`` replacing some keys, checked."""
    return validate(ModelSettings, "model", defaults("model") | values)


def test_auto_trains_the_tasks_default_with_its_params_and_model_params_on_top():
    settings = model_settings(task="auto", estimator="auto", params={})
    assert settings.resolve(REGRESSION) == EstimatorSpec(ELASTICNET, {"alpha": 0.5, "l1_ratio": 0.5, "max_iter": 5000}, REGRESSION)
    assert settings.resolve(CLASSIFICATION) == EstimatorSpec(LOGISTIC, {"max_iter": 1000}, CLASSIFICATION)
    on_top = model_settings(task="auto", estimator="auto", params={"max_iter": 50}).resolve(REGRESSION)
    assert on_top.params == {"alpha": 0.5, "l1_ratio": 0.5, "max_iter": 50}
    assert model_settings(task="auto", estimator="auto", params={"C": 0.1}).resolve(CLASSIFICATION).params == {"max_iter": 1000, "C": 0.1}


@pytest.mark.parametrize("path", [ELASTICNET, f" {ELASTICNET} "])
def test_naming_the_default_estimator_keeps_the_defaults_params(path):
    spec = model_settings(task="regression", estimator=path, params={"alpha": 0.1}).resolve(REGRESSION)
    assert spec == EstimatorSpec(ELASTICNET, {"alpha": 0.1, "l1_ratio": 0.5, "max_iter": 5000}, REGRESSION)


def test_another_estimator_gets_only_model_params():
    spec = model_settings(task="regression", estimator="sklearn.linear_model.Lasso", params={"alpha": 2.0}).resolve(REGRESSION)
    assert spec == EstimatorSpec("sklearn.linear_model.Lasso", {"alpha": 2.0}, REGRESSION)
    forest = model_settings(task="classification", estimator="sklearn.ensemble.RandomForestClassifier", params={})
    assert forest.resolve(CLASSIFICATION).params == {}  # LogisticRegression's max_iter is not its argument


def test_a_task_left_to_the_data_is_checked_when_the_task_is_known():
    # task: auto cannot tell which default applies, nor whether a classifier fits: resolve() decides.
    settings = model_settings(task="auto", estimator=LOGISTIC, params={})
    assert settings.resolve(CLASSIFICATION).path == LOGISTIC
    with pytest.raises(
        ConfigError, match=rf"^model.estimator: {LOGISTIC} is a classifier, for classification; .* regression \(model.task\)$"
    ):
        settings.resolve(REGRESSION)
    with pytest.raises(ConfigError, match=r"^model.params.alpha: not a parameter of LogisticRegression; its parameters: C, "):
        model_settings(task="auto", estimator="auto", params={"alpha": 0.1}).resolve(CLASSIFICATION)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"estimator": "sklearn"}, r"^model.estimator: 'sklearn' is not a class; give its import path"),
        ({"estimator": "math.pi"}, r"^model.estimator: 'math.pi' is not a class"),
        ({"estimator": "nope.Estimator"}, r"^model.estimator: cannot import 'nope.Estimator' \(No module named 'nope'\)$"),
        ({"estimator": "collections.OrderedDict"}, r"^model.estimator: collections.OrderedDict is not a scikit-learn-compatible estimator"),
        (
            {"estimator": "sklearn.cluster.KMeans"},
            r"^model.estimator: sklearn.cluster.KMeans is neither a regressor nor a classifier; "
            r"this run's task is classification \(model.task\)$",
        ),
        (
            {"estimator": ELASTICNET},
            r"^model.estimator: sklearn.linear_model.ElasticNet is a regressor, for regression; this run's task is classification",
        ),
        ({"params": {"Cee": 1.0}}, r"^model.params.Cee: not a parameter of LogisticRegression; its parameters: C, class_weight, "),
        ({"params": {"C": -1.0}}, r"^model.params.C: must be > 0, got -1.0$"),
        ({"params": {"max_iter": "many"}}, r"^model.params.max_iter: expected an integer, got 'many'$"),
        (
            {"task": "regresion"},
            r"^model.task: expected one of auto, regression, classification, got 'regresion' \(did you mean 'regression'\?\)$",
        ),
        (
            {"defaults": {"regression": {"estimator": ELASTICNET}}},
            r"^model.defaults: expected one entry per task .*; missing classification$",
        ),
    ],
)
def test_every_estimator_problem_is_one_line_naming_its_key(values, message):
    with pytest.raises(ConfigError, match=message) as info:
        model_settings(**({"task": "classification", "estimator": "auto", "params": {}} | values))
    assert "\n" not in str(info.value)


def test_a_bad_default_is_named_by_its_own_key():
    wrong = defaults("model")["defaults"] | {"regression": {"estimator": "sklearn.linear_model.Nope", "params": {}}}
    with pytest.raises(ConfigError, match=r"^model.defaults.regression.estimator: sklearn.linear_model has no 'Nope'"):
        model_settings(task="regression", estimator="auto", params={}, defaults=wrong)
    negative = defaults("model")["defaults"] | {"regression": {"estimator": ELASTICNET, "params": {"alpha": -1.0}}}
    with pytest.raises(ConfigError, match=r"^model.defaults.regression.params.alpha: must be >= 0, got -1.0$"):
        model_settings(task="regression", estimator="auto", params={}, defaults=negative)
    # model.params replaces the default's value: only the value given is checked, and named.
    replaced = model_settings(task="regression", estimator="auto", params={"alpha": 0.2}, defaults=negative)
    assert replaced.resolve(REGRESSION).params["alpha"] == 0.2
    with pytest.raises(ConfigError, match=r"^model.params.alpha: must be >= 0, got -2.0$"):
        model_settings(task="regression", estimator="auto", params={"alpha": -2.0}, defaults=negative)


# -- classification through train.run, and what a fitted classifier says about itself ------------


def class_frame(classes: list[object], rows: int = 120, seed: int = 0) -> pd.DataFrame:
    """Rows of ``classes`` in turn, x2 telling them apart (with noise), x1 and color noise only; some values missing."""
    rng = np.random.default_rng(seed)
    index = np.arange(rows) % len(classes)
    frame = pd.DataFrame(
        {
            "x1": rng.uniform(0, 100, rows),
            "x2": 2.0 * index + rng.normal(0, 0.4, rows),
            "color": rng.choice(["red", "green", "blue"], rows).astype(object),
            "y": pd.Series([classes[i] for i in index], dtype=object),
        }
    )
    frame.loc[1, "x1"] = np.nan
    frame.loc[3, "color"] = np.nan
    return frame


def class_schema(dtype: str, **options: object) -> DataSchema:
    columns = {"x1": {"min": 0, "max": 100}, "x2": {}, "color": {"dtype": "string"}, "y": {"dtype": dtype, **options}}
    return parse_schema({"target": "y", "columns": columns}, source="s.yaml")


def train_classifier(
    classes: list[object], dtype: str, estimator: str = "auto", **params: object
) -> tuple[train.TrainOutputs, pd.DataFrame]:
    schema = class_schema(dtype, categorical=True) if dtype in ("int", "float") else class_schema(dtype)
    data = validate_frame(class_frame(classes), schema, "f.csv")
    transformer = features.fit_preprocessing(data, schema).transformer
    return train.run(data, transformer, schema, estimator_spec(estimator, task="classification", **params)), data


@pytest.mark.parametrize(
    ("classes", "dtype", "kind", "predicted"),
    [
        (["benign", "malignant"], "string", "O", {"benign", "malignant"}),
        (["a", "b", "c"], "string", "O", {"a", "b", "c"}),
        ([0, 1], "int", "i", {0, 1}),
        ([3, 5, 7], "int", "i", {3, 5, 7}),
        ([0.0, 1.0], "float", "i", {0, 1}),  # whole numbers that name classes are int labels
        ([False, True], "bool", "b", {False, True}),
        (["no", "yes"], "bool", "b", {False, True}),  # bool text is read as bools
    ],
)
def test_a_classifier_predicts_the_original_labels_and_their_type(classes, dtype, kind, predicted):
    out, data = train_classifier(classes, dtype)
    assert [name for name, _ in out.model.steps] == ["preprocess", "classifier"]
    predictions = out.model.predict(data[["x1", "x2", "color"]])
    assert predictions.dtype.kind == kind
    assert set(predictions.tolist()) == predicted
    assert all(type(v) is type(next(iter(predicted))) for v in predictions.tolist())  # 1, not 1.0; True, not "True"
    assert list(out.model.classes_) == sorted(predicted)
    assert out.metrics["train_accuracy"] > 0.9
    assert "train_rmse" not in out.metrics and "train_r2" not in out.metrics
    probabilities = out.model.predict_proba(data[["x1", "x2", "color"]].head(4))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)


@pytest.mark.parametrize(
    ("classes", "dtype", "kind"), [(["a", "b", "c"], "string", "O"), ([1, 2], "int", "i"), ([False, True], "bool", "b")]
)
def test_another_classifier_predicts_the_original_labels_too(classes, dtype, kind):
    out, data = train_classifier(classes, dtype, "sklearn.ensemble.RandomForestClassifier", n_estimators=10, random_state=0)
    predictions = out.model.predict(data[["x1", "x2", "color"]])
    assert predictions.dtype.kind == kind and set(predictions.tolist()) == set(classes)
    assert out.model.named_steps["classifier"].n_estimators == 10 and out.metrics["train_accuracy"] > 0.9


def test_train_accuracy_is_that_of_the_train_rows():
    assert model.train_metrics(CLASSIFICATION, np.array(["a", "b", "b", "a"]), np.array(["a", "b", "a", "a"])) == {"train_accuracy": 0.75}
    assert model.train_metrics(REGRESSION, np.array([1.0, 3.0]), np.array([2.0, 2.0])) == {"train_rmse": 1.0, "train_r2": 0.0}


def test_a_binary_logistic_regression_is_described_by_its_coefficients():
    out, _ = train_classifier(["benign", "malignant"], "string")
    described = out.description
    assert (described.estimator, described.weight_kind) == ("LogisticRegression", "coefficient")
    assert list(described.weights) == ["x1", "x2", "color_blue", "color_green", "color_red"]
    assert described.weights["x2"] > 0  # x2 grows towards the positive class, "malignant" (the last sorted)
    assert abs(described.weights["x2"]) == max(abs(w) for w in described.weights.values())
    assert isinstance(described.intercept, float) and described.class_weights == {}
    assert described.facts["non-zero coefficients"] == 5 and out.metrics["nonzero_coefficients"] == 5.0


@pytest.mark.parametrize(("classes", "dtype", "keys"), [(["a", "b", "c"], "string", ["a", "b", "c"]), ([3, 5, 7], "int", ["3", "5", "7"])])
def test_a_multiclass_logistic_regression_has_coefficients_per_class(classes, dtype, keys):
    out, _ = train_classifier(classes, dtype)
    described = out.description
    assert described.weight_kind == "coefficient" and described.weights == {} and described.intercept is None
    assert list(described.class_weights) == keys
    assert all(list(w) == ["x1", "x2", "color_blue", "color_green", "color_red"] for w in described.class_weights.values())
    first, last = described.class_weights[keys[0]], described.class_weights[keys[-1]]
    assert first["x2"] < 0 < last["x2"]  # the first class has the smallest x2, the last the largest
    assert described.facts["classes"] == 3 and described.facts["non-zero coefficients"] == 15


def test_a_forest_classifier_is_described_by_importances_and_neighbours_by_nothing():
    forest, _ = train_classifier(["a", "b", "c"], "string", "sklearn.ensemble.RandomForestClassifier", n_estimators=10, random_state=0)
    assert forest.description.weight_kind == "importance" and forest.description.class_weights == {}
    assert sum(forest.description.weights.values()) == pytest.approx(1.0)
    assert max(forest.description.weights, key=forest.description.weights.get) == "x2"
    assert "nonzero_coefficients" not in forest.metrics
    neighbours, _ = train_classifier([0, 1], "int", "sklearn.neighbors.KNeighborsClassifier", n_neighbors=3)
    described = neighbours.description
    assert (described.estimator, described.weight_kind) == ("KNeighborsClassifier", None)
    assert described.weights == {} and described.class_weights == {}  # nothing invented
    assert described.intercept is None and "nonzero_coefficients" not in neighbours.metrics
