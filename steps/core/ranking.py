"""Runs as a table: typed, ranked by a metric, and plotted against their parameters (no MLflow).

A table has one row per run: the run's own columns (:data:`RUN_COLUMNS`: its id and name, what
it was, the registered model, task and estimator), its model parameters (any estimator's
constructor arguments, one column each, in the table's order), the metrics of its task (MLflow's
names) and what became of it (:data:`RESULT_COLUMNS`). ``-e compare`` builds it from the
tracking store; a sweep from its trials. Both rank and plot it with these functions, by a metric
that says the task: its task's metrics are the table's metric columns.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from steps.core.tasks import TASKS, Metric, Task, metric_names
from steps.core.text import format_value

# MLflow's metric name -> its label, for the metrics of every task (a table has its own task's).
ALL_METRICS = metric_names()
# A table's columns: the run's, its parameters (any others), its task's metrics, its results.
# ``primary_metric`` is the short name of the metric its gate judged it by (``evaluation.metric``).
RUN_COLUMNS = ("run_id", "run_name", "kind", "start_time", "model_name", "task", "estimator", "primary_metric")
RESULT_COLUMNS = ("evaluation", "model_version", "evaluate_run_id")
NOT_PARAMETERS = frozenset((*RUN_COLUMNS, *ALL_METRICS, *RESULT_COLUMNS))
# A parameter is plotted on a log scale when its values span more than this factor.
LOG_SCALE_SPAN = 10.0
# Run names are cut to this many characters in text.
NAME_WIDTH = 32


def task_of(metric: Metric) -> Task:
    """The task whose metric ``metric`` is (each metric belongs to one)."""
    return next(task for task in TASKS.values() if metric in task.metrics)


def metric_columns(metric: Metric) -> list[str]:
    """The metric columns of a table ranked by ``metric``: its task's metrics, in the task's order."""
    return [m.name for m in task_of(metric).metrics]


def columns(frame: pd.DataFrame, metric: Metric) -> list[str]:
    """Every column of ``frame`` typed for ``metric``: the run's, the parameters, the metrics, the results."""
    return [*RUN_COLUMNS, *parameters(frame), *metric_columns(metric), *RESULT_COLUMNS]


def parameters(frame: pd.DataFrame) -> list[str]:
    """The parameter columns of a table: every column that is not one of the fixed ones, in the table's order."""
    return [str(column) for column in frame.columns if column not in NOT_PARAMETERS]


def varying(frame: pd.DataFrame) -> list[str]:
    """The parameters whose values differ between the runs (a run without one differs from a run with it)."""
    return [name for name in parameters(frame) if frame[name].nunique(dropna=False) > 1]


def is_number(value: Any) -> bool:
    """A number (not a bool), or text that reads as one (MLflow's params are text)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, numbers.Real):
        return True
    try:
        float(str(value))
    except ValueError:
        return False
    return str(value).strip().lower() not in ("nan", "inf", "-inf", "infinity", "-infinity")


def _missing(value: Any) -> bool:
    return value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value))


def _typed(frame: pd.DataFrame, metric: Metric) -> pd.DataFrame:
    """``frame`` with the columns of :func:`columns` (missing ones empty), in order, numbers as floats.

    The metrics are numbers (a value that is not becomes empty). A parameter is a number column
    when each of its values is one (``"0.1"`` as MLflow logs it), else a text column (``"gini"``,
    ``"None"``, ``"True"``): its values are then categories, written as text.
    """
    frame = frame.copy()
    metrics = metric_columns(metric)
    for column in (*RUN_COLUMNS, *metrics, *RESULT_COLUMNS):
        if column not in frame:
            frame[column] = pd.NaT if column == "start_time" else math.nan if column in metrics else None
    for column in metrics:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    for column in parameters(frame):
        values = frame[column].astype(object)
        if all(_missing(v) or is_number(v) for v in values):
            frame[column] = pd.to_numeric(values, errors="coerce").astype("float64")
        else:
            frame[column] = values.map(lambda v: None if _missing(v) else str(v)).astype(object)
    frame["start_time"] = pd.to_datetime(frame["start_time"], utc=True)
    return frame[columns(frame, metric)]


def rank(frame: pd.DataFrame, metric: Metric) -> pd.DataFrame:
    """``frame`` best first by ``metric`` (runs without it last), newest first among equals (else in table order)."""
    frame = _typed(frame, metric)
    ordered = frame.sort_values(
        [metric.name, "start_time"], ascending=[not metric.higher_is_better, False], na_position="last", kind="stable"
    )
    return ordered.reset_index(drop=True)


def best_run(ranked: pd.DataFrame, metric: Metric) -> pd.Series | None:
    """The first row of a ranked frame, if any run has ``metric``."""
    if ranked.empty or pd.isna(ranked.iloc[0][metric.name]):
        return None
    return ranked.iloc[0]


def _text(value: Any) -> str:
    if value is None or value == "" or _missing(value):
        return "-"
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d %H:%M")
    return format_value(value)


def _name(row: pd.Series) -> str:
    """The run's name, else the start of its id (a missing text cell is NaN, not "")."""
    name, run_id = row.get("run_name"), row.get("run_id")
    if isinstance(name, str) and name:
        return name
    return run_id[:8] if isinstance(run_id, str) else "?"


