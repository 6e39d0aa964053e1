"""Runs as a table: typed, ranked by a metric, and plotted against their parameters (no MLflow).

A table has one row per run: ``run_id``, ``run_name``, ``kind``, ``start_time``, its model
parameters (the model unit's usual ones first, then any other), its metrics and what became of
it. ``-e compare`` builds it from the tracking store; a sweep from its trials. Both rank and plot
it with these functions.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from steps.core.tasks import Metric, metric_names

from steps.core.text import format_value

# MLflow's metric name -> its label, for the metrics of every task (a run has its own task's).
REPORTED_METRICS = metric_names()

# Parameters every table has and every set of plots shows (when runs have them): the model
# unit's usual hyperparameters; any other model parameter is shown when it varies.
# The default estimator's (ElasticNet's) arguments: shown whenever runs have them, any other when it varies.
DEFAULT_PARAMETERS = ("alpha", "l1_ratio")
# A table's columns: the run's, its parameters (these and any other the runs have), its results.
RUN_COLUMNS = ("run_id", "run_name", "kind", "start_time")
RESULT_COLUMNS = (*REPORTED_METRICS, "evaluation", "model_version", "evaluate_run_id")
COLUMNS = (*RUN_COLUMNS, *DEFAULT_PARAMETERS, *RESULT_COLUMNS)
# A parameter is plotted on a log scale when its values span more than this factor.
LOG_SCALE_SPAN = 10.0
# Run names are cut to this many characters in text.
NAME_WIDTH = 32


def parameters(frame: pd.DataFrame) -> list[str]:
    """The parameter columns of a table: :data:`DEFAULT_PARAMETERS`, then every column not in :data:`COLUMNS`."""
    return [*DEFAULT_PARAMETERS, *sorted(str(column) for column in frame.columns if column not in COLUMNS)]


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every column of :data:`COLUMNS` (missing ones empty), in order, numbers as floats.

    The default parameters and the metrics are numbers (a value that is not becomes empty); any
    other parameter is when each of its values parses as one, else it stays text.
    """
    frame = frame.copy()
    for column in COLUMNS:
        if column not in frame:
            frame[column] = pd.NaT if column == "start_time" else math.nan if column in (*DEFAULT_PARAMETERS, *REPORTED_METRICS) else None
    for column in (*DEFAULT_PARAMETERS, *REPORTED_METRICS):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    for column in parameters(frame)[len(DEFAULT_PARAMETERS) :]:
        numbers = pd.to_numeric(frame[column], errors="coerce")
        if numbers.notna().sum() == frame[column].notna().sum():
            frame[column] = numbers.astype("float64")
    frame["start_time"] = pd.to_datetime(frame["start_time"], utc=True)
    return frame[[*RUN_COLUMNS, *parameters(frame), *RESULT_COLUMNS]]


def rank(frame: pd.DataFrame, metric: Metric) -> pd.DataFrame:
    """``frame`` best first by ``metric`` (runs without it last), newest first among equals."""
    frame = _typed(frame)
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
    if value is None or value == "" or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
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


def _known(values: pd.Series) -> pd.Series:
    """Which values can be drawn: finite numbers, or any text."""
    return np.isfinite(values) if pd.api.types.is_numeric_dtype(values) else values.notna()


def metric_plot(ranked: pd.DataFrame, metric: Metric, x: str, series: str | None) -> Figure:
    """``metric`` against parameter ``x``, one series per value of parameter ``series``, the best run starred."""
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    ax.set(xlabel=x, ylabel=f"{metric.label} ({metric.direction})", title=f"{metric.label} vs {x}")
    data = ranked[_known(ranked[x]) & _known(ranked[metric.name])]
    if data.empty:
        ax.text(0.5, 0.5, f"no run has both {x} and {metric.label}", ha="center", va="center", transform=ax.transAxes)
        return fig
    groups = list(data.groupby(series, dropna=False, sort=True)) if series else [("", data)]
    colors = [f"C{i}" for i in range(len(groups))] if len(groups) <= 10 else list(_many_colors(len(groups)))
    for (value, group), color in zip(groups, colors, strict=True):
        label = f"{series} = {_text(value)}" if series and not pd.isna(value) else f"{series} unknown" if series else "runs"
        # Every run a marker; the line joins the mean at each x (repeated runs share an x).
        means = group.groupby(x)[metric.name].mean().sort_index()
        ax.plot(means.index, means.to_numpy(), color=color, linewidth=1.2, alpha=0.8)
        ax.scatter(group[x], group[metric.name], color=color, s=28, label=label, zorder=3)
    best = best_run(ranked, metric)
    if best is not None and _known(ranked[x]).iloc[0]:  # the best run is the first
        ax.scatter(
            [best[x]], [best[metric.name]], marker="*", s=260, color="gold", edgecolors="black", zorder=4, label=f"best: {_name(best)}"
        )
    if pd.api.types.is_numeric_dtype(data[x]) and wants_log_scale(data[x]):
        ax.set_xscale("log")
    ax.grid(True, alpha=0.3)
    many = len(groups) > 8
    ax.legend(fontsize="small", loc="center left" if many else "best", bbox_to_anchor=(1.0, 0.5) if many else None)
    return fig


def _many_colors(count: int) -> Iterable[Any]:
    from matplotlib import colormaps  # noqa: PLC0415 - only for plots with many series

    cmap = colormaps["viridis"]
    return (cmap(i / max(1, count - 1)) for i in range(count))


def plot_axes(ranked: pd.DataFrame, always: Sequence[str] = DEFAULT_PARAMETERS) -> list[tuple[str, str | None]]:
    """(x, series) of each plot: the parameters in ``always`` that some run has, then each other one that varies.

    The series are the values of the first other parameter that varies, else of the first other one shown.
    """
    shown = [name for name in always if name in ranked and ranked[name].notna().any()]
    varying = [name for name in parameters(ranked) if ranked[name].nunique() > 1]
    return [(x, next((s for s in (*varying, *shown) if s != x), None)) for x in (*shown, *(v for v in varying if v not in shown))]


def plot_file(metric: Metric, x: str) -> str:
    return f"plots/{metric.short}_vs_{re.sub(r'[^0-9A-Za-z_.-]+', '_', x)}.png"


def plots(ranked: pd.DataFrame, metric: Metric, always: Sequence[str] = DEFAULT_PARAMETERS) -> dict[str, Figure]:
    """The plots of :func:`plot_axes` by artifact file, e.g. ``plots/rmse_vs_alpha.png``."""
    return {plot_file(metric, x): metric_plot(ranked, metric, x, series) for x, series in plot_axes(ranked, always)}
