"""The model: the one module to edit to train something else.

It knows four things, and train, evaluate, sweep, compare and the cards ask it instead of
assuming an estimator:

- which estimator to build, from the ``model`` section of conf/pipeline.yaml: ``estimator`` is
  the import path of a scikit-learn-compatible regressor, every other key one of its
  constructor arguments (:class:`ModelSettings`, checked before any step runs);
- how to fit it (:func:`build`, :func:`fit`);
- which metrics judge it, and which one ranks models (:data:`METRICS`, :data:`PRIMARY`);
- how to describe a fitted model for its card (:func:`describe`): coefficients for linear
  models, feature importances where the estimator has them, nothing invented otherwise.
"""

from __future__ import annotations

import importlib
import logging
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, model_validator

from steps.core.conf import did_you_mean, project_path
from steps.core.progress import LARGE_FIT_ROWS, Progress, stage

if TYPE_CHECKING:
    from sklearn.base import BaseEstimator
    from sklearn.pipeline import Pipeline
    from sklearn.utils._param_validation import Interval

# scikit-learn is imported where an estimator is built, checked or scored, not with this module:
# the driver reads the metrics' names from it, and importing scikit-learn costs ~1 s a run.

logger = logging.getLogger(__name__)

# The task MLflow's evaluation scores the model as (mlflow.models.evaluate's model_type).
TASK = "regressor"
# Rows scored at a time on the train split: bounds the extra memory on large training sets.
CHUNK_ROWS = 250_000
# Packages the served model needs, pinned as in requirements.txt.
PACKAGES = ("mlflow", "scikit-learn", "skops", "pandas", "numpy", "scipy")


@dataclass(frozen=True)
class Metric:
    """An evaluation metric: MLflow's name for it, the short name ``-P metric`` takes, its label."""

    name: str
    short: str
    label: str
    higher_is_better: bool

    @property
    def direction(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"

    def better(self, value: float, than: float) -> bool:
        return value > than if self.higher_is_better else value < than


RMSE = Metric("root_mean_squared_error", "rmse", "RMSE", higher_is_better=False)
MAE = Metric("mean_absolute_error", "mae", "MAE", higher_is_better=False)
R2 = Metric("r2_score", "r2", "R²", higher_is_better=True)
# The metrics summaries, cards and compare show, in this order; models are ranked by PRIMARY.
METRICS = (RMSE, MAE, R2)
PRIMARY = RMSE
# The hyperparameters a comparison of runs is usually about (-P alpha and l1_ratio of main, the
# sweep's grid): compare shows them whenever runs have them, any other parameter when it varies.
COMPARED = ("alpha", "l1_ratio")
# MLflow's metric name -> its label, in METRICS order.
REPORTED_METRICS = {m.name: m.label for m in METRICS}


def metric_named(text: str) -> Metric | None:
    """The metric called ``text``: its short name or MLflow's (any case); None if none is."""
    wanted = text.strip().lower()
    return next((m for m in METRICS if wanted in (m.short, m.name)), None)


class ModelSettings(BaseModel):
    """The ``model`` section: the estimator's import path and its constructor arguments."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)

    estimator: str

    @property
    def params(self) -> dict[str, Any]:
        """The constructor arguments (every key of the section but ``estimator``)."""
        return dict(self.model_extra or {})

    @property
    def name(self) -> str:
        """The estimator's class name, e.g. ``ElasticNet``."""
        return self.estimator.rpartition(".")[2]

    @model_validator(mode="after")
    def _check(self) -> ModelSettings:
        problems = parameter_problems(estimator_class(self.estimator), self.params)
        if problems:
            raise ValueError(problems[0])
        return self


def estimator_class(path: str) -> type[BaseEstimator]:
    """The class ``path`` names (``package.module.Class``), checked to be a regressor."""
    module_name, _, class_name = path.strip().rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name) if module_name else None
    except ImportError as exc:
        raise ValueError(f"model.estimator: cannot import {path!r} ({exc})") from None
    except AttributeError:
        cls = None
    if not isinstance(cls, type):
        raise ValueError(f"model.estimator: {path!r} is not a class; give its import path, e.g. sklearn.linear_model.ElasticNet")
    if not (hasattr(cls, "fit") and hasattr(cls, "predict") and hasattr(cls, "get_params")):
        raise ValueError(f"model.estimator: {path} is not a scikit-learn-compatible estimator (no fit, predict and get_params)")
    try:
        cls()
    except TypeError as exc:
        raise ValueError(f"model.estimator: {path} needs arguments the pipeline cannot give it ({exc})") from None
    from sklearn.base import is_regressor  # noqa: PLC0415 - see the note on imports above

    if not is_regressor(cls()):
        raise ValueError(f"model.estimator: {path} is not a regressor; the pipeline trains regression models")
    return cls


def parameter_problems(cls: type[BaseEstimator], params: Mapping[str, Any]) -> list[str]:
    """What is wrong with ``params`` for ``cls``: unknown names, and values its constraints refuse.

    scikit-learn declares each parameter's valid values (``_parameter_constraints``); they are
    said here in the pipeline's words (``must be >= 0, got -1.0``).
    """
    known = cls().get_params(deep=False)
    problems = []
    for name, value in params.items():
        if name not in known:
            hint = did_you_mean(name, known)
            problems.append(f"model.{name}: not a parameter of {cls.__name__}{hint}; its parameters: {', '.join(sorted(known))}")
            continue
        constraints = getattr(cls, "_parameter_constraints", {}).get(name)
        problem = _constraint_problem(constraints, value) if constraints else None
        if problem:
            problems.append(f"model.{name}: {problem}")
    return problems


