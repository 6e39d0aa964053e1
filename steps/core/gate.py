"""The gate's rules: which candidate may become the champion, and why, in words.

Plain comparisons of metrics, so they are tested in milliseconds. On the test split, a candidate
must, in this order:

1. not be degenerate: the split's target has more than one value, and the candidate does not
   predict one value for every row;
2. beat the baseline (steps/core/tasks.py: the train split's mean, or its class frequencies) on
   the primary metric (``evaluation.metric``) by ``evaluation.baseline_margin`` of the way from
   the baseline to a perfect score;
3. meet the thresholds the data's schema declares, if any (in that data's units, so they never
   apply to other data);
4. when a champion exists, be better than it on the primary metric, scored on the same split;
   an equal candidate does not replace it, unless ``evaluation.champion_tolerance`` (a fraction
   of the champion's distance to a perfect score) accepts one that is no worse than that.

evaluate applies them to the metrics MLflow's evaluation computed; register re-applies rule 4
to a champion promoted while the candidate was being evaluated, from its recorded metrics.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, field_validator

from steps.core.errors import ConfigError
from steps.core.tasks import AUTO, Metric, Task
from steps.core.text import format_value

NO_CHAMPION = "no champion yet"


class GateSettings(BaseModel):
    """The ``evaluation`` section: the primary metric and the margins a candidate must clear."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)

    metric: str
    baseline_margin: float
    champion_tolerance: float

    @field_validator("baseline_margin", "champion_tolerance")
    @classmethod
    def _fraction(cls, value: float) -> float:
        if not 0 <= value < 1:
            raise ValueError(f"must be between 0 (inclusive) and 1 (exclusive), got {value}")
        return value

    def primary(self, task: Task, has_proba: bool = True, estimator: str = "the estimator") -> Metric:
        """The metric that ranks models and decides the baseline and champion checks.

        ``auto``: the task's default, unless it needs probabilities that ``estimator`` cannot
        predict (then the task's fallback, e.g. accuracy).
        """
        if self.metric.strip().lower() == AUTO:
            default = task.default_metric
            return default if has_proba or not default.needs_proba else task.fallback_metric
        metric = task.metric(self.metric)
        if metric.needs_proba and not has_proba:
            others = ", ".join(m.short for m in task.metrics if not m.needs_proba)
            raise ConfigError(
                f"evaluation.metric: {metric.short} needs predicted probabilities, and {estimator} has no predict_proba; use {others}"
            )
        return metric


@dataclass(frozen=True)
class Check:
    """One rule of the gate and how the candidate fared."""

    name: str
    passed: bool
    detail: str


def _value(metric: Metric, metrics: Mapping[str, float]) -> float:
    value = metrics.get(metric.name)
    return math.nan if value is None else float(value)


def _text(value: float) -> str:
    return format_value(value)