def wants_log_scale(values: Iterable[float]) -> bool:
    """Log scale for values that are all positive and span more than :data:`LOG_SCALE_SPAN`."""
    finite = [v for v in values if math.isfinite(v)]
    return bool(finite) and min(finite) > 0 and max(finite) / min(finite) > LOG_SCALE_SPAN


def numeric(ranked: pd.DataFrame, name: str) -> bool:
    """Whether parameter ``name`` of a typed table is a number column (else its values are categories)."""
    return pd.api.types.is_numeric_dtype(ranked[name])


def _known(values: pd.Series) -> pd.Series:
    """Which values can be drawn: finite numbers, or any text."""
    return np.isfinite(values) if pd.api.types.is_numeric_dtype(values) else values.notna()


def metric_plot(ranked: pd.DataFrame, metric: Metric, x: str, series: str | None) -> Figure:
    """``metric`` against parameter ``x``, one series per value of parameter ``series``, the best run starred.

    A number parameter is a numeric axis (log scale when its values span a wide range); a text
    one (``criterion``: gini, entropy) is an axis of categories, in sorted order.
    """
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    ax.set(xlabel=x, ylabel=f"{metric.label} ({metric.direction})", title=f"{metric.label} vs {x}")
    data = ranked[_known(ranked[x]) & _known(ranked[metric.name])]
    if data.empty:
        ax.text(0.5, 0.5, f"no run has both {x} and {metric.label}", ha="center", va="center", transform=ax.transAxes)
        return fig
    # A text parameter's categories are the positions 0, 1, ... in sorted order, labelled with their values.
    categories = None if numeric(ranked, x) else sorted(data[x].unique(), key=_category_order)
    position = {value: i for i, value in enumerate(categories or ())}
    data = data.assign(_x=data[x] if categories is None else data[x].map(position))
    groups = list(data.groupby(series, dropna=False, sort=True)) if series else [("", data)]
    colors = [f"C{i}" for i in range(len(groups))] if len(groups) <= 10 else list(_many_colors(len(groups)))
    for (value, group), color in zip(groups, colors, strict=True):
        label = f"{series} = {_text(value)}" if series and not pd.isna(value) else f"{series} unknown" if series else "runs"
        # Every run a marker; the line joins the mean at each x (repeated runs share an x).
        means = group.groupby("_x")[metric.name].mean().sort_index()
        ax.plot(means.index, means.to_numpy(), color=color, linewidth=1.2, alpha=0.8)
        ax.scatter(group["_x"], group[metric.name], color=color, s=28, label=label, zorder=3)
    best = best_run(ranked, metric)
    if best is not None and _known(ranked[x]).iloc[0]:  # the best run is the first
        best_x = best[x] if categories is None else position[best[x]]
        ax.scatter(
            [best_x], [best[metric.name]], marker="*", s=260, color="gold", edgecolors="black", zorder=4, label=f"best: {_name(best)}"
        )
    if categories is not None:
        ax.set_xticks(range(len(categories)), labels=categories)
        ax.set_xlim(-0.5, len(categories) - 0.5)
    elif wants_log_scale(data[x]):
        ax.set_xscale("log")
    ax.grid(True, alpha=0.3)
    many = len(groups) > 8
    ax.legend(fontsize="small", loc="center left" if many else "best", bbox_to_anchor=(1.0, 0.5) if many else None)
    return fig


def _category_order(value: str) -> tuple[int, float, str]:
    """Text values that read as numbers first, by number (2 before 10), then the others by name."""
    return (0, float(value), "") if is_number(value) else (1, 0.0, value)


def _many_colors(count: int) -> Iterable[Any]:
    from matplotlib import colormaps  # noqa: PLC0415 - only for plots with many series

    cmap = colormaps["viridis"]
    return (cmap(i / max(1, count - 1)) for i in range(count))


def plot_axes(ranked: pd.DataFrame, always: Sequence[str] = (), *, numbers_only: bool = False) -> list[tuple[str, str | None]]:
    """(x, series) of each plot: the parameters in ``always`` that some run has, then each other one that varies.

    ``numbers_only``: of the others, only number parameters. The series are the values of the
    first other parameter that varies, else of the first other one in ``always``.
    """
    shown = [name for name in always if name in ranked and _known(ranked[name]).any()]
    changing = varying(ranked)
    others = [name for name in changing if name not in shown and (numeric(ranked, name) or not numbers_only)]
    return [(x, next((s for s in (*changing, *shown) if s != x), None)) for x in (*shown, *others)]


def plot_file(metric: Metric, x: str) -> str:
    return f"plots/{metric.short}_vs_{re.sub(r'[^0-9A-Za-z_.-]+', '_', x)}.png"


def plots(ranked: pd.DataFrame, metric: Metric, always: Sequence[str] = (), *, numbers_only: bool = False) -> dict[str, Figure]:
    """The plots of :func:`plot_axes` by artifact file, e.g. ``plots/rmse_vs_alpha.png``."""
    axes = plot_axes(ranked, always, numbers_only=numbers_only)
    return {plot_file(metric, x): metric_plot(ranked, metric, x, series) for x, series in axes}
