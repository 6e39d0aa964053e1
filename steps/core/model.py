"""The model: the one module to edit to train something else.

It knows four things, and train, evaluate, sweep, compare and the cards ask it instead of
assuming an estimator:

- which estimator to build, from the ``model`` section of conf/pipeline.yaml (:class:`ModelSettings`):
  ``task``, ``estimator`` (the import path of any scikit-learn-compatible class, or ``auto``
  for the task's default in ``defaults``) and ``params``, its constructor arguments;
  :meth:`ModelSettings.resolve` turns them into an :class:`EstimatorSpec` for the task, checked
  before any step runs;
- how to fit it (:func:`build`, :func:`fit`);
- which metrics judge it (the task's, steps/core/tasks.py);
- how to describe a fitted model for its card (:func:`describe`): coefficients for linear
  models, feature importances where the estimator has them, nothing invented otherwise.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from steps.core.conf import did_you_mean, project_path
from steps.core.errors import ConfigError
from steps.core.progress import LARGE_FIT_ROWS, Progress, stage
from steps.core.tasks import AUTO, CLASSIFICATION, REGRESSION, TASK_CHOICES, TASKS, Task

if TYPE_CHECKING:
    from sklearn.base import BaseEstimator
    from sklearn.pipeline import Pipeline
    from sklearn.utils._param_validation import Interval

# scikit-learn is imported where an estimator is built, checked or scored, not with this module:
# a step that only reads the settings (register, predict) does not pay its ~1 s import.

logger = logging.getLogger(__name__)

# Rows scored at a time on the train split: bounds the extra memory on large training sets.
CHUNK_ROWS = 250_000
# Packages the served model needs, pinned as in requirements.txt.
PACKAGES = ("mlflow", "scikit-learn", "skops", "pandas", "numpy", "scipy")


class EstimatorChoice(BaseModel):
    """One entry of ``model.defaults``: a task's default estimator and its arguments."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    estimator: str
    params: dict[str, Any] = {}


class ModelSettings(BaseModel):
    """The ``model`` section: the task, the estimator's import path and its constructor arguments."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    task: str
    estimator: str
    params: dict[str, Any]
    defaults: dict[str, EstimatorChoice]

    @field_validator("task")
    @classmethod
    def _task(cls, value: str) -> str:
        if value not in TASK_CHOICES:
            raise ValueError(f"expected one of {', '.join(TASK_CHOICES)}, got {value!r}{did_you_mean(value, TASK_CHOICES)}")
        return value

    @field_validator("defaults")
    @classmethod
    def _defaults(cls, value: dict[str, EstimatorChoice]) -> dict[str, EstimatorChoice]:
        missing = [name for name in TASKS if name not in value]
        unknown = [name for name in value if name not in TASKS]
        if missing or unknown:
            wrong = f"missing {', '.join(missing)}" if missing else f"unknown {', '.join(unknown)}"
            raise ValueError(f"expected one entry per task ({', '.join(TASKS)}); {wrong}")
        return value

    @model_validator(mode="after")
    def _check(self) -> ModelSettings:
        # The task may depend on the data; what can be checked without it is checked here.
        if self.task != AUTO:
            self.resolve(TASKS[self.task])
        elif self.estimator != AUTO:
            estimator_class(self.estimator)
        return self

    def resolve(self, task: Task) -> EstimatorSpec:
        """The estimator to train for ``task``, its arguments checked; a ConfigError line naming the key if not.

        ``estimator: auto`` takes the task's default from ``defaults``; the default's arguments
        apply to that estimator only, with ``params`` on top.
        """
        default = self.defaults[task.name]
        path = (default.estimator if self.estimator == AUTO else self.estimator).strip()
        where = "model.estimator" if self.estimator != AUTO else f"model.defaults.{task.name}.estimator"
        inherited = default.params if path == default.estimator.strip() else {}
        try:
            cls = estimator_class(path, task)
        except ValueError as exc:
            raise ConfigError(str(exc).replace("model.estimator", where, 1)) from None
        # Each problem named by the key that holds the value: model.params, or the default's own.
        unchanged = {name: value for name, value in inherited.items() if name not in self.params}
        problems = parameter_problems(cls, self.params) + [
            problem.replace("model.params.", f"model.defaults.{task.name}.params.", 1) for problem in parameter_problems(cls, unchanged)
        ]
        if problems:
            raise ConfigError(problems[0])
        return EstimatorSpec(path, inherited | self.params, task)


@dataclass(frozen=True)
class EstimatorSpec:
    """The estimator a run trains: its class's import path, its arguments and its task."""

    path: str
    params: dict[str, Any]
    task: Task

    @property
    def name(self) -> str:
        """The class name, e.g. ``ElasticNet``."""
        return self.path.rpartition(".")[2]

    @property
    def has_proba(self) -> bool:
        """Whether the built estimator can predict class probabilities (``predict_proba``)."""
        return hasattr(estimator_class(self.path)(**self.params), "predict_proba")