def _item(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def degenerate_checks(actual: Any, predicted: Any, probabilities: Any = None) -> list[Check]:
    """A test split whose target has one value cannot tell models apart; a constant candidate is no model.

    A classifier with ``probabilities`` is constant only when they are the same for every row: one
    that always predicts the majority class can still rank the rows (its log loss and ROC AUC
    then judge it against the baseline).
    """
    checks = []
    distinct = np.unique(np.asarray(actual))
    if len(distinct) < 2:
        only = _item(distinct[0]) if len(distinct) else None
        checks.append(
            Check("test split", False, f"every test row has the same target value ({only!r}): it cannot tell a model from a constant")
        )
    predictions = np.asarray(predicted).reshape(len(np.asarray(predicted)), -1)
    constant_labels = len(predictions) > 1 and len(np.unique(predictions)) == 1
    if probabilities is not None and constant_labels:
        scores = np.asarray(probabilities, dtype="float64")
        constant_labels = bool(np.all(scores.max(axis=0) - scores.min(axis=0) == 0))
    if constant_labels:
        checks.append(Check("constant", False, f"the candidate predicts {_item(predictions.reshape(-1)[0])!r} for every test row"))
    return checks


def baseline_check(metric: Metric, metrics: Mapping[str, float], baseline: Mapping[str, float], margin: float, what: str) -> Check:
    """Better than the baseline (``what`` it predicts) by ``margin`` of the way to a perfect score."""
    value, base = _value(metric, metrics), _value(metric, baseline)
    needed = base + margin * (metric.best - base)
    ok = math.isfinite(value) and metric.better(value, than=base) and (value == needed or metric.better(value, than=needed))
    baseline = f"{_text(base)} (the baseline: {what})"
    if margin == 0:
        return Check("baseline", ok, f"{metric.label} {_text(value)} {'better than' if ok else 'not better than'} {baseline}")
    way = f"{margin * 100:g}% of the way from {baseline} to {metric.best:g}"
    return Check("baseline", ok, f"{metric.label} {_text(value)} {'reaches' if ok else 'misses'} {_text(needed)}, {way}")


def threshold_problems(thresholds: Mapping[str, Mapping[str, float]], task: Task, source: str) -> None:
    """A ConfigError if the schema's thresholds name a metric that is not one of the task's."""
    for name in thresholds:
        task.metric(name, where=f"{source}: thresholds.{name}")


def absolute_checks(thresholds: Mapping[str, Mapping[str, float]], task: Task, metrics: Mapping[str, float]) -> list[Check]:
    """Each bound the data's schema declares (``thresholds: {r2: {min: 0.3}}``), in words."""
    checks = []
    for name, bounds in thresholds.items():
        metric = task.metric(name, where=f"the schema's thresholds.{name}")
        value = _value(metric, metrics)
        for bound, limit in bounds.items():
            ok = math.isfinite(value) and (value >= limit if bound == "min" else value <= limit)
            relation = (">=" if ok else "<") if bound == "min" else ("<=" if ok else ">")
            checks.append(
                Check(f"{bound} {metric.short}", ok, f"{metric.label} {_text(value)} {relation} {bound} {limit:g} (the schema's threshold)")
            )
    return checks


def champion_check(
    metric: Metric, metrics: Mapping[str, float], champion: Mapping[str, float], tolerance: float, champion_name: str
) -> Check:
    """Better than the champion on the same test split; within ``tolerance`` of it counts only when it is > 0."""
    value, best = _value(metric, metrics), _value(metric, champion)
    theirs = f"{champion_name}'s {_text(best)} on the same test split"
    if math.isfinite(value) and metric.better(value, than=best):
        return Check("champion", True, f"{metric.label} {_text(value)} better than {theirs}")
    if tolerance > 0:
        limit = best + tolerance * (best - metric.best)
        ok = math.isfinite(value) and (value == limit or metric.better(value, than=limit))
        within = "within" if ok else "outside"
        return Check(
            "champion", ok, f"{metric.label} {_text(value)} {within} {tolerance * 100:g}% tolerance of {theirs} (limit {_text(limit)})"
        )
    if value == best:
        return Check("champion", False, f"{metric.label} {_text(value)} equals {theirs}: an equal model does not replace the champion")
    return Check("champion", False, f"{metric.label} {_text(value)} worse than {theirs}")


@dataclass(frozen=True)
class Scores:
    """What the gate judges: the candidate's metrics and what it is compared with."""

    metrics: Mapping[str, float]
    baseline: Mapping[str, float]
    champion: Mapping[str, float] | None = None
    champion_name: str = ""


def judge(
    settings: GateSettings,
    task: Task,
    metric: Metric,
    scores: Scores,
    *,
    thresholds: Mapping[str, Mapping[str, float]],
    degenerate: list[Check],
) -> list[Check]:
    """Every rule of the gate, in order (see the module's docstring)."""
    checks = list(degenerate)
    checks.append(baseline_check(metric, scores.metrics, scores.baseline, settings.baseline_margin, task.baseline))
    checks += absolute_checks(thresholds, task, scores.metrics)
    if scores.champion is not None:
        checks.append(champion_check(metric, scores.metrics, scores.champion, settings.champion_tolerance, scores.champion_name))
    return checks


def verdict(checks: list[Check], champion_note: str) -> tuple[bool, str]:
    """Passed when every check passed; the reason lists the failed checks (or all, when passed)."""
    failed = [c.detail for c in checks if not c.passed]
    reason = "; ".join(failed if failed else [c.detail for c in checks])
    if champion_note:
        reason += f"; {champion_note}"
    return not failed, reason
