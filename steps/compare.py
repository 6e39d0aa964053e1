"""compare: a table and plots of the experiment's pipeline runs, metrics against parameters.

``mlflow run . -e compare`` reads the finished pipeline runs of an experiment (``main``'s parent
runs and a sweep's trials, each with its evaluation), ranks them by ``-P metric`` (rmse, mae or
r2), prints the table and logs on its own run: ``compare/runs.csv`` (every run compared), a plot
``plots/<metric>_vs_<parameter>.png`` per model parameter (alpha and l1_ratio, and any other
that varies across the runs), and ``card.html``. The parameters are the runs' ``model.<name>``
params: the estimator's constructor arguments. Metrics ``runs_compared`` and ``best_<metric>``
and tag ``pipeline.compare.best_run_id`` say what it found.
"""

from __future__ import annotations

import argparse
import logging
import math
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import mlflow
import pandas as pd
from matplotlib.figure import Figure
from mlflow import MlflowClient
from mlflow.entities import Experiment, ViewType
from mlflow.exceptions import MlflowException
from pydantic import BaseModel, ConfigDict

from steps.core.errors import InputError
from steps.core.tasks import REGRESSION, Metric, metric_names

METRICS, PRIMARY, REPORTED_METRICS = REGRESSION.metrics, REGRESSION.default_metric, metric_names()


def metric_named(text: str) -> Metric | None:
    wanted = text.strip().lower()
    return next((m for m in METRICS if wanted in (m.short, m.name)), None)


from steps.core.ranking import (
    NAME_WIDTH,
    _name,
    _text,
    _typed,
    best_run,
    parameters,
    plot_axes,
    plot_file,
    plots,
    rank,
)
from steps.mlflow_io.artifacts import LoggedArtifact, log_bytes, run_artifact_uri, sha256_bytes
from steps.mlflow_io.cards import Card, figure_png, log_card, run_url
from steps.mlflow_io.contracts import MAX_TAG_LENGTH, Kind, Tag
from steps.mlflow_io.step_run import add_settings, run_step, settings, step_parser

logger = logging.getLogger(__name__)

# Kinds compared; runs without the tag are pipeline runs from before it existed. A sweep parent
# repeats its best trial's evaluation, so it would count that trial twice.
COMPARED_KINDS = (Kind.PIPELINE, Kind.TRIAL)
EVALUATE_RUN_TAG = Tag.of_step("evaluate", "run_id")
REGISTER_RUN_TAG = Tag.of_step("register", "run_id")
MODEL_VERSION_TAG = f"{Tag.OUTPUT}model_version"
# The compared parameters are the runs' params with this prefix (main's parent logs the resolved
# configuration, a trial its model settings); the estimator's import path is not one of them.
MODEL_PARAM = "params.model."
ESTIMATOR = "estimator"

RUNS_FILE = "compare/runs.csv"
# Rows printed (the CSV has them all) and shown in the card.
PRINTED_ROWS = 30
CARD_ROWS = 200
# Run ids per lookup of evaluate/register runs.
LOOKUP_CHUNK = 100
_RUN_ID = re.compile(r"^[0-9A-Za-z_-]+$")


def resolve_metric(text: str) -> Metric:
    """The metric ``-P metric`` names: rmse, mae, r2, or MLflow's full name (any case)."""
    metric = metric_named(text)
    if metric is None:
        shorts, names = ", ".join(m.short for m in METRICS), ", ".join(m.name for m in METRICS)
        raise InputError(f"-P metric: unknown metric {text!r}; valid: {shorts} (or MLflow's names {names})")
    return metric


