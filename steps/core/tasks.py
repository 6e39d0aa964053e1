"""The two tasks a model can learn, their metrics, and the baseline every candidate must beat.

- **regression**: the target is a quantity (a float column, or an int one with many values);
  metrics RMSE, MAE, R²; the baseline predicts the train split's mean.
- **classification**: the target names classes (a string, bool or ``categorical: true``
  column); metrics log loss, ROC AUC, F1, accuracy; the baseline predicts the train split's
  class frequencies (the most frequent class, with the class prior as probabilities).

``model.task: auto`` reads the task from the schema's target (:func:`resolve_task`); an int
target with few distinct values could be either, so ingest refuses to guess
(:func:`check_target`). The metrics carry MLflow's names (``mlflow.models.evaluate`` computes
the candidate's); :func:`baseline_metrics` scores the constant baseline the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from steps.core.conf import did_you_mean
from steps.core.errors import ConfigError, DataError
from steps.core.schema import DataSchema

# A setting that the data or the task decides (model.task, model.estimator, evaluation.metric).
AUTO = "auto"
TASK_CHOICES = (AUTO, "regression", "classification")
# An int target with at most this many distinct values could be classes or a quantity.
AMBIGUOUS_MAX_VALUES = 20


@dataclass(frozen=True)
class Metric:
    """A test metric: MLflow's name for it, the short name ``evaluation.metric`` takes, its label.

    ``best`` is the value of a perfect model (0 for an error, 1 for a score); ``needs_proba``:
    computed from predicted probabilities, so only for estimators with ``predict_proba``.
    """

    name: str
    short: str
    label: str
    higher_is_better: bool
    best: float
    needs_proba: bool = False

    @property
    def direction(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"

    def better(self, value: float, than: float) -> bool:
        return value > than if self.higher_is_better else value < than

    def called(self, text: str) -> bool:
        """Whether ``text`` names this metric: its short name or MLflow's, in any case."""
        return text.strip().lower() in (self.short, self.name)


RMSE = Metric("root_mean_squared_error", "rmse", "RMSE", higher_is_better=False, best=0.0)
MAE = Metric("mean_absolute_error", "mae", "MAE", higher_is_better=False, best=0.0)
R2 = Metric("r2_score", "r2", "R²", higher_is_better=True, best=1.0)
LOG_LOSS = Metric("log_loss", "log_loss", "log loss", higher_is_better=False, best=0.0, needs_proba=True)
ROC_AUC = Metric("roc_auc", "roc_auc", "ROC AUC", higher_is_better=True, best=1.0, needs_proba=True)
F1 = Metric("f1_score", "f1", "F1", higher_is_better=True, best=1.0)
ACCURACY = Metric("accuracy_score", "accuracy", "accuracy", higher_is_better=True, best=1.0)


@dataclass(frozen=True, repr=False)
class Task:
    """What the model learns, how MLflow scores it, and the baseline it must beat."""

    name: str  # "regression" or "classification"
    model_type: str  # mlflow.models.evaluate's model_type
    metrics: tuple[Metric, ...]  # shown in summaries, cards and compare, in this order
    default_metric: Metric  # evaluation.metric: auto
    fallback_metric: Metric  # ... for an estimator without predict_proba
    baseline: str  # what the baseline predicts, in words

    @property
    def classification(self) -> bool:
        return self.name == "classification"

    def __repr__(self) -> str:
        return f"Task({self.name!r})"

    def metric(self, text: str, where: str = "evaluation.metric") -> Metric:
        """The metric called ``text`` (short or MLflow name, any case); a ConfigError naming ``where`` if none is."""
        found = next((m for m in self.metrics if m.called(text)), None)
        if found is None:
            shorts = [m.short for m in self.metrics]
            hint = did_you_mean(text.strip().lower(), shorts)
            raise ConfigError(f"{where}: {text!r} is not a {self.name} metric{hint}; choose one of {', '.join(shorts)}")
        return found


REGRESSION = Task(
    "regression",
    "regressor",
    (RMSE, MAE, R2),
    default_metric=RMSE,
    fallback_metric=RMSE,
    baseline="the train split's mean",
)
CLASSIFICATION = Task(
    "classification",
    "classifier",
    (LOG_LOSS, ROC_AUC, F1, ACCURACY),
    # Log loss against the class prior: a model of pure noise does not beat it (macro F1 against
    # the most frequent class would: that baseline scores 0 on every other class).
    default_metric=LOG_LOSS,
    fallback_metric=ACCURACY,
    baseline="the train split's class frequencies",
)
TASKS = {task.name: task for task in (REGRESSION, CLASSIFICATION)}


