"""Class labels for estimators that only learn the integers 0..k-1 (XGBoost's, for one).

scikit-learn's classifiers learn any labels ("benign", True, 3) and predict them back.
Estimators from other libraries may not, so train wraps them (:func:`wrap`) in
:class:`LabelEncodedClassifier`, which trains the estimator on the labels' positions and turns its
predictions back into the labels: the logged model, served or not, answers with the labels. The
wrapper is itself a scikit-learn estimator, saved with the model by skops.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.metaestimators import available_if

# Estimators from these packages learn any labels themselves.
NATIVE_LABEL_PACKAGES = ("sklearn",)


def _inner_has(name: str):
    return lambda self: hasattr(self.estimator_ if hasattr(self, "estimator_") else self.estimator, name)


class LabelEncodedClassifier(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """``estimator`` trained on label positions 0..k-1; predictions and ``classes_`` in the original labels."""

    def __init__(self, estimator: Any):
        self.estimator = estimator

    def fit(self, features: Any, target: Any, **fit_params: Any) -> LabelEncodedClassifier:
        self.encoder_ = LabelEncoder().fit(np.asarray(target))
        self.classes_ = self.encoder_.classes_
        self.estimator_ = clone(self.estimator).fit(features, self.encoder_.transform(np.asarray(target)), **fit_params)
        return self

    def predict(self, features: Any) -> np.ndarray:
        positions = np.asarray(self.estimator_.predict(features)).reshape(-1).astype("int64")
        return self.encoder_.inverse_transform(positions)

    @available_if(_inner_has("predict_proba"))
    def predict_proba(self, features: Any) -> np.ndarray:
        return self.estimator_.predict_proba(features)

    @property
    def feature_importances_(self) -> np.ndarray:
        return self.estimator_.feature_importances_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.estimator_type = "classifier"
        return tags


def needs_encoding(estimator: Any) -> bool:
    """True for a classifier from outside scikit-learn (it may learn only 0..k-1)."""
    return type(estimator).__module__.split(".")[0] not in NATIVE_LABEL_PACKAGES


def wrap(estimator: Any) -> Any:
    """``estimator`` as it is, or wrapped so that it learns and predicts any labels."""
    return LabelEncodedClassifier(estimator) if needs_encoding(estimator) else estimator


def unwrap(estimator: Any) -> Any:
    """The estimator inside the wrapper (what the card describes)."""
    return getattr(estimator, "estimator_", estimator) if isinstance(estimator, LabelEncodedClassifier) else estimator
