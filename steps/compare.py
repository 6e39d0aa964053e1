"""compare: a table and plots of one registered model's pipeline runs, a metric against their parameters.

``mlflow run . -e compare`` reads the finished pipeline runs of an experiment (``main``'s parent
runs and a sweep's trials, each with its evaluation) that trained registered model ``-P
model_name`` (default: registry.model_name); runs of other models are left out, and the output
says how many and of which models. It ranks them by ``-P metric``, one of their task's metrics
(default: the metric their gate judged them by, their ``evaluation.metric``); runs of different
tasks, or judged by different metrics without ``-P metric``, are refused, naming them. It prints
the table and logs on its own run: ``compare/runs.csv`` (every run compared, every parameter),
a plot ``plots/<metric>_vs_<parameter>.png`` per number parameter that varies across the runs,
and ``card.html`` (the model, its task and estimator, the best run, the plots, the runs). The
parameters are the runs' ``model.params.<name>`` params: the estimator's constructor arguments.
Metrics ``runs_compared``, ``runs_left_out`` and ``best_<metric>`` and tag
``pipeline.compare.best_run_id`` say what it found.
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

from steps.core.errors import ConfigError, InputError
from steps.core.ranking import (
    ALL_METRICS,
    NAME_WIDTH,
    NOT_PARAMETERS,
    _name,
    _text,
    best_run,
    parameters,
    plot_axes,
    plot_file,
    plots,
    rank,
    task_of,
    varying,
)
from steps.core.tasks import REGRESSION, TASKS, Metric
from steps.mlflow_io.artifacts import LoggedArtifact, log_bytes, run_artifact_uri, sha256_bytes
from steps.mlflow_io.cards import Card, figure_png, log_card, run_url
from steps.mlflow_io.contracts import MAX_TAG_LENGTH, Kind, Tag
from steps.mlflow_io.registry import RegistrySettings
from steps.mlflow_io.step_run import add_settings, run_step, settings, step_parser

logger = logging.getLogger(__name__)

# Kinds compared; runs without the tag are pipeline runs from before it existed. A sweep parent
# repeats its best trial's evaluation, so it would count that trial twice.
COMPARED_KINDS = (Kind.PIPELINE, Kind.TRIAL)
EVALUATE_RUN_TAG = Tag.of_step("evaluate", "run_id")
REGISTER_RUN_TAG = Tag.of_step("register", "run_id")
MODEL_VERSION_TAG = f"{Tag.OUTPUT}model_version"
# What a run trained, as main's parent and a trial log it (orchestration/config.py, steps/sweep.py).
MODEL_NAME_PARAM = "registry.model_name"
TASK_PARAM = "params.model.task"
ESTIMATOR_PARAM = "params.model.estimator"
GATE_METRIC_PARAM = "params.evaluation.metric"
# The compared parameters: the runs' params with this prefix, the estimator's constructor arguments.
MODEL_PARAM = "params.model.params."
# Runs without model.task are from before tasks existed, when every model was a regressor.
LEGACY_TASK = REGRESSION
# How runs without registry.model_name are counted among the left-out ones.
NO_MODEL_NAME = "no model name"

RUNS_FILE = "compare/runs.csv"
# Rows printed (the CSV has them all) and shown in the card.
PRINTED_ROWS = 30
CARD_ROWS = 200
# Run ids per lookup of evaluate/register runs.
LOOKUP_CHUNK = 100
_RUN_ID = re.compile(r"^[0-9A-Za-z_-]+$")


def resolve_metric(text: str) -> Metric:
    """The metric ``-P metric`` names: a short name (rmse, log_loss, ...) or MLflow's full name, any case, of any task."""
    metric = next((m for task in TASKS.values() for m in task.metrics if m.called(text)), None)
    if metric is None:
        choices = "; ".join(f"{', '.join(m.short for m in task.metrics)} ({task.name})" for task in TASKS.values())
        raise InputError(f"-P metric: unknown metric {text!r}; valid: {choices} (or MLflow's names, e.g. {REGRESSION.default_metric.name})")
    return metric


def _runs_of(counts: Mapping[Any, int]) -> str:
    """``a (3 runs), b (1 run)``: each name and its count of runs, the most common first (then by name)."""
    ordered = sorted(counts.items(), key=lambda item: (-item[1], str(item[0])))
    return ", ".join(f"{name} ({count} run{'s' if count != 1 else ''})" for name, count in ordered)