def resolve_task(setting: str, schema: DataSchema, where: str = "model.task") -> Task:
    """The task ``setting`` (auto, regression, classification) means for ``schema``'s target.

    ``auto``: classification for a target that names classes (string, bool, ``categorical:
    true``), regression otherwise (an int target is checked against the data by :func:`check_target`).
    """
    choice = setting.strip().lower()
    if choice not in TASK_CHOICES:
        raise ConfigError(f"{where}: expected one of {', '.join(TASK_CHOICES)}, got {setting!r}{did_you_mean(choice, TASK_CHOICES)}")
    spec = schema.target_spec
    if choice == AUTO:
        return CLASSIFICATION if spec.labels else REGRESSION
    if choice == "regression" and not spec.numeric:
        raise ConfigError(f"{where}: regression needs a numeric target; column {spec.name!r} is {spec.dtype} (its values name classes)")
    return TASKS[choice]


def check_target(setting: str, schema: DataSchema, target: Any, source: str) -> None:
    """Refuse a target the task cannot learn from: one value only, or an int column that ``auto`` cannot read."""
    values = np.asarray(target)
    distinct = np.unique(values)
    spec = schema.target_spec
    if len(distinct) < 2:
        only = distinct[0].item() if len(distinct) and isinstance(distinct[0], np.generic) else (distinct[0] if len(distinct) else None)
        raise DataError(f"{source}: column {spec.name!r}: every row has the same target value ({only!r}); a model cannot learn from it")
    if setting.strip().lower() == "auto" and spec.dtype == "int" and not spec.categorical and len(distinct) <= AMBIGUOUS_MAX_VALUES:
        shown = ", ".join(f"{v:g}" for v in distinct[:5]) + (", ..." if len(distinct) > 5 else "")
        raise DataError(
            f"{source}: column {spec.name!r} (int) has {len(distinct)} distinct values ({shown}): classes or a quantity? "
            f"Set -P model.task=classification or -P model.task=regression, or mark the target `categorical: true` in the schema"
        )


def labels(target: Any) -> np.ndarray:
    """A classification target's values as labels: whole numbers as ints (``1``, not ``1.0``), bools as bools."""
    values = np.asarray(target)
    if values.dtype.kind == "f" and np.all(np.mod(values, 1) == 0):
        return values.astype("int64")
    if values.dtype == object and all(isinstance(v, bool | np.bool_) for v in values):
        return values.astype(bool)
    return values


def classes(target: Any) -> list[Any]:
    """The sorted distinct labels (as MLflow's evaluation orders them: the last is the positive class)."""
    return [v.item() if isinstance(v, np.generic) else v for v in np.unique(labels(target))]


@dataclass(frozen=True)
class TargetSummary:
    """What the baseline needs of the train split's target: its mean, or its classes and their counts."""

    task: str
    mean: float | None = None
    classes: tuple[Any, ...] = ()
    counts: tuple[int, ...] = ()

    @property
    def prior(self) -> np.ndarray:
        counts = np.asarray(self.counts, dtype="float64")
        return counts / counts.sum()


def summarize(task: Task, train_target: Any) -> TargetSummary:
    """The train split's target as the baseline sees it (recorded in ingest's manifest)."""
    if not task.classification:
        return TargetSummary(task.name, mean=float(np.mean(np.asarray(train_target, dtype="float64"))))
    values = labels(train_target)
    names = classes(values)
    return TargetSummary(task.name, classes=tuple(names), counts=tuple(int(np.sum(values == name)) for name in names))


def baseline_metrics(task: Task, summary: TargetSummary, test_target: Any) -> dict[str, float]:
    """The task's metrics for the constant baseline of ``summary``, scored on ``test_target``.

    Computed as MLflow's evaluation computes the candidate's (weighted F1 and one-vs-rest ROC AUC
    for more than two classes; for two, the last sorted label is the positive one).
    """
    from sklearn import metrics as sk  # noqa: PLC0415 - scikit-learn loads where a model is scored

    if not task.classification:
        actual = np.asarray(test_target, dtype="float64")
        predicted = np.full(len(actual), summary.mean)
        return {
            RMSE.name: float(sk.root_mean_squared_error(actual, predicted)),
            MAE.name: float(sk.mean_absolute_error(actual, predicted)),
            R2.name: float(sk.r2_score(actual, predicted)) if len(np.unique(actual)) > 1 else math.nan,
        }
    test = list(labels(test_target))
    names = sorted(set(summary.classes) | set(test))
    prior = np.array([summary.prior[summary.classes.index(n)] if n in summary.classes else 0.0 for n in names])
    predicted = [names[int(np.argmax(prior))]] * len(test)
    binary = len(names) == 2
    average, positive = ("binary", names[-1]) if binary else ("weighted", None)
    return {
        LOG_LOSS.name: float(sk.log_loss(test, np.tile(prior, (len(test), 1)), labels=names)),
        # Constant scores rank no row above another: ROC AUC 0.5, whatever the classes.
        ROC_AUC.name: 0.5,
        F1.name: float(sk.f1_score(test, predicted, average=average, pos_label=positive, zero_division=0)),
        ACCURACY.name: float(sk.accuracy_score(test, predicted)),
    }


def metric_names(tasks: Sequence[Task] = (REGRESSION, CLASSIFICATION)) -> dict[str, str]:
    """MLflow's metric name -> its label, for every metric of ``tasks`` (for tables of runs)."""
    return {m.name: m.label for task in tasks for m in task.metrics}