class CompareSettings(BaseModel):
    """The ``compare`` section."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    max_runs: int


def check_max_runs(max_runs: int) -> int:
    if max_runs < 1:
        raise InputError(f"-P max_runs: expected at least 1, got {max_runs}")
    return max_runs


def find_experiment(client: MlflowClient, text: str, current_id: str) -> Experiment:
    """The experiment ``-P experiment`` names (a name, else an id); empty: ``current_id``."""
    wanted = text.strip()
    experiment = client.get_experiment(current_id) if not wanted else client.get_experiment_by_name(wanted)
    if experiment is None and wanted.isdigit():
        try:
            experiment = client.get_experiment(wanted)
        except MlflowException as exc:
            if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise
    if experiment is None:
        raise InputError(f"-P experiment: no experiment named or with id {wanted!r}")
    if experiment.lifecycle_stage == "deleted":
        raise InputError(f"-P experiment: experiment {experiment.name!r} (id {experiment.experiment_id}) is deleted")
    return experiment


# --- collecting the runs (reads the tracking store of this process) ---


def search(experiment_ids: list[str] | None, query: str, max_results: int, view: int = ViewType.ACTIVE_ONLY) -> pd.DataFrame:
    """MLflow's table of the matching runs (``run_id``, ``start_time``, ``metrics.*``, ``params.*``, ``tags.*``), newest first.

    ``experiment_ids`` None: every experiment. search_runs fetches page after page itself.
    """
    return mlflow.search_runs(
        experiment_ids=experiment_ids,
        filter_string=query,
        run_view_type=view,
        max_results=max_results,
        order_by=["attributes.start_time DESC"],
        output_format="pandas",
        search_all_experiments=experiment_ids is None,
    )


def _concat(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    found = [frame for frame in frames if not frame.empty]
    return pd.concat(found, ignore_index=True) if found else pd.DataFrame(columns=["run_id"])


def pipeline_runs(experiment_id: str, max_runs: int) -> pd.DataFrame:
    """The newest ``max_runs`` finished pipeline and trial runs of the experiment that have an evaluation."""
    # MLflow's filters have no OR, so the kinds are filtered here; sweep parents found among the
    # newest runs are replaced by searching for as many more.
    query = f"tags.`{EVALUATE_RUN_TAG}` LIKE '_%' and attributes.status = 'FINISHED'"
    wanted = max_runs
    while True:
        runs = search([experiment_id], query, wanted)
        kept = runs[_column(runs, f"tags.{Tag.KIND}").fillna(Kind.PIPELINE.value).isin(COMPARED_KINDS)]
        if len(kept) >= max_runs or len(runs) < wanted:
            return kept.head(max_runs).reset_index(drop=True)
        wanted += len(runs) - len(kept)


def runs_by_id(experiment_id: str, run_ids: Iterable[Any]) -> pd.DataFrame:
    """MLflow's table of the runs with these ids, indexed by run id: searched in the experiment, then in all."""
    wanted = sorted({run_id for run_id in run_ids if isinstance(run_id, str) and _RUN_ID.match(run_id)})
    found = _lookup([experiment_id], wanted)
    # Normally none: a step runs in its pipeline's experiment. A run that is gone leaves its cells empty.
    missing = sorted(set(wanted) - set(found["run_id"]))
    if missing:
        found = _concat([found, _lookup(None, missing)])
        for run_id in sorted(set(missing) - set(found["run_id"])):
            logger.warning("run %s (named by a pipeline run's tags) does not exist", run_id)
    return found.set_index("run_id")


def _lookup(experiment_ids: list[str] | None, run_ids: Sequence[str]) -> pd.DataFrame:
    """The runs with these ids, deleted or not, in chunks of :data:`LOOKUP_CHUNK`."""
    chunks = (run_ids[start : start + LOOKUP_CHUNK] for start in range(0, len(run_ids), LOOKUP_CHUNK))
    quoted = (", ".join(f"'{run_id}'" for run_id in chunk) for chunk in chunks)
    return _concat(search(experiment_ids, f"attributes.run_id IN ({ids})", LOOKUP_CHUNK, ViewType.ALL) for ids in quoted)


def collect(experiment_id: str, max_runs: int) -> pd.DataFrame:
    """One row per compared run of the experiment (see :data:`COLUMNS`), newest first."""
    runs = pipeline_runs(experiment_id, max_runs)
    linked = (_column(runs, f"tags.{tag}") for tag in (EVALUATE_RUN_TAG, REGISTER_RUN_TAG))
    frame = build_frame(runs, runs_by_id(experiment_id, pd.concat(linked)))
    # A run whose steps were all reused points at the evaluation of the run that did the work:
    # the same model, evaluated once. Keep that (oldest) run; newest first otherwise.
    unique = frame.drop_duplicates("evaluate_run_id", keep="last")
    logger.info(
        "experiment %s: %d pipeline runs to compare (%d more repeat an earlier run's evaluation)",
        experiment_id,
        len(unique),
        len(frame) - len(unique),
    )
    return unique.reset_index(drop=True)


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    """Column ``name`` of one of MLflow's tables; all empty when no run has it."""
    return frame[name] if name in frame else pd.Series(None, index=frame.index, dtype=object)


def _verdict(passed: Any) -> str | None:
    return {"true": "passed", "false": "rejected"}.get(str(passed).lower())