def _constraint_problem(constraints: list[Any], value: Any) -> str | None:
    """None if ``value`` meets one of scikit-learn's ``constraints``; else what it must be."""
    from sklearn.utils._param_validation import Interval, make_constraint  # noqa: PLC0415 - see the note on imports above

    made = [make_constraint(c) for c in constraints]
    intervals = [c for c in made if isinstance(c, Interval)]
    others = [c for c in made if not isinstance(c, Interval)]
    # Python's True is also the number 1: a number parameter takes a bool only if it says so.
    numbers_only = isinstance(value, bool) and not any(c.is_satisfied_by(value) for c in others)
    if not numbers_only and any(c.is_satisfied_by(value) for c in made):
        return None
    if len(intervals) == 1:
        interval = intervals[0]
        integral = interval.type is numbers.Integral
        if isinstance(value, bool) or not isinstance(value, int if integral else int | float):
            return f"expected {'an integer' if integral else 'a number'}, got {value!r}"
        return f"{_range_text(interval)}, got {value!r}"
    return f"must be {' or '.join(str(c) for c in made if not c.hidden)}, got {value!r}"


def _range_text(interval: Interval) -> str:
    low, high = interval.left, interval.right
    if low is not None and high is not None:
        return f"must be between {low:g} and {high:g}"
    if low is not None:
        return f"must be {'>=' if interval.closed in ('left', 'both') else '>'} {low:g}"
    return f"must be {'<=' if interval.closed in ('right', 'both') else '<'} {high:g}"


def build(settings: ModelSettings, *, overwrite_input: bool = False) -> BaseEstimator:
    """The unfitted estimator ``settings`` describe.

    ``overwrite_input``: the training matrix is a temporary the estimator may modify; estimators
    that can (``copy_X``) then work in place instead of copying it (one copy of the training
    data less in memory), unless the settings say otherwise.
    """
    cls = estimator_class(settings.estimator)
    params = settings.params
    if overwrite_input and "copy_X" in cls().get_params(deep=False) and "copy_X" not in params:
        params["copy_X"] = False
    return cls(**params)


def fit(estimator: BaseEstimator, features: np.ndarray, target: Any) -> BaseEstimator:
    """Fit ``estimator``, saying so on large data (scikit-learn reports nothing while it fits)."""
    name = type(estimator).__name__
    if len(features) >= LARGE_FIT_ROWS:
        logger.info("fitting %s on %s rows x %d features", name, f"{len(features):,}", features.shape[1])
    with stage(f"fitted {name}", log=logger):
        estimator.fit(features, target)
    return estimator


def train_metrics(target: Any, predictions: np.ndarray) -> dict[str, float]:
    """How well the model fits the rows it was trained on."""
    from sklearn.metrics import r2_score, root_mean_squared_error  # noqa: PLC0415 - see the note on imports above

    return {"train_rmse": float(root_mean_squared_error(target, predictions)), "train_r2": float(r2_score(target, predictions))}


@dataclass(frozen=True)
class ModelDescription:
    """What a fitted estimator can say about itself, for its card and ``train/coefficients.json``.

    ``weights`` maps each feature to its coefficient (linear models) or importance (trees);
    empty when the estimator has neither. ``facts`` are a few numbers worth showing.
    """

    estimator: str
    weight_kind: str | None  # "coefficient", "importance" or None
    weights: dict[str, float] = field(default_factory=dict)
    intercept: float | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


def describe(estimator: BaseEstimator, feature_names: list[str]) -> ModelDescription:
    """Coefficients, importances or nothing, as ``estimator`` has them once fitted."""
    facts: dict[str, Any] = {}
    iterations = getattr(estimator, "n_iter_", None)
    if iterations is not None:
        facts["iterations"] = int(np.max(iterations))
    coef = getattr(estimator, "coef_", None)
    if coef is not None and np.ndim(coef) == 1 and len(coef) == len(feature_names):
        weights = dict(zip(feature_names, map(float, coef), strict=True))
        intercept = getattr(estimator, "intercept_", None)
        nonzero = int(np.count_nonzero(coef))
        return ModelDescription(
            type(estimator).__name__,
            "coefficient",
            weights,
            intercept=float(intercept) if np.ndim(intercept) == 0 and intercept is not None else None,
            facts=facts | {"non-zero coefficients": nonzero},
            metrics={"nonzero_coefficients": float(nonzero)},
        )
    importances = getattr(estimator, "feature_importances_", None)
    if importances is not None and len(importances) == len(feature_names):
        weights = dict(zip(feature_names, map(float, importances), strict=True))
        return ModelDescription(type(estimator).__name__, "importance", weights, facts=facts)
    return ModelDescription(type(estimator).__name__, None, facts=facts)


def predict_in_chunks(model: Pipeline, features: pd.DataFrame) -> np.ndarray:
    """``model.predict(features)`` without a full-size transformed copy of ``features``."""
    if len(features) == 0:
        return model.predict(features)
    progress = Progress("scoring the train split", len(features), log=logger)
    chunks = []
    for start in range(0, len(features), CHUNK_ROWS):
        progress.update(start)
        chunks.append(model.predict(features.iloc[start : start + CHUNK_ROWS]))
    progress.finish()
    return np.concatenate(chunks)


def requirements(pinned: str | None = None) -> list[str]:
    """The pins of :data:`PACKAGES` in ``pinned`` (default: the project's requirements.txt)."""
    if pinned is None:
        pinned = project_path("requirements.txt").read_text(encoding="utf-8")
    pins = {}
    for line in pinned.splitlines():
        match = re.match(r"^\s*([A-Za-z0-9_.-]+)\s*==", line)
        if match:
            pins[match.group(1).lower()] = line.strip()
    return [pins[name] for name in PACKAGES]