def _counted(values: pd.Series) -> str:
    """:func:`_runs_of` the values of ``values`` (one per run)."""
    return _runs_of(values.value_counts(dropna=False).to_dict())


def choose_metric(frame: pd.DataFrame, wanted: Metric | None, model_name: str) -> Metric:
    """The metric to rank ``frame``'s runs by: ``wanted`` (-P metric), else the one their gate used.

    The runs must share a task (their metrics are not comparable otherwise); without ``wanted``,
    also the gate's metric (any of their task's metrics compares them: choose one).
    """
    whose = f"the runs of model {model_name!r}"
    tasks = frame["task"].dropna().unique()
    if len(tasks) != 1:
        raise InputError(f"{whose} mix tasks: {_counted(frame['task'])}; their metrics cannot be compared")
    if tasks[0] not in TASKS:
        raise InputError(f"{whose} have task {tasks[0]!r}; the pipeline's tasks are {', '.join(TASKS)}")
    task = TASKS[tasks[0]]
    shorts = ", ".join(m.short for m in task.metrics)
    if wanted is not None:
        if wanted not in task.metrics:
            raise InputError(
                f"-P metric: {wanted.short} is a {task_of(wanted).name} metric; {whose} are {task.name}: choose one of {shorts}"
            )
        return wanted
    judged = frame["primary_metric"].dropna().unique()
    if len(judged) != 1:
        raise InputError(
            f"{whose} were judged by different metrics: {_counted(frame['primary_metric'])}; rank them by one with -P metric ({shorts})"
        )
    try:
        return task.metric(str(judged[0]), where=f"evaluation.metric of {whose}")
    except ConfigError as exc:
        raise InputError(str(exc)) from None


@dataclass(frozen=True)
class Scope:
    """What a comparison covers: the experiment, the registered model, and the runs of other models left out."""

    experiment_name: str
    experiment_id: str
    model_name: str
    left_out: Mapping[str, int] = field(default_factory=dict)  # other model name -> its runs

    @property
    def experiment(self) -> str:
        return f"{self.experiment_name} (id {self.experiment_id})"

    @property
    def left_out_runs(self) -> int:
        return sum(self.left_out.values())

    def left_out_names(self) -> str | None:
        """``a (2 runs), b (1 run)``: the other models, the one with the most runs first; None if there are none."""
        return _runs_of(self.left_out) if self.left_out else None

    def left_out_text(self) -> str | None:
        """One line on the runs of other models, if there are any."""
        if not self.left_out:
            return None
        runs = f"{self.left_out_runs} run{'s' if self.left_out_runs != 1 else ''}"
        return f"Left out: {runs} of other models: {self.left_out_names()}; compare them with -P model_name=<name>"


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


def _quoted(text: str) -> str:
    """``text`` as a string in MLflow's search filter."""
    for quote in ("'", '"'):
        if quote not in text:
            return f"{quote}{text}{quote}"
    raise InputError(f"-P model_name: {text!r} has both kinds of quotes; MLflow's search cannot look it up")


def model_filter(model_name: str | None) -> str:
    """The search clause of runs that trained ``model_name`` (None: of runs that name no model)."""
    return f"params.`{MODEL_NAME_PARAM}` " + ("IS NULL" if model_name is None else f"= {_quoted(model_name)}")


def pipeline_runs(experiment_id: str, max_runs: int, where: str = "") -> pd.DataFrame:
    """The newest ``max_runs`` finished pipeline and trial runs of the experiment that have an evaluation (and match ``where``)."""
    # MLflow's filters have no OR, so the kinds are filtered here; sweep parents found among the
    # newest runs are replaced by searching for as many more.
    query = f"tags.`{EVALUATE_RUN_TAG}` LIKE '_%' and attributes.status = 'FINISHED'" + (f" and {where}" if where else "")
    wanted = max_runs
    while True:
        runs = search([experiment_id], query, wanted)
        kept = runs[_column(runs, f"tags.{Tag.KIND}").fillna(Kind.PIPELINE.value).isin(COMPARED_KINDS)]
        if len(kept) >= max_runs or len(runs) < wanted:
            return kept.head(max_runs).reset_index(drop=True)
        wanted += len(runs) - len(kept)


