"""evaluate: score the candidate (and the current champion) on the test split; decide pass/fail.

Metrics come from MLflow's evaluation API (``mlflow.models.evaluate``; a regressor's RMSE, MAE,
R² or a classifier's log loss, ROC AUC, F1, accuracy, with its confusion matrix and curves), for
the candidate and, when there is one, for the champion on the same, current test split (in a
nested run named after it). The baseline (the train split's mean or class frequencies) is scored
on the same split. The verdict comes from the gate's rules (steps/core/gate.py): not degenerate,
better than the baseline by ``evaluation.baseline_margin``, the data's own thresholds, and better
than the champion. Logs the metrics, plots, ``evaluation/result.json`` (read by register) and
``evaluation/report.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import mlflow
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from mlflow import MlflowClient
from mlflow.models.evaluation import EvaluationResult as MlflowEvaluation

from steps.core import gate, tasks
from steps.core.errors import InputError, first_line
from steps.core.gate import NO_CHAMPION, Check, GateSettings, Scores
from steps.core.schema import PREDICTION_COLUMN, DataSchema
from steps.core.tasks import Metric, TargetSummary, Task
from steps.core.text import format_value
from steps.mlflow_io.artifacts import load_manifest, load_model, log_bytes, log_record, read_split, to_dataset
from steps.mlflow_io.cards import Card, drawing_unit, figure_png, histogram, label_ticks, log_card
from steps.mlflow_io.champions import require_files
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
    VersionTag,
)
from steps.mlflow_io.registry import RegisteredModel, resolve
from steps.mlflow_io.step_run import add_settings, record_outcome, require_inputs, run_step, settings, step_parser

logger = logging.getLogger(__name__)

# Points drawn in a scatter plot at most (a random sample of the test rows beyond that).
PLOTTED_POINTS = 20_000
# shap is not a dependency: without this MLflow warns, wrongly blaming matplotlib too, on every run.
NO_SHAP = {"log_model_explainability": False}
# MLflow's classifier plots shown on the card, by the name of its artifact, with a caption.
CLASSIFIER_PLOTS = {
    "confusion_matrix": "Confusion matrix (test split)",
    "roc_curve_plot": "ROC curve (test split)",
    "precision_recall_curve_plot": "Precision-recall curve (test split)",
}


@dataclass(frozen=True)
class Champion:
    """The current champion, loaded, and its predictions on the same test split.

    ``predictions`` is None when it cannot score the split; ``problem`` then says why.
    """

    model: RegisteredModel
    predictions: np.ndarray | None
    problem: str = ""
    loaded: mlflow.pyfunc.PyFuncModel | None = None


@dataclass(frozen=True)
class Candidate:
    """The model under evaluation: its predictions on the test split, and the model itself (for a classifier's probabilities)."""

    predictions: np.ndarray
    loaded: mlflow.pyfunc.PyFuncModel | None = None
    model_id: str | None = None
    has_proba: bool = False
    estimator: str = "the estimator"
    probabilities: np.ndarray | None = None  # a classifier's, on the test split


@dataclass(frozen=True)
class EvaluateOutputs:
    metrics: dict[str, float]
    passed: bool
    reason: str
    checks: list[Check]
    metric: Metric
    baseline: dict[str, float]
    champion_metrics: dict[str, float] | None = None
    figures: dict[str, Figure] = field(default_factory=dict)
    images: dict[str, bytes] = field(default_factory=dict)  # MLflow's own plots (classifiers), as PNG


def plot_predictions(actual: np.ndarray, predicted: np.ndarray, target: str) -> dict[str, Figure]:
    """Predicted-vs-actual and residual plots (figures built without pyplot's global state).

    Scatter plots show a fixed random sample of at most PLOTTED_POINTS rows (millions of points
    take minutes to draw and show nothing more); the histogram counts every row. Values near the
    largest float are drawn in a unit matplotlib can handle (``cards.drawing_unit``), so their
    residuals stay finite; the ticks still read in the target's own terms.
    """
    unit = drawing_unit(actual, predicted)
    actual, predicted = actual / unit, predicted / unit
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
    label_ticks(ax.xaxis, unit)
    label_ticks(ax.yaxis, unit)

    residuals = actual - predicted
    resid = Figure(figsize=(9, 4), layout="constrained")
    left, right = resid.subplots(1, 2)
    left.scatter(predicted[shown], residuals[shown], s=12, alpha=0.7)
    left.axhline(0, color="grey", linestyle="--")
    left.set(xlabel=f"predicted {target}", ylabel="residual (actual - predicted)", title=f"Residuals vs predicted{sample}")
    label_ticks(left.xaxis, unit)
    label_ticks(left.yaxis, unit)
    histogram(right, residuals, bins=min(30, max(5, len(residuals) // 5)), unit=unit)
    right.set(xlabel="residual", ylabel="count", title="Residual distribution")
    return {Artifact.PREDICTED_VS_ACTUAL: scatter, Artifact.RESIDUALS: resid}


def _evaluate_predictions(actual: np.ndarray, predictions: np.ndarray, target: str, model_id: str | None) -> MlflowEvaluation:
    """A regressor's metrics from its predictions (no second pass over the model)."""
    predicted = np.asarray(predictions, dtype="float64").reshape(-1)
    if not np.isfinite(predicted).all():
        raise InputError(f"the model returned {int((~np.isfinite(predicted)).sum())} non-finite prediction(s) on the test split")
    frame = pd.DataFrame({target: actual, PREDICTION_COLUMN: predicted})
    sha256 = hashlib.sha256(np.ascontiguousarray(actual, dtype="float64").tobytes() + predicted.tobytes()).hexdigest()
    dataset = to_dataset(frame, name="evaluation", source=None, target=target, sha256=sha256, predictions=PREDICTION_COLUMN)
    return mlflow.models.evaluate(data=dataset, model_type=tasks.REGRESSION.model_type, model_id=model_id, evaluator_config=NO_SHAP)


def _evaluate_classifier(
    test: pd.DataFrame, schema: DataSchema, loaded: mlflow.pyfunc.PyFuncModel, labels: list, model_id: str | None
) -> MlflowEvaluation:
    """A classifier's metrics and plots; MLflow asks the model for its class probabilities itself."""
    frame = test[schema.features].assign(**{schema.target: tasks.labels(test[schema.target])})
    sha256 = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()).hexdigest()
    dataset = to_dataset(frame, name="evaluation", source=None, target=schema.target, sha256=sha256)
    config = NO_SHAP | ({"label_list": labels, "pos_label": labels[-1]} if len(labels) == 2 else {"label_list": labels})
    return mlflow.models.evaluate(
        model=loaded, data=dataset, model_type=tasks.CLASSIFICATION.model_type, evaluator_config=config, model_id=model_id
    )


def score(
    task: Task,
    test: pd.DataFrame,
    schema: DataSchema,
    predictions: np.ndarray,
    loaded: mlflow.pyfunc.PyFuncModel | None,
    *,
    labels: list,
    model_id: str | None,
) -> MlflowEvaluation:
    """MLflow's evaluation of one model on the test split, logged to the active run."""
    if len(np.asarray(predictions).reshape(-1)) != len(test):
        raise InputError(f"the model returned {len(np.asarray(predictions).reshape(-1))} predictions for {len(test)} test rows")
    if task.classification:
        return _evaluate_classifier(test, schema, loaded, labels, model_id)
    return _evaluate_predictions(test[schema.target].to_numpy(dtype="float64"), predictions, schema.target, model_id)


def _score_champion(
    task: Task, test: pd.DataFrame, schema: DataSchema, champion: Champion, *, labels: list, metric: Metric
) -> tuple[dict[str, float] | None, str]:
    """The champion's metrics on the same split (a nested run), or None and why it cannot be compared.

    A champion that cannot be scored, or has no value of the gate's metric (e.g. log loss of a
    model without ``predict_proba``), is no reason to block every future model: the other checks
    decide, and the reason says so.
    """
    version = f"champion version {champion.model.version}"
    try:
        with mlflow.start_run(nested=True, run_name=f"{champion.model} (champion, same test split)"):
            scored = score(task, test, schema, champion.predictions, champion.loaded, labels=labels, model_id=None)
    except Exception as exc:
        logger.warning("%s cannot be scored on the test split: %s", champion.model, exc)
        return None, f"{version} cannot score this test split ({type(exc).__name__}: {first_line(exc)})"
    metrics = {name: float(value) for name, value in scored.metrics.items()}
    if math.isnan(metrics.get(metric.name, math.nan)):
        return None, f"{version} has no {metric.label} on this test split, so it cannot be compared by evaluation.metric"
    return metrics, ""


def _images(result: MlflowEvaluation) -> dict[str, bytes]:
    """MLflow's classifier plots as PNG bytes, for the card."""
    images = {}
    for name in CLASSIFIER_PLOTS:
        artifact = result.artifacts.get(name)
        content = getattr(artifact, "content", None)
        if content is not None and hasattr(content, "save"):
            buffer = io.BytesIO()
            content.save(buffer, format="PNG")
            images[name] = buffer.getvalue()
    return images


def run(
    test: pd.DataFrame,
    schema: DataSchema,
    params: GateSettings,
    summary: TargetSummary,
    candidate: Candidate,
    *,
    champion: Champion | None = None,
    champion_note: str = "",
) -> EvaluateOutputs:
    """Score the candidate (and the champion) against the test split's target, and the baseline; judge them.

    Uses MLflow's evaluation API, which logs the candidate's metrics to the active run (linked to
    its model id when given) and the champion's to a nested run. Without a champion, or with one
    that cannot score the split, the other checks decide alone and the reason says why.
    ``champion_note`` says why this champion (or none) was chosen; the reason ends with it.
    """
    task = tasks.TASKS[summary.task]
    metric = params.primary(task, candidate.has_proba, candidate.estimator)
    actual = tasks.labels(test[schema.target]) if task.classification else test[schema.target].to_numpy(dtype="float64")
    labels = sorted(set(summary.classes) | set(tasks.classes(actual))) if task.classification else []
    result = score(task, test, schema, candidate.predictions, candidate.loaded, labels=labels, model_id=candidate.model_id)
    metrics = {name: float(value) for name, value in result.metrics.items()}
    champion_metrics, note = None, NO_CHAMPION
    if champion is not None and champion.predictions is not None:
        champion_metrics, note = _score_champion(task, test, schema, champion, labels=labels, metric=metric)
    elif champion is not None:
        note = f"champion version {champion.model.version} {champion.problem}"
    if champion_note:
        note = champion_note if champion is None else "; ".join(part for part in (champion_note, note) if part)
    baseline = tasks.baseline_metrics(task, summary, actual)
    scores = Scores(metrics, baseline, champion_metrics, f"champion version {champion.model.version}" if champion else "")
    degenerate = gate.degenerate_checks(actual, candidate.predictions, candidate.probabilities)
    checks = gate.judge(params, task, metric, scores, thresholds=schema.thresholds, degenerate=degenerate)
    passed, reason = gate.verdict(checks, note)
    figures = (
        {}
        if task.classification
        else plot_predictions(actual, np.asarray(candidate.predictions, dtype="float64").reshape(-1), schema.target)
    )
    return EvaluateOutputs(metrics, passed, reason, checks, metric, baseline, champion_metrics, figures, _images(result))


def report_markdown(result: EvaluationResult) -> str:
    """evaluation/report.md: the verdict, the metric sets side by side, and each check."""
    champion = result.champion
    task = tasks.TASKS[result.task]
    verdict_text = "**passed**" if result.passed else "**rejected**"
    lines = [f"# Evaluation: {verdict_text}", "", result.reason, ""]
    compared = champion is not None and champion.metrics is not None
    header = "| metric | candidate | baseline |" + (f" champion (version {champion.version}) |" if compared else "")
    lines += [header, "|---|---|---|" + ("---|" if compared else "")]
    for metric in task.metrics:
        mark = " (gate)" if metric.name == result.metric else ""
        row = f"| {metric.label}{mark} | {_cell(result.metrics.get(metric.name))} | {_cell(result.baseline.get(metric.name))} |"
        if compared:
            row += f" {_cell(champion.metrics.get(metric.name))} |"
        lines.append(row)
    lines += ["", "| check | passed | detail |", "|---|---|---|"]
    lines += [f"| {c.name} | {'yes' if c.passed else 'no'} | {c.detail} |" for c in result.checks]
    lines += ["", f"Test split: {result.test_rows} rows from `{result.test_uri}`; model `{result.model_uri}`.", ""]
    return "\n".join(lines)


def _cell(value: float | None) -> str:
    return "-" if value is None else format_value(value)


def card(
    out: EvaluateOutputs, champion: Champion | None, task: Task, test_rows: int, *, model_uri: str, plots: dict[str, bytes] | None = None
) -> Card:
    """The verdict, the candidate's metrics beside the baseline's and the champion's, each check, and the plots."""
    verdict_text = "passed" if out.passed else "rejected"
    result = Card(f"evaluate: {verdict_text}", f"{task.name}: {model_uri} on the test split ({test_rows:,} rows)")
    result.facts(
        {"verdict": verdict_text, "reason": out.reason, "task": task.name, "gate metric": f"{out.metric.label} ({out.metric.direction})"}
    )
    result.heading("Metrics (test split)")
    champion_column = f"champion (version {champion.model.version})" if champion else "champion"
    rows = []
    for metric in task.metrics:
        row: dict[str, object] = {
            "metric": metric.label + (" (gate)" if metric is out.metric else ""),
            "candidate": out.metrics.get(metric.name),
        }
        row["baseline"] = out.baseline.get(metric.name)
        if out.champion_metrics is not None:
            row[champion_column] = out.champion_metrics.get(metric.name)
        rows.append(row)
    result.table(rows)
    result.text(f"The baseline predicts {task.baseline} for every row.", note=True)
    if out.champion_metrics is None:
        result.text((champion.problem or "the champion could not be compared: see the reason") if champion else NO_CHAMPION, note=True)
    else:
        result.text("The champion was scored on the same test split, in a nested run of this one.", note=True)
    checks = [{"check": c.name, "result": "passed" if c.passed else "failed", "detail": c.detail} for c in out.checks]
    result.heading("Checks").table(checks)
    result.heading("Plots")
    for name, png in out.images.items():
        result.image(png, CLASSIFIER_PLOTS[name])
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
    parser.add_argument(
        "--champion_note", type=str, default="", help="why that champion (or none): the driver's words, added to the reason"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    run_step("evaluate", build_parser(), _evaluate, argv)


def load_champion(uri: str, features: pd.DataFrame, task: Task, target: str) -> Champion | None:
    """The champion at ``uri`` with its predictions on ``features``; None when there is none.

    A champion that cannot score the current split (e.g. the schema has changed since it was
    trained) is no reason to block every future model: it is returned without predictions and
    the other checks decide. One that cannot even be loaded, or that learned another task or
    target, is an error: the registry needs fixing (``-e rollback``) or this run another name.
    """
    if not uri:
        return None
    client = MlflowClient()
    model = resolve(client, uri, "champion_uri")
    if model is None:
        logger.info("%s points at no version yet: no champion to compare with", uri)
        return None
    version = client.get_model_version(model.name, model.version)
    require_files(client, version)  # one clear line, not a loader's "No such artifact"
    tags = version.tags
    for tag, ours in ((VersionTag.TASK, task.name), (VersionTag.TARGET, target)):
        theirs = tags.get(tag)
        if theirs is not None and theirs != ours:
            what = "task" if tag == VersionTag.TASK else "target"
            raise InputError(
                f"registered model {model.name!r}: its champion (version {model.version}) has {what} {theirs!r}, this run's is {ours!r}; "
                f"models of different {what}s cannot be compared: register this one under another name (-P model_name=...)"
            )
    loaded = load_model(model.uri, "champion")
    try:
        return Champion(model, np.asarray(loaded.predict(features)), loaded=loaded)
    except Exception as exc:
        logger.warning("%s cannot score the test split: %s", model, exc)
        return Champion(model, None, f"cannot score this test split ({type(exc).__name__}: {first_line(exc)})")


def _candidate(model_uri: str, features: pd.DataFrame, task: Task) -> Candidate:
    loaded = load_model(model_uri)
    raw = loaded.get_raw_model() if hasattr(loaded, "get_raw_model") else None
    name = type(raw.steps[-1][1]).__name__ if hasattr(raw, "steps") else "the model"
    has_proba = hasattr(raw, "predict_proba")
    probabilities = raw.predict_proba(features) if task.classification and has_proba else None
    return Candidate(np.asarray(loaded.predict(features)), loaded, loaded.metadata.model_id, has_proba, name, probabilities)


def _evaluate(args: argparse.Namespace) -> dict[str, LoggedArtifact]:
    params = settings(args, GateSettings, "evaluation")
    model_uri, test_uri, manifest_uri = require_inputs(args, INPUTS).values()
    manifest, schema = load_manifest(manifest_uri)
    task = tasks.TASKS[manifest.target.task]
    mlflow.set_tag(Tag.TASK, task.name)
    test = read_split(test_uri, "test split", schema)
    features = test[schema.features]
    champion = load_champion(args.champion_uri.strip(), features, task, schema.target)
    candidate = _candidate(model_uri, features, task)
    note = args.champion_note.strip()
    out = run(test, schema, params, manifest.target.summary(), candidate, champion=champion, champion_note=note)

    plots = {artifact_file: figure_png(figure, dpi=100) for artifact_file, figure in out.figures.items()}
    for artifact_file, png in plots.items():
        log_bytes(png, artifact_file)
    mlflow.log_metrics({f"baseline_{m.name}": out.baseline[m.name] for m in task.metrics if m.name in out.baseline})
    if out.champion_metrics:
        mlflow.log_metrics(
            {CHAMPION_METRIC_PREFIX + m.name: out.champion_metrics[m.name] for m in task.metrics if m.name in out.champion_metrics}
        )
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
        task=task.name,
        metric=out.metric.name,
        baseline=out.baseline,
        gate=params.model_dump(),
        model_uri=model_uri,
        test_uri=test_uri,
        test_rows=len(test),
        test_digest=manifest.splits["test"].digest if "test" in manifest.splits else None,
    )
    logger.info("%s: %s", "passed" if out.passed else "rejected", out.reason)
    score = f"{out.metric.label} {format_value(out.metrics.get(out.metric.name))} on {len(test):,} test rows"
    record_outcome(f"{score}: {'passed' if out.passed else 'rejected'}")
    mlflow.log_text(report_markdown(result), Artifact.REPORT)
    log_card(lambda: card(out, champion, task, len(test), model_uri=model_uri, plots=plots))
    return {"evaluation_uri": log_record(result, Artifact.EVALUATION)}


if __name__ == "__main__":
    main()