def estimator_class(path: str, task: Task | None = None) -> type[BaseEstimator]:
    """The class ``path`` names (``package.module.Class``), checked to be an estimator (of ``task``, if given)."""
    module_name, _, class_name = path.strip().rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name) if module_name else None
    except ImportError as exc:
        raise ValueError(f"model.estimator: cannot import {path!r} ({exc})") from None
    except AttributeError:
        names = [name for name in dir(importlib.import_module(module_name)) if not name.startswith("_")]
        raise ValueError(f"model.estimator: {module_name} has no {class_name!r}{did_you_mean(class_name, names)}") from None
    if not isinstance(cls, type):
        raise ValueError(f"model.estimator: {path!r} is not a class; give its import path, e.g. sklearn.ensemble.RandomForestClassifier")
    if not (hasattr(cls, "fit") and hasattr(cls, "predict") and hasattr(cls, "get_params")):
        raise ValueError(f"model.estimator: {path} is not a scikit-learn-compatible estimator (no fit, predict and get_params)")
    try:
        instance = cls()
    except TypeError as exc:
        raise ValueError(f"model.estimator: {path} needs arguments the pipeline cannot give it ({exc})") from None
    if task is not None and not _is_estimator_of(instance, task):
        other = next(t for t in (REGRESSION, CLASSIFICATION) if t is not task)
        kind = "classifier" if _is_estimator_of(instance, CLASSIFICATION) else "regressor" if _is_estimator_of(instance, REGRESSION) else ""
        what = f"a {kind}, for {other.name}" if kind else "neither a regressor nor a classifier"
        raise ValueError(f"model.estimator: {path} is {what}; this run's task is {task.name} (model.task)")
    return cls


def _is_estimator_of(instance: Any, task: Task) -> bool:
    from sklearn.base import is_classifier, is_regressor  # noqa: PLC0415 - see the note on imports above

    return is_classifier(instance) if task.classification else is_regressor(instance)


def parameter_problems(cls: type[BaseEstimator], params: Mapping[str, Any]) -> list[str]:
    """What is wrong with ``params`` for ``cls``: unknown names, and values its constraints refuse.

    scikit-learn declares each parameter's valid values (``_parameter_constraints``); they are
    said here in the pipeline's words (``must be >= 0, got -1.0``).
    """
    known = cls().get_params(deep=False)
    # Estimators whose constructor takes **kwargs (LightGBM's, XGBoost's) pass unknown names on
    # to their library, which checks them itself.
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(cls.__init__).parameters.values())
    problems = []
    for name, value in params.items():
        if name not in known and open_ended:
            continue
        if name not in known:
            hint = did_you_mean(name, known)
            problems.append(f"model.params.{name}: not a parameter of {cls.__name__}{hint}; its parameters: {', '.join(sorted(known))}")
            continue
        constraints = getattr(cls, "_parameter_constraints", {}).get(name)
        problem = _constraint_problem(constraints, value) if constraints else None
        if problem:
            problems.append(f"model.params.{name}: {problem}")
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