def other_models(experiment_id: str, model_name: str, max_runs: int) -> dict[str, int]:
    """The runs of the experiment that trained another registered model (or name none), by model name.

    Counted as :func:`collect` counts (runs repeating an evaluation once), among the newest
    ``max_runs`` of other models and the newest ``max_runs`` that name no model.
    """
    others = f"params.`{MODEL_NAME_PARAM}` != {_quoted(model_name)}"
    runs = _concat(pipeline_runs(experiment_id, max_runs, where) for where in (others, model_filter(None)))
    runs = runs.drop_duplicates(f"tags.{EVALUATE_RUN_TAG}") if not runs.empty else runs
    names = _column(runs, f"params.{MODEL_NAME_PARAM}").fillna(NO_MODEL_NAME)
    return {str(name): int(count) for name, count in names.value_counts().items()}


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


def collect(experiment_id: str, max_runs: int, model_name: str) -> pd.DataFrame:
    """One row per compared run of ``model_name`` in the experiment (see :func:`build_frame`), newest first."""
    runs = pipeline_runs(experiment_id, max_runs, model_filter(model_name))
    linked = (_column(runs, f"tags.{tag}") for tag in (EVALUATE_RUN_TAG, REGISTER_RUN_TAG))
    frame = build_frame(runs, runs_by_id(experiment_id, pd.concat(linked)))
    # A run whose steps were all reused points at the evaluation of the run that did the work:
    # the same model, evaluated once. Keep that (oldest) run; newest first otherwise.
    unique = frame.drop_duplicates("evaluate_run_id", keep="last")
    logger.info(
        "experiment %s: %d pipeline runs of model %r to compare (%d more repeat an earlier run's evaluation)",
        experiment_id,
        len(unique),
        model_name,
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
    evaluate and register runs the runs' tags name. Every task's metric columns are there: ranking
    by a metric keeps its task's (core/ranking.py). A parameter named like one of the table's own
    columns (a meta-estimator's ``estimator``, an estimator object rather than a value) is left out.
    """
    evaluation = linked.reindex(_column(runs, f"tags.{EVALUATE_RUN_TAG}")).set_axis(runs.index)
    registration = linked.reindex(_column(runs, f"tags.{REGISTER_RUN_TAG}")).set_axis(runs.index)
    task = _column(runs, TASK_PARAM).fillna(LEGACY_TASK.name)
    gate_default = task.map(lambda name: TASKS[name].default_metric.short if name in TASKS else None)
    names = sorted(name.removeprefix(MODEL_PARAM) for name in runs if name.startswith(MODEL_PARAM))
    frame = pd.DataFrame(
        {
            "run_id": _column(runs, "run_id"),
            "run_name": _column(runs, "tags.mlflow.runName"),
            "kind": _column(runs, f"tags.{Tag.KIND}").fillna(Kind.PIPELINE.value),
            "start_time": _column(runs, "start_time"),
            "model_name": _column(runs, f"params.{MODEL_NAME_PARAM}"),
            "task": task,
            "estimator": _column(runs, ESTIMATOR_PARAM),
            "primary_metric": _column(runs, GATE_METRIC_PARAM).combine_first(gate_default),
            **{name: runs[MODEL_PARAM + name] for name in names if name not in NOT_PARAMETERS},
            **{m: _column(runs, f"metrics.{m}").combine_first(_column(evaluation, f"metrics.{m}")) for m in ALL_METRICS},
            "evaluation": _column(evaluation, f"tags.{Tag.PASSED}").combine_first(_column(runs, f"tags.{Tag.PASSED}")).map(_verdict),
            "model_version": _column(registration, f"tags.{MODEL_VERSION_TAG}"),
            "evaluate_run_id": _column(runs, f"tags.{EVALUATE_RUN_TAG}"),
        },
        index=runs.index,
    )
    frame["start_time"] = pd.to_datetime(frame["start_time"], utc=True)
    return frame


# --- the pure core: ranking, text table, plots, card ---


def _class_name(path: Any) -> str | None:
    """``ElasticNet`` for ``sklearn.linear_model.ElasticNet``; None for a run that does not say."""
    return path.rpartition(".")[2] if isinstance(path, str) and path else None


def _own_parameters(row: pd.Series, names: Iterable[str]) -> dict[str, Any]:
    """The parameters ``row`` has (a run of another estimator has none of this one's)."""
    return {name: row[name] for name in names if not (row[name] is None or (isinstance(row[name], float) and math.isnan(row[name])))}


def describe_best(ranked: pd.DataFrame, metric: Metric) -> str:
    """One line: the best run, its metric, its estimator and its parameters."""
    best = best_run(ranked, metric)
    if best is None:
        return f"No run has {metric.label} ({metric.name}): no best run."
    params = ", ".join(f"{name}={_text(value)}" for name, value in _own_parameters(best, parameters(ranked)).items())
    model = " with ".join(part for part in (_class_name(best["estimator"]), params) if part)
    return f"Best by {metric.label}: run {best['run_id']} ({_name(best)}), {metric.label} {_text(best[metric.name])}" + (
        f": {model}" if model else ""
    )


def _headline(ranked: pd.DataFrame, metric: Metric, scope: Scope) -> str:
    task = task_of(metric).name
    runs = f"{len(ranked)} pipeline run{'s' if len(ranked) != 1 else ''}"
    return (
        f"{runs} of model {scope.model_name!r} ({task}) in experiment {scope.experiment}, best first by {metric.label} ({metric.direction})"
    )


def text_table(ranked: pd.DataFrame, metric: Metric, scope: Scope, max_rows: int = PRINTED_ROWS) -> str:
    """The ranked runs as a fixed-width table (at most ``max_rows``): the estimator, the parameters that vary, the task's metrics.

    Then a note of the rows not shown and of the runs of other models left out, and the best run.
    """
    labels = {m.name: m.label for m in task_of(metric).metrics}
    shown_params = varying(ranked)
    headers = {
        "#": None,
        "run id": "run_id",
        "run name": "run_name",
        "kind": "kind",
        "estimator": "estimator",
        **{name: name for name in shown_params},
        **{label: name for name, label in labels.items()},
        "evaluation": "evaluation",
        "version": "model_version",
        "started (UTC)": "start_time",
    }
    numeric = {*(name for name in shown_params if pd.api.types.is_numeric_dtype(ranked[name])), *labels}
    shown = ranked.head(max_rows)

    def cell(row: pd.Series, column: str) -> str:
        if column == "estimator":
            return _class_name(row[column]) or "-"
        return _text(row[column])[: NAME_WIDTH if column == "run_name" else None]

    cells = [
        [str(position) if column is None else cell(row, column) for column in headers.values()]
        for position, (_, row) in enumerate(shown.iterrows(), start=1)
    ]
    widths = [max([len(header), *(len(row[i]) for row in cells)]) for i, header in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if headers[h] in numeric or h == "#" else v.ljust(w) for v, w, h in zip(values, widths, headers, strict=True)
        ).rstrip()

    lines = [_headline(ranked, metric, scope), line(list(headers)), *(line(row) for row in cells)]
    if len(ranked) > len(shown):
        lines.append(f"... {len(ranked) - len(shown)} more runs not shown (all {len(ranked)} are in {RUNS_FILE})")
    left_out = scope.left_out_text()
    if left_out:
        lines.append(left_out)
    lines.append(describe_best(ranked, metric))
    return "\n".join(lines)


def _cell(value: Any) -> Any:
    """A table value for the card: None for a missing one (an empty cell), timestamps as text."""
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d %H:%M UTC")
    return value


def _estimators(ranked: pd.DataFrame) -> str | None:
    """The estimator of the runs: its import path, or each one with its count of runs."""
    paths = ranked["estimator"].dropna()
    if paths.empty:
        return None
    return str(paths.iloc[0]) if paths.nunique() == 1 and len(paths) == len(ranked) else _counted(ranked["estimator"].fillna("unknown"))


def build_card(
    ranked: pd.DataFrame, metric: Metric, images: Mapping[str, bytes], scope: Scope, *, tracking_uri: str, max_rows: int = CARD_ROWS
) -> Card:
    """The compare run's card: the model, the best run, the plots, and the runs linked to their pages."""
    experiment_id = scope.experiment_id
    card = Card(f"Compare: {scope.model_name}", subtitle=_headline(ranked, metric, scope))
    card.heading("Model")
    card.facts(
        {
            "registered model": scope.model_name,
            "task": task_of(metric).name,
            "estimator": _estimators(ranked),
            "ranked by": f"{metric.label} ({metric.direction})",
            "runs compared": len(ranked),
            "runs of other models left out": scope.left_out_names(),
        }
    )
    best = best_run(ranked, metric)
    card.heading("Best run")
    if best is None:
        card.text(describe_best(ranked, metric), note=True)
    else:
        card.link(f"{_name(best)} ({best['run_id']})", run_url(tracking_uri, experiment_id, best["run_id"]))
        facts = {metric.label: best[metric.name], "estimator": best["estimator"], **_own_parameters(best, parameters(ranked))}
        card.facts(
            {key: _cell(value) for key, value in facts.items()}
            | {"evaluation": _cell(best["evaluation"]), "model version": _cell(best["model_version"])}
        )
    card.heading("Plots")
    axes = {plot_file(metric, x): (x, series) for x, series in plot_axes(ranked, numbers_only=True)}
    if not images:
        card.text("No number parameter varies across these runs: nothing to plot.", note=True)
    for file, png in images.items():
        x, series = axes.get(file, ("its parameters", None))
        per = f", one series per {series}" if series else ""
        card.image(png, f"{metric.label} against {x}{per}; the star is the best run ({file})")
    card.heading("Runs")
    shown_params = varying(ranked)
    rows = []
    for position, (_, row) in enumerate(ranked.head(max_rows).iterrows(), start=1):
        rows.append(
            {
                "#": position,
                "run": (_name(row), run_url(tracking_uri, experiment_id, row["run_id"])),
                "kind": row["kind"],
                "estimator": _class_name(row["estimator"]),
                **{name: _cell(row[name]) for name in shown_params},
                **{m.label: _cell(row[m.name]) for m in task_of(metric).metrics},
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


def run(frame: pd.DataFrame, metric: Metric, scope: Scope, *, tracking_uri: str) -> CompareOutputs:
    """Rank the runs of ``frame`` by ``metric`` and build the table, plots and card."""
    ranked = rank(frame, metric)
    figures = plots(ranked, metric, numbers_only=True)
    images = {file: figure_png(figure, dpi=100) for file, figure in figures.items()}
    card = build_card(ranked, metric, images, scope, tracking_uri=tracking_uri)
    table = text_table(ranked, metric, scope)
    return CompareOutputs(ranked=ranked, table=table, best=best_run(ranked, metric), figures=figures, images=images, card=card)


def to_csv(ranked: pd.DataFrame) -> str:
    frame = ranked.copy()
    frame["start_time"] = frame["start_time"].map(lambda t: t.isoformat() if not pd.isna(t) else "")
    return frame.to_csv(index=False)


# --- the command line ---


def build_parser() -> argparse.ArgumentParser:
    parser = step_parser("compare", __doc__, inputs=())
    parser.add_argument("--experiment", type=str, default="", help="experiment name or id; empty: the compare run's own experiment")
    choices = " | ".join(", ".join(m.short for m in task.metrics) for task in TASKS.values())
    parser.add_argument(
        "--metric", type=str, default=None, help=f"rank by one of the runs' task's metrics ({choices}); default: their evaluation.metric"
    )
    add_settings(parser, "compare", model=CompareSettings)
    add_settings(parser, "registry", model=RegistrySettings)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    run_step("compare", build_parser(), _compare, argv)


def no_runs(scope: Scope) -> InputError:
    """Nothing to compare: say which models the experiment's runs trained, if any."""
    where = f"in experiment {scope.experiment_name!r} (id {scope.experiment_id})"
    if not scope.left_out:
        return InputError(f"no finished pipeline runs with an evaluation {where} (run `mlflow run .` first)")
    return InputError(
        f"no finished pipeline runs of model {scope.model_name!r} with an evaluation {where}; "
        f"it has runs of {scope.left_out_names()}: choose one with -P model_name=<name>"
    )


def _compare(args: argparse.Namespace) -> dict[str, LoggedArtifact]:
    mlflow.set_tag(Tag.KIND, Kind.COMPARE)  # first: a failed compare run is not mistaken for a pipeline run
    wanted = resolve_metric(args.metric) if args.metric else None  # an unknown name fails before any run is read
    max_runs = check_max_runs(settings(args, CompareSettings, "compare").max_runs)
    model_name = settings(args, RegistrySettings, "registry").model_name
    experiment = find_experiment(MlflowClient(), args.experiment, mlflow.active_run().info.experiment_id)
    frame = collect(experiment.experiment_id, max_runs, model_name)
    scope = Scope(experiment.name, experiment.experiment_id, model_name, other_models(experiment.experiment_id, model_name, max_runs))
    if frame.empty:
        raise no_runs(scope)
    metric = choose_metric(frame, wanted, model_name)
    out = run(frame, metric, scope, tracking_uri=mlflow.get_tracking_uri())

    csv = to_csv(out.ranked)
    mlflow.log_text(csv, RUNS_FILE)
    for artifact_file, png in out.images.items():
        log_bytes(png, artifact_file)
    log_card(lambda: out.card)
    mlflow.log_metrics({"runs_compared": len(out.ranked), "runs_left_out": scope.left_out_runs})
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
