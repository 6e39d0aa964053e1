"""evaluate: score the model on the held-out test split and decide pass/fail against thresholds.

Metrics come from MLflow's evaluation API (``mlflow.models.evaluate``, regressor: RMSE, MAE, R²
and more); the verdict from ``mlflow.validate_evaluation_results`` with the thresholds in
conf/pipeline.yaml. Logs the metrics, plots (predicted vs actual, residuals) and
``evaluation/result.json``, which register reads.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from mlflow.models import MetricThreshold
from mlflow.models.evaluation.validation import ModelValidationFailedException

from steps.artifacts import LoggedArtifact, load_manifest, log_json, read_split
from steps.cli import MAX_TAG_LENGTH, require_inputs, run_step, step_parser
from steps.config import EvaluationConfig
from steps.errors import InputError, first_line
from steps.schema import DataSchema

logger = logging.getLogger(__name__)

PREDICTION_COLUMN = "prediction"
# Metrics every evaluation reports, by MLflow's names.
REPORTED_METRICS = ("root_mean_squared_error", "mean_absolute_error", "r2_score")


@dataclass(frozen=True)
class EvaluateOutputs:
    metrics: dict[str, float]
    passed: bool
    reason: str
    figures: dict[str, Figure] = field(default_factory=dict)


def thresholds(params: EvaluationConfig) -> dict[str, MetricThreshold]:
    return {
        "r2_score": MetricThreshold(threshold=params.min_r2, greater_is_better=True),
        "root_mean_squared_error": MetricThreshold(threshold=params.max_rmse, greater_is_better=False),
    }


def plot_predictions(actual: np.ndarray, predicted: np.ndarray, target: str) -> dict[str, Figure]:
    """Predicted-vs-actual and residual plots (figures built without pyplot's global state)."""
    low, high = float(min(actual.min(), predicted.min())), float(max(actual.max(), predicted.max()))
    scatter = Figure(figsize=(5, 5), layout="constrained")
    ax = scatter.add_subplot()
    ax.scatter(actual, predicted, s=12, alpha=0.7)
    ax.plot([low, high], [low, high], color="grey", linestyle="--", label="perfect prediction")
    ax.set(xlabel=f"actual {target}", ylabel=f"predicted {target}", title="Predicted vs actual (test split)")
    ax.legend(loc="upper left")

    residuals = actual - predicted
    resid = Figure(figsize=(9, 4), layout="constrained")
    left, right = resid.subplots(1, 2)
    left.scatter(predicted, residuals, s=12, alpha=0.7)
    left.axhline(0, color="grey", linestyle="--")
    left.set(xlabel=f"predicted {target}", ylabel="residual (actual - predicted)", title="Residuals vs predicted")
    right.hist(residuals, bins=min(30, max(5, len(residuals) // 5)))
    right.set(xlabel="residual", ylabel="count", title="Residual distribution")
    return {"plots/predicted_vs_actual.png": scatter, "plots/residuals.png": resid}


def run(
    test: pd.DataFrame, predictions: np.ndarray, schema: DataSchema, params: EvaluationConfig, model_id: str | None = None
) -> EvaluateOutputs:
    """Score ``predictions`` against the test split's target and judge them.

    Uses MLflow's evaluation API, which logs the metrics to the active run (and links them to
    ``model_id`` when given).
    """
    actual = test[schema.target].to_numpy(dtype="float64")
    predicted = np.asarray(predictions, dtype="float64").reshape(-1)
    if len(predicted) != len(actual):
        raise InputError(f"the model returned {len(predicted)} predictions for {len(actual)} test rows")
    if not np.isfinite(predicted).all():
        raise InputError(f"the model returned {int((~np.isfinite(predicted)).sum())} non-finite prediction(s) on the test split")
    frame = pd.DataFrame({schema.target: actual, PREDICTION_COLUMN: predicted})
    result = mlflow.models.evaluate(
        data=frame, targets=schema.target, predictions=PREDICTION_COLUMN, model_type="regressor", model_id=model_id
    )
    try:
        mlflow.validate_evaluation_results(thresholds(params), candidate_result=result)
        passed = True
        reason = f"r2_score >= {params.min_r2} and root_mean_squared_error <= {params.max_rmse}"
    except ModelValidationFailedException as exc:
        passed = False
        reason = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    metrics = {name: float(value) for name, value in result.metrics.items()}
    return EvaluateOutputs(metrics=metrics, passed=passed, reason=reason, figures=plot_predictions(actual, predicted, schema.target))


# Artifact URIs this step reads, produced by upstream steps.
INPUTS = ("model_uri", "test_uri", "manifest_uri")


def build_parser() -> argparse.ArgumentParser:
    parser = step_parser("evaluate", __doc__, INPUTS)
    parser.add_argument("--min_r2", type=float, required=True, help="pass only if R² >= this")
    parser.add_argument("--max_rmse", type=float, required=True, help="pass only if RMSE <= this")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    run_step("evaluate", build_parser(), _evaluate, argv)


def _evaluate(args: argparse.Namespace) -> dict[str, LoggedArtifact]:
    params = EvaluationConfig(min_r2=args.min_r2, max_rmse=args.max_rmse)
    model_uri, test_uri, manifest_uri = require_inputs(args, INPUTS).values()
    _, schema = load_manifest(manifest_uri)
    test = read_split(test_uri, "test split", schema)
    try:
        model = mlflow.pyfunc.load_model(model_uri)
    except Exception as exc:
        raise InputError(f"model {model_uri}: cannot load ({type(exc).__name__}: {first_line(exc)})") from None
    predictions = model.predict(test[schema.features])
    out = run(test, np.asarray(predictions), schema, params, model_id=model.metadata.model_id)

    for artifact_file, figure in out.figures.items():
        mlflow.log_figure(figure, artifact_file)
    mlflow.set_tags({"pipeline.evaluation.passed": str(out.passed).lower(), "pipeline.evaluation.reason": out.reason[:MAX_TAG_LENGTH]})
    result: dict[str, Any] = {
        "passed": out.passed,
        "reason": out.reason,
        "metrics": {name: out.metrics[name] for name in REPORTED_METRICS} | out.metrics,
        "thresholds": {"min_r2": params.min_r2, "max_rmse": params.max_rmse},
        "model_uri": model_uri,
        "test_uri": test_uri,
        "test_rows": len(test),
    }
    logger.info("%s: %s", "passed" if out.passed else "did not pass", out.reason)
    return {"evaluation_uri": log_json(result, "evaluation/result.json")}


if __name__ == "__main__":
    main()
