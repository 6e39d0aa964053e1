"""The sweep's bookkeeping: the best trial, the progress line, the summary and the card's section."""

from __future__ import annotations

import pytest

from steps.core.model import R2, RMSE
from steps.mlflow_io.cards import Card
from steps.sweep import Trial, Trials
from tests.conftest import check_card


def trials(*results: tuple[float, float, float | None, str]) -> Trials:
    """Trials of (alpha, l1_ratio, RMSE or None, status)."""
    report = Trials(size=len(results) + 1, experiment_id="1")
    for number, (alpha, ratio, rmse, status) in enumerate(results, start=1):
        metrics = {} if rmse is None else {RMSE.name: rmse, R2.name: 0.5}
        params = {"alpha": alpha, "l1_ratio": ratio}
        report.trials.append(Trial(number, params, f"run{number}", status=status, metrics=metrics))
    return report


def test_the_best_trial_has_the_lowest_rmse_among_finished_ones_the_first_on_a_tie():
    report = trials((0.1, 0.5, 53.0, "FINISHED"), (1.0, 0.5, 52.0, "FINISHED"), (3.0, 0.5, 52.0, "FINISHED"), (9.0, 0.1, 1.0, "FAILED"))
    assert report.best().number == 2
    assert trials((0.1, 0.5, None, "FAILED")).best() is None


def test_progress_says_where_the_sweep_is_and_how_long_is_left(monkeypatch):
    report = trials((0.1, 0.5, 53.0, "FINISHED"), (1.0, 0.2, 54.0, "FINISHED"))
    report.trials[-1].reused = True
    monkeypatch.setattr("steps.sweep.time.monotonic", lambda: 100.0)
    line = report.progress(report.trials[-1], started=90.0)
    assert line == "trial 2: alpha=1 l1_ratio=0.2 [2/3]: RMSE 54 (reused); best so far trial 1; 10 s elapsed, ~5 s left"


def test_the_summary_lists_every_trial_and_marks_the_best():
    report = trials((0.1, 0.5, 53.0, "FINISHED"), (1.0, 0.5, None, "FAILED"))
    lines = report.summary_lines()
    assert lines[0] == "Trials: 2 of 3 (best by test RMSE marked *)"
    assert lines[2].startswith("*   1      0.1      0.5        53") and lines[2].endswith("FINISHED  run1")
    assert "nan" in lines[3] and "FAILED" in lines[3]
    assert lines[-1] == "Best so far: trial 1: alpha=0.1 l1_ratio=0.5, RMSE 53 (the sweep stopped before the gate)"
    report.gated = True
    assert (
        report.summary_lines()[-1] == "Best: trial 1: alpha=0.1 l1_ratio=0.5, RMSE 53: evaluated against the champion and registered below"
    )


@pytest.mark.parametrize("count", [0, 1, 4])
def test_the_card_section_shows_the_trials_and_their_plots(count):
    report = trials(*[(0.1 * (i + 1), 0.5, 50.0 + i, "FINISHED") for i in range(count)])
    card = Card("Sweep run")
    report.add_to(card)
    text, _ = check_card(card.render(), min_images=2 if count else 0)
    assert f"Trials ({count} of {count + 1})" in text
    assert text.count("FINISHED") == count
