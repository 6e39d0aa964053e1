"""Extreme finite values (near 1e300, near the largest float) in plots, profiles and the numbers people read."""

from __future__ import annotations

import math
import sys

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from steps import evaluate, ingest
from steps.core import gate
from steps.core.schema import parse_schema
from steps.core.tasks import RMSE
from steps.core.text import format_value
from steps.mlflow_io import cards

LARGEST = sys.float_info.max

EXTREME = {
    "equal near 1e300": np.full(5, 1e300),
    "nearly equal near 1e300": 1e300 * (1 + np.array([0, 1e-13, 2e-13, 0, 0])),
    "nearly equal near 1e16": 1e16 + np.array([0.0, 2.0, 4.0]),
    "-1e300 and 1e300": np.array([-1e300, 1e300, 5e299, -3e299]),
    "near the largest float": np.array([-LARGEST, -1.7e308, 0.0, 1.7e308, LARGEST]),
    "the largest float only": np.full(3, LARGEST),
    "subnormal": np.array([0.0, 5e-324, 1e-323]),
}


def _stairs(ax) -> tuple[np.ndarray, np.ndarray]:
    (patch,) = ax.patches
    data = patch.get_data()
    return np.asarray(data.values), np.asarray(data.edges)


@pytest.mark.parametrize("values", [pytest.param(v, id=k) for k, v in EXTREME.items()])
def test_a_histogram_of_extreme_finite_values_counts_every_value_and_draws(values):
    fig = Figure()
    ax = fig.add_subplot()
    cards.histogram(ax, values, bins=30)
    counts, edges = _stairs(ax)
    assert counts.sum() == len(values)
    assert np.isfinite(edges).all() and (np.diff(edges) > 0).all()
    assert cards.figure_png(fig).startswith(b"\x89PNG")


def test_values_near_the_largest_float_are_drawn_in_a_unit_the_axis_shows():
    assert cards.drawing_unit(np.array([1.0, -250.0, 1e299])) == 1.0
    assert cards.drawing_unit(np.array([-1.7e308, 3.0]), np.array([np.inf, 2e307])) == 1e308
    fig = Figure()
    ax = fig.add_subplot()
    cards.histogram(ax, EXTREME["near the largest float"], bins=30)
    _, edges = _stairs(ax)
    assert edges[0] == pytest.approx(-LARGEST / 1e308) and edges[-1] == pytest.approx(LARGEST / 1e308)
    cards.figure_png(fig)  # ticks are placed when drawn
    assert ax.xaxis.get_major_formatter().get_offset() == "×1e308"


def test_non_finite_values_are_left_out_of_a_histogram():
    fig = Figure()
    ax = fig.add_subplot()
    cards.histogram(ax, np.array([1.0, np.inf, 2.0, np.nan, -np.inf, 3.0]), bins=3)
    counts, _ = _stairs(ax)
    assert counts.tolist() == [1, 1, 1]


@pytest.mark.parametrize(
    ("actual", "predicted"),
    [
        pytest.param(EXTREME["nearly equal near 1e300"], np.zeros(5), id="residuals nearly equal near 1e300"),
        pytest.param(np.array([1.7e308, -1.7e308, 1e308]), np.array([-1.7e308, 1.7e308, 0.0]), id="residuals beyond the largest float"),
        pytest.param(np.full(4, LARGEST), np.full(4, LARGEST), id="the largest float, predicted exactly"),
    ],
)
def test_evaluates_plots_of_extreme_targets_and_predictions_draw(actual, predicted):
    figures = evaluate.plot_predictions(actual, predicted, "y")
    assert set(figures) == {evaluate.Artifact.PREDICTED_VS_ACTUAL, evaluate.Artifact.RESIDUALS}
    for figure in figures.values():
        assert cards.figure_png(figure).startswith(b"\x89PNG")
    residuals = figures[evaluate.Artifact.RESIDUALS].axes[1]
    counts, _ = _stairs(residuals)
    assert counts.sum() == len(actual)  # every residual counted, none overflowed to infinity


def test_coefficients_near_the_largest_float_draw():
    fig = cards.bar_figure(["a", "b"], [1.7e308, -1.7e308], "coefficients", "coefficient")
    assert cards.figure_png(fig).startswith(b"\x89PNG")


def test_the_ingest_profile_and_distributions_of_a_column_near_the_largest_float():
    schema = parse_schema({"target": "y", "columns": {"x": {"dtype": "float"}, "y": {"dtype": "float"}}}, source="s")
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": [1.7e308, 1.7e308, -1e308, 1.6e308]})
    (profile,) = [row for row in ingest.column_profile(frame, schema) if row["column"] == "y"]
    assert profile["mean"] == pytest.approx(0.25 * (1.7 + 1.7 - 1 + 1.6) * 1e308)  # the sum overflows; the mean does not
    cards.figure_png(ingest.distributions(frame, schema))
    equal = frame.assign(y=1e300)
    cards.figure_png(ingest.distributions(equal, schema))


@pytest.mark.parametrize(
    ("value", "shown"),
    [(math.inf, "inf"), (-math.inf, "-inf"), (LARGEST, "inf"), (-LARGEST, "-inf"), (math.nan, "NaN"), (1.7e308, "1.7e+308")],
)
def test_infinity_and_the_stores_stand_in_for_it_read_the_same(value, shown):
    assert format_value(value) == shown


def test_the_verdict_writes_metrics_by_the_same_rule_as_the_summary_and_cards():
    # An RMSE that overflowed: inf when evaluate judged it, the largest float once the store kept it.
    check = gate.baseline_check(RMSE, {RMSE.name: math.inf}, {RMSE.name: math.nan}, 0.05, "the mean")
    assert not check.passed
    assert f"RMSE {format_value(LARGEST)} misses {format_value(math.nan)}" in check.detail
    assert check.detail.startswith("RMSE inf misses NaN")
