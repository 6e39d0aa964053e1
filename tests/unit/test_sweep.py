"""The sweep's bookkeeping and checks: its grid, the best trial, the progress line, the summary and the card's section."""

from __future__ import annotations

import math

import pytest

from steps.core import ranking
from steps.core.errors import ConfigError
from steps.core.tasks import ACCURACY, CLASSIFICATION, F1, LOG_LOSS, MAE, R2, RMSE, ROC_AUC, Metric
from steps.mlflow_io.cards import Card
from steps.orchestration.config import SWEEP_PARAMETERS, load_config
from steps.sweep import SWEEP, Trial, Trials, check_grid, grid_point, value_text
from tests.conftest import check_card

TREE = "sklearn.tree.DecisionTreeRegressor"


def trials(*results: tuple[float, float, float | None, str]) -> Trials:
    """Trials of (alpha, l1_ratio, RMSE or None, status), ranked by RMSE."""
    report = Trials(size=len(results) + 1, experiment_id="1", metric=RMSE, parameters=["alpha", "l1_ratio"])
    for number, (alpha, ratio, rmse, status) in enumerate(results, start=1):
        metrics = {} if rmse is None else {RMSE.name: rmse, MAE.name: rmse - 10, R2.name: 0.5}
        report.trials.append(Trial(number, {"alpha": alpha, "l1_ratio": ratio}, f"run{number}", status=status, metrics=metrics))
    return report


def scored(metric: Metric, *values: float | None, statuses: tuple[str, ...] = ()) -> Trials:
    """Trials over max_depth 1, 2, ... with these values of ``metric``."""
    report = Trials(size=len(values), experiment_id="1", metric=metric, parameters=["max_depth"])
    for number, value in enumerate(values, start=1):
        status = statuses[number - 1] if statuses else "FINISHED"
        metrics = {} if value is None else {metric.name: value}
        report.trials.append(Trial(number, {"max_depth": number}, f"run{number}", status=status, metrics=metrics))
    return report


def sweep_config(**overrides: str):
    return load_config(overrides=overrides, parameters=SWEEP_PARAMETERS)


# --- the best trial ---


def test_the_best_trial_has_the_lowest_rmse_among_finished_ones_the_first_on_a_tie():
    report = trials((0.1, 0.5, 53.0, "FINISHED"), (1.0, 0.5, 52.0, "FINISHED"), (3.0, 0.5, 52.0, "FINISHED"), (9.0, 0.1, 1.0, "FAILED"))
    assert report.best().number == 2
    assert trials((0.1, 0.5, None, "FAILED")).best() is None


@pytest.mark.parametrize("metric", [R2, ACCURACY, ROC_AUC, F1])
def test_for_a_higher_is_better_metric_the_best_trial_has_the_highest_value_the_first_on_a_tie(metric):
    report = scored(metric, 0.61, 0.83, 0.83, 0.2, 0.99, statuses=("FINISHED",) * 4 + ("KILLED",))
    assert report.best().number == 2
    assert "Best so far: trial 2: max_depth=2" in report.summary_lines()[-1]


def test_a_trial_without_the_metric_or_with_nan_is_never_the_best():
    # A classifier without predict_proba has no log loss; NaN compares as neither better nor worse.
    assert scored(LOG_LOSS, None, math.nan, 0.7).best().number == 3
    assert scored(LOG_LOSS, None, math.nan).best() is None


def test_a_trial_that_passed_its_checks_beats_a_better_score_the_gate_refused():
    report = scored(RMSE, 40.0, 45.0, 50.0)
    assert report.best().number == 1  # none passed: the best score
    report.trials[1].passed = report.trials[2].passed = True
    assert report.best().number == 2  # trial 1's RMSE failed a threshold: registering it would be a rejection


# --- progress, summary, card ---


def test_progress_says_where_the_sweep_is_and_how_long_is_left(monkeypatch):
    report = trials((0.1, 0.5, 53.0, "FINISHED"), (1.0, 0.2, 54.0, "FINISHED"))
    report.trials[-1].reused = True
    monkeypatch.setattr("steps.sweep.time.monotonic", lambda: 100.0)
    line = report.progress(report.trials[-1], started=90.0)
    assert line == "trial 2: alpha=1 l1_ratio=0.2 [2/3]: RMSE 54 (reused); best so far trial 1; 10 s elapsed, ~5 s left"