def build(spec: EstimatorSpec, *, overwrite_input: bool = False) -> BaseEstimator:
    """The unfitted estimator ``spec`` describes.

    ``overwrite_input``: the training matrix is a temporary the estimator may modify; estimators
    that can (``copy_X``) then work in place instead of copying it (one copy of the training
    data less in memory), unless the settings say otherwise.
    """
    cls = estimator_class(spec.path)
    params = dict(spec.params)
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


def train_metrics(task: Task, target: Any, predictions: np.ndarray) -> dict[str, float]:
    """How well the model fits the rows it was trained on (``train_`` + a short metric name)."""
    from sklearn import metrics  # noqa: PLC0415 - see the note on imports above

    if task.classification:
        return {"train_accuracy": float(metrics.accuracy_score(np.asarray(target), np.asarray(predictions)))}
    return {
        "train_rmse": float(metrics.root_mean_squared_error(target, predictions)),
        "train_r2": float(metrics.r2_score(target, predictions)),
    }


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
    # A multiclass linear model's coefficients: class -> feature -> coefficient (``weights`` empty).
    class_weights: dict[str, dict[str, float]] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


def describe(estimator: BaseEstimator, feature_names: list[str]) -> ModelDescription:
    """Coefficients, importances or nothing, as ``estimator`` has them once fitted."""
    facts: dict[str, Any] = {}
    iterations = getattr(estimator, "n_iter_", None)
    if iterations is not None:
        facts["iterations"] = int(np.max(iterations))
    coef = getattr(estimator, "coef_", None)
    if coef is not None and np.ndim(coef) == 2 and len(coef) == 1:
        coef = coef[0]  # a binary classifier's: one row, for the positive class
    intercept = getattr(estimator, "intercept_", None)
    if intercept is not None and np.ndim(intercept) == 1 and len(intercept) == 1:
        intercept = intercept[0]
    if coef is not None and np.ndim(coef) == 1 and len(coef) == len(feature_names):
        weights = dict(zip(feature_names, map(float, coef), strict=True))
        nonzero = int(np.count_nonzero(coef))
        return ModelDescription(
            type(estimator).__name__,
            "coefficient",
            weights,
            intercept=float(intercept) if intercept is not None and np.ndim(intercept) == 0 else None,
            facts=facts | {"non-zero coefficients": nonzero},
            metrics={"nonzero_coefficients": float(nonzero)},
        )
    classes = getattr(estimator, "classes_", None)
    if coef is not None and np.ndim(coef) == 2 and classes is not None and coef.shape == (len(classes), len(feature_names)):
        # One row of coefficients per class (multinomial or one-vs-rest): each class's own column.
        per_class = {str(label): dict(zip(feature_names, map(float, row), strict=True)) for label, row in zip(classes, coef, strict=True)}
        nonzero = int(np.count_nonzero(coef))
        return ModelDescription(
            type(estimator).__name__,
            "coefficient",
            class_weights=per_class,
            facts=facts | {"classes": len(classes), "non-zero coefficients": nonzero},
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


def skops_types(fitted: Pipeline) -> list[str]:
    """The types skops must be told to trust to load ``fitted``: the preprocessing's, and those of
    the estimator the configuration chose (e.g. a LightGBM booster); nothing else is loaded."""
    import skops.io  # noqa: PLC0415 - see the note on imports above

    from steps.core.features import SKOPS_TRUSTED_TYPES  # noqa: PLC0415 - features imports scikit-learn

    return sorted(set(SKOPS_TRUSTED_TYPES) | set(skops.io.get_untrusted_types(data=skops.io.dumps(fitted))))


def estimator_requirements(spec: EstimatorSpec) -> list[str]:
    """The pin of the package the estimator comes from, when it is not one of :data:`PACKAGES` (e.g. ``lightgbm==4.6.0``)."""
    from importlib import metadata  # noqa: PLC0415 - only train pins requirements

    top = spec.path.split(".")[0]
    names = metadata.packages_distributions().get(top, [])
    return [f"{name}=={metadata.version(name)}" for name in names if name.lower() not in PACKAGES]


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
