"""Estimators from outside scikit-learn that learn only 0..k-1 still train on, and predict, any labels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression

from steps import featurize, train
from steps.core import labels
from steps.core.schema import parse_schema
from tests.conftest import estimator_spec


class PositionsOnlyClassifier(ClassifierMixin, BaseEstimator):
    """Like XGBoost's classifier: refuses labels other than 0..k-1."""

    def __init__(self, max_iter: int = 200):
        self.max_iter = max_iter

    def fit(self, features, target):
        target = np.asarray(target)
        if target.dtype.kind not in "iu" or set(np.unique(target)) != set(range(target.max() + 1)):
            raise ValueError(f"Invalid classes inferred from unique values of `y`: {np.unique(target)}")
        self.model_ = LogisticRegression(max_iter=self.max_iter).fit(features, target)
        self.classes_ = self.model_.classes_
        self.feature_importances_ = np.abs(self.model_.coef_).sum(axis=0)
        return self

    def predict(self, features):
        return self.model_.predict(features)

    def predict_proba(self, features):
        return self.model_.predict_proba(features)


def test_scikit_learns_classifiers_are_left_as_they_are_and_others_are_wrapped():
    native = LogisticRegression()
    assert labels.wrap(native) is native
    wrapped = labels.wrap(PositionsOnlyClassifier())
    assert isinstance(wrapped, labels.LabelEncodedClassifier)


def test_the_wrapper_trains_on_positions_and_answers_with_the_labels():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(120, 3))
    target = np.where(features[:, 0] > 0, "benign", "malignant")
    with pytest.raises(ValueError, match="Invalid classes"):
        PositionsOnlyClassifier().fit(features, target)
    fitted = labels.wrap(PositionsOnlyClassifier()).fit(features, target)
    assert list(fitted.classes_) == ["benign", "malignant"]
    assert set(fitted.predict(features)) == {"benign", "malignant"}
    assert (fitted.predict(features) == target).mean() > 0.9
    assert fitted.predict_proba(features).shape == (120, 2)
    assert labels.unwrap(fitted) is fitted.estimator_


def test_train_logs_one_pipeline_that_predicts_the_labels_through_the_wrapper(monkeypatch):
    schema = parse_schema({"target": "y", "columns": {"x1": {}, "x2": {}, "y": {"dtype": "string"}}}, "s.yaml")
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"x1": rng.normal(size=80), "x2": rng.normal(size=80)})
    frame["y"] = np.where(frame["x1"] + frame["x2"] > 0, "yes", "no")
    transformer = featurize.run(frame, schema).transformer
    spec = estimator_spec("tests.unit.test_labels.PositionsOnlyClassifier", task="classification")
    out = train.run(frame, transformer, schema, spec)
    assert isinstance(out.model[-1], labels.LabelEncodedClassifier)
    assert set(out.model.predict(frame[["x1", "x2"]])) == {"yes", "no"}
    assert out.description.weight_kind == "importance"  # the wrapped estimator's own