def test_the_summary_lists_every_trial_with_the_tasks_metrics_and_marks_the_best():
    report = trials((0.1, 0.5, 53.0, "FINISHED"), (1.0, 0.5, None, "FAILED"))
    lines = report.summary_lines()
    assert lines[0] == "Trials: 2 of 3 over alpha x l1_ratio (best by test RMSE marked *)"
    assert lines[1].split() == ["#", "alpha", "l1_ratio", "RMSE", "MAE", "R²", "status", "trial", "run", "id"]
    assert lines[2].split() == ["*", "1", "0.1", "0.5", "53", "43", "0.5", "FINISHED", "run1"]
    assert lines[3].split() == ["2", "1", "0.5", "NaN", "NaN", "NaN", "FAILED", "run2"]
    assert lines[-1] == "Best so far: trial 1: alpha=0.1 l1_ratio=0.5, RMSE 53 (the sweep stopped before the gate)"
    report.gated = True
    assert (
        report.summary_lines()[-1] == "Best: trial 1: alpha=0.1 l1_ratio=0.5, RMSE 53: evaluated against the champion and registered below"
    )


def test_a_classifiers_trials_show_its_metrics_in_the_tasks_order():
    report = Trials(size=2, experiment_id="1", metric=LOG_LOSS, parameters=["C"])
    values = {LOG_LOSS.name: 0.4, ROC_AUC.name: 0.9, F1.name: 0.8, ACCURACY.name: 0.85}
    report.trials.append(Trial(1, {"C": 0.1}, "run1", status="FINISHED", metrics=values))
    assert report.summary_lines()[1].split()[:6] == ["#", "C", "log", "loss", "ROC", "AUC"]
    assert [m.label for m in report.metrics] == [m.label for m in CLASSIFICATION.metrics] == ["log loss", "ROC AUC", "F1", "accuracy"]
    assert list(report.frame().columns) == ["run_id", "run_name", "kind", "C", *(m.name for m in CLASSIFICATION.metrics)]


@pytest.mark.parametrize("count", [0, 1, 4])
def test_the_card_section_shows_the_trials_and_a_plot_per_swept_parameter(count):
    report = trials(*[(0.1 * (i + 1), 0.5, 50.0 + i, "FINISHED") for i in range(count)])
    card = Card("Sweep run")
    report.add_to(card)
    # alpha and l1_ratio each get a plot, also when l1_ratio has one value only.
    text, _ = check_card(card.render(), min_images=2 if count else 0)
    assert f"Trials ({count} of {count + 1})" in text
    assert text.count("FINISHED") == count


def test_text_values_and_none_are_categories_of_their_plot():
    report = Trials(size=4, experiment_id="1", metric=RMSE, parameters=["criterion", "max_depth"])
    points = [("squared_error", 10), ("squared_error", None), ("poisson", 2), ("poisson", 10)]
    for number, (criterion, depth) in enumerate(points, start=1):
        metrics = {RMSE.name: 60.0 - number}
        report.trials.append(
            Trial(number, {"criterion": criterion, "max_depth": depth}, f"run{number}", status="FINISHED", metrics=metrics)
        )
    assert report.trials[1].name == "trial 2: criterion=squared_error max_depth=None"
    ranked = ranking.rank(report.frame(), RMSE)
    assert ranking.plot_axes(ranked, always=report.parameters) == [("criterion", "max_depth"), ("max_depth", "criterion")]
    figures = {x: ranking.metric_plot(ranked, RMSE, x, series) for x, series in ranking.plot_axes(ranked, always=report.parameters)}
    labels = {x: [t.get_text() for t in fig.axes[0].get_xticklabels()] for x, fig in figures.items()}
    # Categories in order: numbers by value (2 before 10), then the others by name.
    assert labels == {"criterion": ["poisson", "squared_error"], "max_depth": ["2", "10", "None"]}
    best = figures["max_depth"].axes[0].collections[-1].get_offsets().tolist()
    assert best == [[1.0, 56.0]]  # trial 4: max_depth 10 (the second category), RMSE 56


