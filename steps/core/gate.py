"""The rules of the gate, each decided by ``mlflow.validate_evaluation_results``.

Shared by evaluate (which scores the candidate and the champion on the same test split) and
register (which re-checks a candidate against a champion promoted while it was evaluated, using
that champion's recorded metrics on the same split).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import mlflow
from mlflow.models import MetricThreshold
from mlflow.models.evaluation import EvaluationResult
from mlflow.models.evaluation.validation import ModelValidationFailedException

from steps.mlflow_io.registry import R2, REPORTED_METRICS, RMSE
from steps.orchestration.config import EvaluationConfig


@dataclass(frozen=True)
class Check:
    """One rule of the gate and how the candidate fared."""

    name: str
    passed: bool
    detail: str


def result_of(metrics: Mapping[str, float]) -> EvaluationResult:
    """Recorded metrics as the evaluation result MLflow's validation takes."""
    return EvaluationResult(metrics=dict(metrics), artifacts={})


def absolute_thresholds(params: EvaluationConfig) -> dict[str, MetricThreshold]:
    return {
        R2: MetricThreshold(threshold=params.min_r2, greater_is_better=True),
        RMSE: MetricThreshold(threshold=params.max_rmse, greater_is_better=False),
    }


def champion_thresholds(params: EvaluationConfig, champion: EvaluationResult) -> dict[str, MetricThreshold]:
    """RMSE at most (1 + tolerance) x the champion's on the same split.

    MLflow's ``min_relative_change`` can only demand an improvement; a tolerance for a slightly
    worse model is a threshold derived from the champion's metric.
    """
    limit = champion.metrics[RMSE] * (1 + params.champion_tolerance)
    return {RMSE: MetricThreshold(threshold=limit, greater_is_better=False)}


def passes(thresholds: dict[str, MetricThreshold], candidate: EvaluationResult, baseline: EvaluationResult | None = None) -> bool:
    try:
        mlflow.validate_evaluation_results(thresholds, candidate_result=candidate, baseline_result=baseline)
    except ModelValidationFailedException:
        return False
    return True


def absolute_checks(params: EvaluationConfig, candidate: EvaluationResult) -> list[Check]:
    """The minimum R² and maximum RMSE, in words."""
    checks = []
    for metric, threshold in absolute_thresholds(params).items():
        ok = passes({metric: threshold}, candidate)
        relation = (">=" if ok else "<") if threshold.greater_is_better else ("<=" if ok else ">")
        key = "min_r2" if metric == R2 else "max_rmse"
        value = candidate.metrics[metric]
        checks.append(Check(key, ok, f"{REPORTED_METRICS[metric]} {value:.4g} {relation} {key} {threshold.threshold:g}"))
    return checks


def champion_check(params: EvaluationConfig, candidate: EvaluationResult, champion: EvaluationResult, champion_name: str) -> Check:
    """Not worse than the champion (by more than the tolerance) on the same test split."""
    limit = champion_thresholds(params, champion)
    ok = passes(limit, candidate, champion)
    relation = "<=" if ok else ">"
    rmse, champion_rmse = candidate.metrics[RMSE], champion.metrics[RMSE]
    if params.champion_tolerance:
        detail = (
            f"RMSE {rmse:.4g} {relation} {limit[RMSE].threshold:.4g}, {champion_name}'s RMSE "
            f"{champion_rmse:.4g} on the same test split + {params.champion_tolerance * 100:g}% tolerance"
        )
    else:
        detail = f"RMSE {rmse:.4g} {relation} {champion_rmse:.4g}, {champion_name}'s RMSE on the same test split"
    return Check("champion", ok, detail)
