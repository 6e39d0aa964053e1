"""evaluate: score the candidate (and the current champion) on the test split; decide pass/fail.

Metrics come from MLflow's evaluation API (``mlflow.models.evaluate``, regressor: RMSE, MAE, R²
and more), for the candidate and, when there is one, for the champion on the same, current test
split (in a nested run named after it). The verdict comes from the gate's rules
(steps/core/gate.py): absolute thresholds (``evaluation.min_r2``, ``evaluation.max_rmse``) and,
against the champion, an RMSE at most (1 + ``evaluation.champion_tolerance``) times the champion's. Logs the metrics, plots,
``evaluation/result.json`` (read by register) and ``evaluation/report.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import mlflow
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from mlflow import MlflowClient
from mlflow.models.evaluation import EvaluationResult as MlflowEvaluation

from steps.core import gate, model
from steps.core.errors import InputError, first_line
from steps.core.gate import NO_CHAMPION, Check, GateSettings
from steps.core.schema import PREDICTION_COLUMN, DataSchema
from steps.mlflow_io.artifacts import load_manifest, load_model, log_bytes, log_record, read_split, to_dataset
from steps.mlflow_io.cards import Card, figure_png, histogram, log_card
from steps.mlflow_io.contracts import (
    CHAMPION_METRIC_PREFIX,
    MAX_TAG_LENGTH,
    NO_VERSION,
    Artifact,
    ChampionRecord,
    CheckRecord,
    EvaluationResult,
    LoggedArtifact,
    Tag,
)
from steps.mlflow_io.registry import RegisteredModel, resolve
from steps.mlflow_io.step_run import add_settings, require_inputs, run_step, settings, step_parser

logger = logging.getLogger(__name__)

# Points drawn in a scatter plot at most (a random sample of the test rows beyond that).
PLOTTED_POINTS = 20_000


@dataclass(frozen=True)
class Champion:
    """The current champion and its predictions on the same test split.

    ``predictions`` is None when it cannot score the split; ``problem`` then says why.
    """

    model: RegisteredModel
    predictions: np.ndarray | None
    problem: str = ""


@dataclass(frozen=True)
class EvaluateOutputs:
    metrics: dict[str, float]
    passed: bool
    reason: str
    checks: list[Check]
    champion_metrics: dict[str, float] | None = None
    figures: dict[str, Figure] = field(default_factory=dict)


def plot_predictions(actual: np.ndarray, predicted: np.ndarray, target: str) -> dict[str, Figure]:
    """Predicted-vs-actual and residual plots (figures built without pyplot's global state).

    Scatter plots show a fixed random sample of at most PLOTTED_POINTS rows (millions of points
    take minutes to draw and show nothing more); the histogram counts every row.
    """
    low, high = float(min(actual.min(), predicted.min())), float(max(actual.max(), predicted.max()))
    shown = np.arange(len(actual))
    if len(shown) > PLOTTED_POINTS:
        shown = np.sort(np.random.default_rng(0).choice(len(shown), PLOTTED_POINTS, replace=False))
    sample = f" ({len(shown):,} of {len(actual):,} rows)" if len(shown) < len(actual) else ""
    scatter = Figure(figsize=(5, 5), layout="constrained")
    ax = scatter.add_subplot()
    ax.scatter(actual[shown], predicted[shown], s=12, alpha=0.7)
    ax.plot([low, high], [low, high], color="grey", linestyle="--", label="perfect prediction")
    ax.set(xlabel=f"actual {target}", ylabel=f"predicted {target}", title=f"Predicted vs actual (test split){sample}")
    ax.legend(loc="upper left")

    residuals = actual - predicted
    resid = Figure(figsize=(9, 4), layout="constrained")
    left, right = resid.subplots(1, 2)
    left.scatter(predicted[shown], residuals[shown], s=12, alpha=0.7)
    left.axhline(0, color="grey", linestyle="--")
    left.set(xlabel=f"predicted {target}", ylabel="residual (actual - predicted)", title=f"Residuals vs predicted{sample}")
    histogram(right, residuals, bins=min(30, max(5, len(residuals) // 5)))
    right.set(xlabel="residual", ylabel="count", title="Residual distribution")
    return {Artifact.PREDICTED_VS_ACTUAL: scatter, Artifact.RESIDUALS: resid}


def _evaluate_predictions(actual: np.ndarray, predictions: np.ndarray, target: str, model_id: str | None) -> MlflowEvaluation:
    predicted = np.asarray(predictions, dtype="float64").reshape(-1)
    if len(predicted) != len(actual):
        raise InputError(f"the model returned {len(predicted)} predictions for {len(actual)} test rows")
    if not np.isfinite(predicted).all():
        raise InputError(f"the model returned {int((~np.isfinite(predicted)).sum())} non-finite prediction(s) on the test split")
    frame = pd.DataFrame({target: actual, PREDICTION_COLUMN: predicted})
    sha256 = hashlib.sha256(np.ascontiguousarray(actual, dtype="float64").tobytes() + predicted.tobytes()).hexdigest()
    dataset = to_dataset(frame, name="evaluation", source=None, target=target, sha256=sha256, predictions=PREDICTION_COLUMN)
    return mlflow.models.evaluate(data=dataset, model_type=model.TASK, model_id=model_id)


def run(
    test: pd.DataFrame,
    predictions: np.ndarray,
    schema: DataSchema,
    params: GateSettings,
    *,
    model_id: str | None = None,
    champion: Champion | None = None,
) -> EvaluateOutputs:
    """Score ``predictions`` (and the champion's) against the test split's target; judge them.

    Uses MLflow's evaluation API, which logs the candidate's metrics to the active run (linked to
    ``model_id`` when given) and the champion's to a nested run. Without a champion, or with one
    that cannot score the split, only the absolute thresholds apply and the reason says why.
    """
    actual = test[schema.target].to_numpy(dtype="float64")
    result = _evaluate_predictions(actual, predictions, schema.target, model_id)
    champion_result, note = None, NO_CHAMPION
    if champion is not None and champion.predictions is not None:
        with mlflow.start_run(nested=True, run_name=f"{champion.model} (champion, same test split)"):
            champion_result = _evaluate_predictions(actual, champion.predictions, schema.target, None)
        note = ""
    elif champion is not None:
        note = f"champion version {champion.model.version} {champion.problem}: absolute thresholds only"
    champion_metrics = champion_result.metrics if champion_result else None
    checks = gate.judge(params, result.metrics, champion_metrics, f"champion version {champion.model.version}" if champion else "")
    passed, reason = gate.verdict(checks, note)
    return EvaluateOutputs(
        metrics={name: float(value) for name, value in result.metrics.items()},
        passed=passed,
        reason=reason,
        checks=checks,
        champion_metrics={name: float(value) for name, value in champion_result.metrics.items()} if champion_result else None,
        figures=plot_predictions(actual, np.asarray(predictions, dtype="float64").reshape(-1), schema.target),
    )


def report_markdown(result: EvaluationResult) -> str:
    """evaluation/report.md: the verdict, both metric sets side by side, and each check."""
    champion = result.champion
    verdict_text = "**passed**" if result.passed else "**rejected**"
    lines = [f"# Evaluation: {verdict_text}", "", result.reason, ""]
    compared = champion is not None and champion.metrics is not None
    header = "| metric | candidate |" + (f" champion (version {champion.version}) |" if compared else "")
    lines += [header, "|---|---|" + ("---|" if compared else "")]
    for metric in model.METRICS:
        row = f"| {metric.label} | {result.metrics[metric.name]:.4g} |"
        if compared:
            row += f" {champion.metrics[metric.name]:.4g} |"
        lines.append(row)
    lines += ["", "| check | passed | detail |", "|---|---|---|"]
    lines += [f"| {c.name} | {'yes' if c.passed else 'no'} | {c.detail} |" for c in result.checks]
    lines += ["", f"Test split: {result.test_rows} rows from `{result.test_uri}`; model `{result.model_uri}`.", ""]
    return "\n".join(lines)


def card(out: EvaluateOutputs, champion: Champion | None, test_rows: int, model_uri: str, plots: dict[str, bytes] | None = None) -> Card:
    """The verdict, the candidate's metrics beside the champion's, each check, and the plots."""
    verdict_text = "passed" if out.passed else "rejected"
    result = Card(f"evaluate: {verdict_text}", f"{model_uri} on the test split ({test_rows:,} rows)")
    result.facts({"verdict": verdict_text, "reason": out.reason})
    result.heading("Metrics (test split)")
    champion_column = f"champion (version {champion.model.version})" if champion else "champion"
    rows = []
    for metric in model.METRICS:
        row: dict[str, object] = {"metric": metric.label, "candidate": out.metrics.get(metric.name)}
        if out.champion_metrics is not None:
            row[champion_column] = out.champion_metrics.get(metric.name)
        rows.append(row)
    result.table(rows)
    if out.champion_metrics is None:
        result.text(champion.problem if champion and champion.problem else NO_CHAMPION, note=True)
    else:
        result.text("The champion was scored on the same test split, in a nested run of this one.", note=True)
    checks = [{"check": c.name, "result": "passed" if c.passed else "failed", "detail": c.detail} for c in out.checks]
    result.heading("Checks").table(checks)
    result.heading("Plots")
    for artifact_file, figure in out.figures.items():
        # The PNG logged as the artifact, when given: each plot is drawn once.
        if plots and artifact_file in plots:
            result.image(plots[artifact_file], artifact_file)
        else:
            result.figure(figure, artifact_file)
    return result


# Artifact URIs this step reads, produced by upstream steps.
INPUTS = ("model_uri", "test_uri", "manifest_uri")


def build_parser() -> argparse.ArgumentParser:
    parser = step_parser("evaluate", __doc__, INPUTS)
    add_settings(parser, "evaluation", model=GateSettings)
    parser.add_argument(
        "--champion_uri",
        type=str,
        default="",
        help="the champion to compare with: models:/<name>/<version> or models:/<name>@champion; empty: none",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    run_step("evaluate", build_parser(), _evaluate, argv)


def load_champion(uri: str, features: pd.DataFrame) -> Champion | None:
    """The champion at ``uri`` with its predictions on ``features``; None when there is none.

    A champion that cannot score the current split (e.g. the schema has changed since it was
    trained) is no reason to block every future model: it is returned without predictions and
    the candidate is judged on the absolute thresholds alone. One that cannot even be loaded is
    an error: the registry needs fixing (e.g. ``-e rollback``).
    """
    if not uri:
        return None
    model = resolve(MlflowClient(), uri, "champion_uri")
    if model is None:
        logger.info("%s points at no version yet: no champion to compare with", uri)
        return None
    loaded = load_model(model.uri, "champion")
    try:
        return Champion(model, np.asarray(loaded.predict(features)))
    except Exception as exc:
        logger.warning("%s cannot score the test split: %s", model, exc)
        return Champion(model, None, f"cannot score this test split ({type(exc).__name__}: {first_line(exc)})")


def _evaluate(args: argparse.Namespace) -> dict[str, LoggedArtifact]:
    params = settings(args, GateSettings, "evaluation")
    model_uri, test_uri, manifest_uri = require_inputs(args, INPUTS).values()
    manifest, schema = load_manifest(manifest_uri)
    test = read_split(test_uri, "test split", schema)
    features = test[schema.features]
    candidate = load_model(model_uri)
    champion = load_champion(args.champion_uri.strip(), features)
    predictions = np.asarray(candidate.predict(features))
    out = run(test, predictions, schema, params, model_id=candidate.metadata.model_id, champion=champion)

    plots = {artifact_file: figure_png(figure, dpi=100) for artifact_file, figure in out.figures.items()}
    for artifact_file, png in plots.items():
        log_bytes(png, artifact_file)
    if out.champion_metrics:
        mlflow.log_metrics({CHAMPION_METRIC_PREFIX + m.name: out.champion_metrics[m.name] for m in model.METRICS})
    mlflow.set_tags(
        {
            Tag.PASSED: str(out.passed).lower(),
            Tag.REASON: out.reason[:MAX_TAG_LENGTH],
            Tag.COMPARED_WITH: champion.model.version if champion else NO_VERSION,
        }
    )
    result = EvaluationResult(
        passed=out.passed,
        reason=out.reason,
        checks=[CheckRecord(name=c.name, passed=c.passed, detail=c.detail) for c in out.checks],
        metrics=out.metrics,
        champion=None
        if champion is None
        else ChampionRecord(
            model_name=champion.model.name, version=champion.model.version, metrics=out.champion_metrics, problem=champion.problem or None
        ),
        thresholds=params.model_dump(),
        model_uri=model_uri,
        test_uri=test_uri,
        test_rows=len(test),
        test_digest=manifest.splits["test"].digest if "test" in manifest.splits else None,
    )
    logger.info("%s: %s", "passed" if out.passed else "rejected", out.reason)
    mlflow.log_text(report_markdown(result), Artifact.REPORT)
    log_card(lambda: card(out, champion, len(test), model_uri, plots))
    return {"evaluation_uri": log_record(result, Artifact.EVALUATION)}


if __name__ == "__main__":
    main()