def build_frame(runs: pd.DataFrame, linked: pd.DataFrame) -> pd.DataFrame:
    """The table of ``runs``: each run's own metrics, else those of the evaluate run its tag names.

    The arguments are MLflow's tables (:func:`search`); ``linked``, indexed by run id, has the
    evaluate and register runs the runs' tags name.
    """
    evaluation = linked.reindex(_column(runs, f"tags.{EVALUATE_RUN_TAG}")).set_axis(runs.index)
    registration = linked.reindex(_column(runs, f"tags.{REGISTER_RUN_TAG}")).set_axis(runs.index)
    frame = pd.DataFrame(
        {
            "run_id": _column(runs, "run_id"),
            "run_name": _column(runs, "tags.mlflow.runName"),
            "kind": _column(runs, f"tags.{Tag.KIND}").fillna(Kind.PIPELINE.value),
            "start_time": _column(runs, "start_time"),
            **{name.removeprefix(MODEL_PARAM): runs[name] for name in runs if name.startswith(MODEL_PARAM)},
            **{m: _column(runs, f"metrics.{m}").combine_first(_column(evaluation, f"metrics.{m}")) for m in REPORTED_METRICS},
            "evaluation": _column(evaluation, f"tags.{Tag.PASSED}").combine_first(_column(runs, f"tags.{Tag.PASSED}")).map(_verdict),
            "model_version": _column(registration, f"tags.{MODEL_VERSION_TAG}"),
            "evaluate_run_id": _column(runs, f"tags.{EVALUATE_RUN_TAG}"),
        },
        index=runs.index,
    )
    return _typed(frame.drop(columns=ESTIMATOR, errors="ignore"))


# --- the pure core: ranking, text table, plots, card ---


def describe_best(ranked: pd.DataFrame, metric: Metric) -> str:
    """One line: the best run, its metric and its parameters."""
    best = best_run(ranked, metric)
    if best is None:
        return f"No run has {metric.label} ({metric.name}): no best run."
    params = ", ".join(f"{name}={_text(best[name])}" for name in parameters(ranked))
    return f"Best by {metric.label}: run {best['run_id']} ({_name(best)}), {metric.label} {_text(best[metric.name])} at {params}"


def text_table(ranked: pd.DataFrame, metric: Metric, experiment: str, max_rows: int = PRINTED_ROWS) -> str:
    """The ranked runs as a fixed-width table (at most ``max_rows``), a note, and the best run."""
    headers = {
        "#": None,
        "run id": "run_id",
        "run name": "run_name",
        "kind": "kind",
        **{name: name for name in parameters(ranked)},
        **{label: name for name, label in REPORTED_METRICS.items()},
        "evaluation": "evaluation",
        "version": "model_version",
        "started (UTC)": "start_time",
    }
    numeric = {"#", *(name for name in parameters(ranked) if pd.api.types.is_numeric_dtype(ranked[name])), *REPORTED_METRICS.values()}
    shown = ranked.head(max_rows)
    cells = [
        [
            str(position) if column is None else _text(row[column])[: NAME_WIDTH if column == "run_name" else None]
            for column in headers.values()
        ]
        for position, (_, row) in enumerate(shown.iterrows(), start=1)
    ]
    widths = [max([len(header), *(len(row[i]) for row in cells)]) for i, header in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if h in numeric else v.ljust(w) for v, w, h in zip(values, widths, headers, strict=True)).rstrip()

    lines = [
        f"{len(ranked)} pipeline run{'s' if len(ranked) != 1 else ''} of experiment {experiment}, "
        f"best first by {metric.label} ({metric.direction})",
        line(list(headers)),
        *(line(row) for row in cells),
    ]
    if len(ranked) > len(shown):
        lines.append(f"... {len(ranked) - len(shown)} more runs not shown (all {len(ranked)} are in {RUNS_FILE})")
    lines.append(describe_best(ranked, metric))
    return "\n".join(lines)


def _cell(value: Any) -> Any:
    """A table value for the card: None for a missing one (an empty cell), timestamps as text."""
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d %H:%M UTC")
    return value


def build_card(
    ranked: pd.DataFrame,
    metric: Metric,
    images: Mapping[str, bytes],
    *,
    experiment_name: str,
    experiment_id: str,
    tracking_uri: str,
    max_rows: int = CARD_ROWS,
) -> Card:
    """The compare run's card: the best run, the plots, and the runs linked to their pages."""
    card = Card(
        f"Compare: {experiment_name}",
        subtitle=f"{len(ranked)} finished pipeline runs of experiment {experiment_name} (id {experiment_id}), "
        f"best first by {metric.label} ({metric.direction})",
    )
    best = best_run(ranked, metric)
    card.heading("Best run")
    if best is None:
        card.text(describe_best(ranked, metric), note=True)
    else:
        card.link(f"{_name(best)} ({best['run_id']})", run_url(tracking_uri, experiment_id, best["run_id"]))
        facts = {metric.label: best[metric.name], **{name: best[name] for name in parameters(ranked)}, "evaluation": best["evaluation"]}
        card.facts({key: _cell(value) for key, value in facts.items()} | {"model version": _cell(best["model_version"])})
    card.heading("Plots")
    axes = {plot_file(metric, x): (x, series) for x, series in plot_axes(ranked)}
    for file, png in images.items():
        x, series = axes.get(file, ("its parameters", "parameter"))
        per = f", one series per {series}" if series else ""
        card.image(png, f"{metric.label} against {x}{per}; the star is the best run ({file})")
    card.heading("Runs")
    rows = []
    for position, (_, row) in enumerate(ranked.head(max_rows).iterrows(), start=1):
        rows.append(
            {
                "#": position,
                "run": (_name(row), run_url(tracking_uri, experiment_id, row["run_id"])),
                "kind": row["kind"],
                **{name: _cell(row[name]) for name in parameters(ranked)},
                **{label: _cell(row[name]) for name, label in REPORTED_METRICS.items()},
                "evaluation": _cell(row["evaluation"]),
                "version": _cell(row["model_version"]),
                "started": _cell(row["start_time"]),
            }
        )
    card.table(rows, links="run")
    if len(ranked) > max_rows:
        card.text(f"The first {max_rows} of {len(ranked)} runs; all are in {RUNS_FILE}.", note=True)
    return card