def test_values_are_written_short():
    assert [value_text(v) for v in (0.01, 1.0, 3, None, "gini", True, 1e-05)] == ["0.01", "1", "3", "None", "gini", "True", "1e-05"]


# --- the grid and the estimator, checked before any step runs ---


def test_a_grid_given_by_minus_p_replaces_the_files_entries_or_for_another_estimator_the_whole_grid():
    assert sweep_config().sweep.grid == {"alpha": [0.01, 0.1, 0.3, 1.0], "l1_ratio": [0.2, 0.5, 0.8]}
    # ElasticNet's -P alphas replaces the file's alphas and keeps its l1_ratios, as it always has.
    assert sweep_config(alphas="0.1,1").sweep.grid == {"alpha": [0.1, 1.0], "l1_ratio": [0.2, 0.5, 0.8]}
    tree = sweep_config(**{"model.estimator": TREE, "sweep.grid.max_depth": "2,4", "sweep.grid.criterion": "squared_error,poisson"})
    assert tree.sweep.grid == {"max_depth": [2, 4], "criterion": ["squared_error", "poisson"]}
    check_grid(tree)
    # ParameterGrid sorts each point by name; a trial keeps the grid's order.
    assert [grid_point(tree, point) for point in tree.sweep.grid_points][:2] == [
        {"max_depth": 2, "criterion": "squared_error"},
        {"max_depth": 4, "criterion": "squared_error"},
    ]


def test_the_files_grid_for_another_estimator_is_refused_saying_how_to_set_one():
    config = sweep_config(**{"model.estimator": "sklearn.ensemble.RandomForestRegressor"})
    with pytest.raises(ConfigError) as caught:
        check_grid(config)
    message = str(caught.value)
    assert message.startswith("sweep.grid.alpha: not a parameter of RandomForestRegressor")
    assert message.endswith(
        "; the grid of conf/pipeline.yaml is not for RandomForestRegressor: "
        "set the grid with -P sweep.grid.<name>=v1,v2 (a grid given by -P replaces the file's)"
    )
    assert "\n" not in message


def test_a_grid_value_the_estimator_refuses_names_the_minus_p_parameter():
    with pytest.raises(ConfigError, match=r"^-P alphas: sweep.grid.alpha: must be >= 0, got -1.0$"):
        check_grid(sweep_config(alphas="0.1,-1"))
    tree = {"model.estimator": TREE, "sweep.grid.max_depth": "2,4", "sweep.grid.alpha": "1"}
    with pytest.raises(ConfigError, match=r"^-P sweep.grid.alpha: sweep.grid.alpha: not a parameter of DecisionTreeRegressor"):
        check_grid(sweep_config(**tree))


def test_a_minus_p_model_parameter_that_the_grid_sweeps_is_refused_naming_both():
    with pytest.raises(ConfigError) as caught:
        check_grid(sweep_config(**{"model.params.alpha": "0.3"}))
    assert str(caught.value) == (
        "-P model.params.alpha: model.params.alpha is also swept by sweep.grid.alpha (conf/pipeline.yaml): "
        "each trial takes alpha from the grid; set it in one of them"
    )
    with pytest.raises(ConfigError, match=r"^-P model.params.max_depth: .* swept by sweep.grid.max_depth \(-P sweep.grid.max_depth\)"):
        check_grid(sweep_config(**{"model.estimator": TREE, "sweep.grid.max_depth": "2,4", "model.params.max_depth": "3"}))
    # An argument the grid does not sweep is every trial's.
    fixed = sweep_config(**{"model.estimator": TREE, "sweep.grid.max_depth": "2,4", "model.params.random_state": "0"})
    check_grid(fixed)
    assert fixed.estimator.params == {"random_state": 0}


def test_the_parent_logs_no_value_of_a_swept_parameter():
    config = sweep_config(**{"model.estimator": TREE, "sweep.grid.max_depth": "2,4", "model.params.random_state": "0"})
    assert list(SWEEP.overridden(config)) == ["model.params.max_depth"]
    assert set(SWEEP.overridden(sweep_config())) == {"model.params.alpha", "model.params.l1_ratio"}