@dataclass(frozen=True)
class CompareOutputs:
    ranked: pd.DataFrame
    table: str
    best: pd.Series | None
    figures: dict[str, Figure] = field(default_factory=dict)
    images: dict[str, bytes] = field(default_factory=dict)  # the figures as PNG, drawn once for artifacts and card
    card: Card | None = None


def run(frame: pd.DataFrame, metric: Metric, *, experiment_name: str, experiment_id: str, tracking_uri: str) -> CompareOutputs:
    """Rank the runs of ``frame`` by ``metric`` and build the table, plots and card."""
    ranked = rank(frame, metric)
    label = f"{experiment_name} (id {experiment_id})"
    figures = plots(ranked, metric)
    images = {file: figure_png(figure, dpi=100) for file, figure in figures.items()}
    card = build_card(ranked, metric, images, experiment_name=experiment_name, experiment_id=experiment_id, tracking_uri=tracking_uri)
    table = text_table(ranked, metric, label)
    return CompareOutputs(ranked=ranked, table=table, best=best_run(ranked, metric), figures=figures, images=images, card=card)


def to_csv(ranked: pd.DataFrame) -> str:
    frame = ranked.copy()
    frame["start_time"] = frame["start_time"].map(lambda t: t.isoformat() if not pd.isna(t) else "")
    return frame.to_csv(index=False)


# --- the command line ---


def build_parser() -> argparse.ArgumentParser:
    parser = step_parser("compare", __doc__, inputs=())
    parser.add_argument("--experiment", type=str, default="", help="experiment name or id; empty: the compare run's own experiment")
    choices = ", ".join(m.short for m in METRICS)
    parser.add_argument("--metric", type=str, default=None, help=f"rank by {choices} (or MLflow's name); default: {PRIMARY.short}")
    add_settings(parser, "compare", model=CompareSettings)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    run_step("compare", build_parser(), _compare, argv)


def _compare(args: argparse.Namespace) -> dict[str, LoggedArtifact]:
    mlflow.set_tag(Tag.KIND, Kind.COMPARE)  # first: a failed compare run is not mistaken for a pipeline run
    metric = resolve_metric(args.metric or PRIMARY.short)
    max_runs = check_max_runs(settings(args, CompareSettings, "compare").max_runs)
    experiment = find_experiment(MlflowClient(), args.experiment, mlflow.active_run().info.experiment_id)
    frame = collect(experiment.experiment_id, max_runs)
    if frame.empty:
        raise InputError(
            f"no finished pipeline runs with an evaluation in experiment {experiment.name!r} (id {experiment.experiment_id}) "
            "(run `mlflow run .` first)"
        )
    out = run(
        frame, metric, experiment_name=experiment.name, experiment_id=experiment.experiment_id, tracking_uri=mlflow.get_tracking_uri()
    )

    csv = to_csv(out.ranked)
    mlflow.log_text(csv, RUNS_FILE)
    for artifact_file, png in out.images.items():
        log_bytes(png, artifact_file)
    log_card(lambda: out.card)
    mlflow.log_metric("runs_compared", len(out.ranked))
    tags = {Tag.COMPARED_EXPERIMENT: experiment.experiment_id, Tag.COMPARED_METRIC: metric.name}
    if out.best is not None:
        mlflow.log_metric(f"best_{metric.short}", float(out.best[metric.name]))
        tags[Tag.BEST_RUN] = out.best["run_id"]
    mlflow.set_tags({key: value[:MAX_TAG_LENGTH] for key, value in tags.items()})
    # The product output: the table on stdout (logging goes to stderr).
    sys.stdout.write(out.table + "\n")
    sys.stdout.flush()
    return {"runs_uri": LoggedArtifact(uri=run_artifact_uri(RUNS_FILE), digest=sha256_bytes(csv.encode()))}


if __name__ == "__main__":
    main()
