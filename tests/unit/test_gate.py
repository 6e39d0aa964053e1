"""The gate's rules on recorded metrics: plain comparisons, no MLflow."""

from __future__ import annotations

import math

import numpy as np
import pytest

from steps.core import gate, tasks
from steps.core.conf import validate
from steps.core.errors import ConfigError
from steps.core.gate import GateSettings, Scores
from steps.core.tasks import CLASSIFICATION, LOG_LOSS, R2, REGRESSION, RMSE, ROC_AUC

STRICT = GateSettings(metric="auto", baseline_margin=0.05, champion_tolerance=0.0)
LENIENT = GateSettings(metric="auto", baseline_margin=0.05, champion_tolerance=0.01)


def metrics(rmse: float, r2: float = 0.5) -> dict[str, float]:
    return {"root_mean_squared_error": rmse, "r2_score": r2}


def test_the_schemas_thresholds_are_inclusive_and_said_in_words():
    thresholds = {"r2": {"min": 0.3}, "rmse": {"max": 65.0}}
    checks = gate.absolute_checks(thresholds, REGRESSION, metrics(65.0, r2=0.3))
    assert [(c.name, c.passed, c.detail) for c in checks] == [
        ("min r2", True, "R² 0.3 >= min 0.3 (the schema's threshold)"),
        ("max rmse", True, "RMSE 65 <= max 65 (the schema's threshold)"),
    ]
    failed = gate.absolute_checks(thresholds, REGRESSION, metrics(65.01, r2=0.29))
    assert [c.detail for c in failed] == ["R² 0.29 < min 0.3 (the schema's threshold)", "RMSE 65.01 > max 65 (the schema's threshold)"]


def test_without_thresholds_in_the_schema_no_absolute_check_applies():
    assert gate.absolute_checks({}, REGRESSION, metrics(1e6, r2=-5)) == []


def test_thresholds_must_name_a_metric_of_the_task():
    with pytest.raises(ConfigError, match=r"^s.yaml: thresholds.rmse: 'rmse' is not a classification metric; choose one of log_loss"):
        gate.threshold_problems({"rmse": {"max": 1}}, CLASSIFICATION, "s.yaml")


def test_a_missing_or_nan_metric_never_passes():
    assert not gate.absolute_checks({"rmse": {"max": 1}}, REGRESSION, {})[0].passed
    assert not gate.baseline_check(RMSE, metrics(math.nan), metrics(10.0), 0.05, "the mean").passed


@pytest.mark.parametrize(
    ("metric", "value", "baseline", "passed"),
    [
        (RMSE, 9.5, 10.0, True),  # needs <= 9.5: 5% of the way from 10 to 0
        (RMSE, 9.51, 10.0, False),
        (R2, 0.05, 0.0, True),  # needs >= 0.05: 5% of the way from 0 to 1
        (R2, 0.049, 0.0, False),
        (ROC_AUC, 0.6, 0.5, True),
        (ROC_AUC, 0.52, 0.5, False),
    ],
)
def test_the_baseline_must_be_beaten_by_the_margin_of_the_way_to_perfect(metric, value, baseline, passed):
    check = gate.baseline_check(metric, {metric.name: value}, {metric.name: baseline}, 0.05, "the mean")
    assert (check.name, check.passed) == ("baseline", passed)
    assert "(the baseline: the mean)" in check.detail


def test_with_no_margin_the_baseline_must_still_be_strictly_beaten():
    assert not gate.baseline_check(RMSE, metrics(10.0), metrics(10.0), 0.0, "the mean").passed
    assert gate.baseline_check(RMSE, metrics(9.99), metrics(10.0), 0.0, "the mean").passed


@pytest.mark.parametrize(
    ("settings", "rmse", "passed", "detail"),
    [
        (STRICT, 49.0, True, "RMSE 49 better than champion version 2's 50 on the same test split"),
        (
            STRICT,
            50.0,
            False,
            "RMSE 50 equals champion version 2's 50 on the same test split: an equal model does not replace the champion",
        ),
        (STRICT, 50.001, False, "RMSE 50 worse than champion version 2's 50 on the same test split"),
        (LENIENT, 50.4, True, "RMSE 50.4 within 1% tolerance of champion version 2's 50 on the same test split (limit 50.5)"),
        (LENIENT, 50.6, False, "RMSE 50.6 outside 1% tolerance of champion version 2's 50 on the same test split (limit 50.5)"),
    ],
)
def test_against_the_champion_better_is_required_and_the_tolerance_relaxes_it(settings, rmse, passed, detail):
    check = gate.champion_check(RMSE, metrics(rmse), metrics(50.0), settings.champion_tolerance, "champion version 2")
    assert (check.name, check.passed, check.detail) == ("champion", passed, detail)


def test_the_tolerance_of_a_score_is_a_fraction_of_its_distance_to_perfect():
    # Champion accuracy 0.9: 10% tolerance of the 0.1 left to 1 accepts down to 0.89.
    accuracy = tasks.ACCURACY
    assert gate.champion_check(accuracy, {accuracy.name: 0.891}, {accuracy.name: 0.9}, 0.1, "v1").passed
    assert not gate.champion_check(accuracy, {accuracy.name: 0.889}, {accuracy.name: 0.9}, 0.1, "v1").passed


def test_degenerate_splits_and_candidates_are_refused_with_a_reason():
    assert gate.degenerate_checks(np.array([1.0, 2.0]), np.array([1.5, 1.7])) == []
    constant_target = gate.degenerate_checks(np.array([3.0, 3.0, 3.0]), np.array([2.9, 3.0, 3.1]))
    assert [(c.name, c.passed) for c in constant_target] == [("test split", False)]
    assert "every test row has the same target value (3.0)" in constant_target[0].detail
    constant_model = gate.degenerate_checks(np.array(["a", "b", "a"]), np.array(["a", "a", "a"]))
    assert [(c.name, c.detail) for c in constant_model] == [("constant", "the candidate predicts 'a' for every test row")]
    # Always the majority class, but with probabilities that rank the rows: judged on its metrics.
    ranking = np.array([[0.9, 0.1], [0.6, 0.4], [0.8, 0.2]])
    assert gate.degenerate_checks(np.array(["a", "b", "a"]), np.array(["a", "a", "a"]), ranking) == []
    flat = np.array([[0.7, 0.3]] * 3)
    assert [c.name for c in gate.degenerate_checks(np.array(["a", "b", "a"]), np.array(["a", "a", "a"]), flat)] == ["constant"]
    assert "np." not in gate.degenerate_checks(np.array([True, False]), np.array([False, False]))[0].detail


def test_the_verdict_names_the_failed_checks_or_all_of_them():
    scores = Scores(metrics(40.0), metrics(70.0, r2=0.0), metrics(45.0), "champion version 1")
    passing = gate.judge(STRICT, REGRESSION, RMSE, scores, thresholds={"r2": {"min": 0.3}}, degenerate=[])
    passed, reason = gate.verdict(passing, "")
    assert passed
    assert reason.split("; ") == [
        "RMSE 40 reaches 66.5, 5% of the way from 70 (the baseline: the train split's mean) to 0",
        "R² 0.5 >= min 0.3 (the schema's threshold)",
        "RMSE 40 better than champion version 1's 45 on the same test split",
    ]
    worse = Scores(metrics(46.0), metrics(70.0, r2=0.0), metrics(45.0), "champion version 1")
    assert gate.verdict(gate.judge(STRICT, REGRESSION, RMSE, worse, thresholds={}, degenerate=[]), "") == (
        False,
        "RMSE 46 worse than champion version 1's 45 on the same test split",
    )
    alone = gate.judge(STRICT, REGRESSION, RMSE, Scores(metrics(40.0), metrics(70.0)), thresholds={}, degenerate=[])
    assert gate.verdict(alone, gate.NO_CHAMPION)[1].endswith("; no champion yet")


def test_the_primary_metric_is_the_tasks_unless_the_estimator_has_no_probabilities():
    assert STRICT.primary(REGRESSION) is RMSE
    assert STRICT.primary(CLASSIFICATION, has_proba=True) is LOG_LOSS
    assert STRICT.primary(CLASSIFICATION, has_proba=False) is tasks.ACCURACY
    chosen = GateSettings(metric="ROC_AUC", baseline_margin=0.05, champion_tolerance=0.0)
    assert chosen.primary(CLASSIFICATION) is ROC_AUC
    with pytest.raises(ConfigError, match=r"^evaluation.metric: roc_auc needs predicted probabilities, and LinearSVC has no predict_proba"):
        chosen.primary(CLASSIFICATION, has_proba=False, estimator="LinearSVC")
    with pytest.raises(ConfigError, match=r"^evaluation.metric: 'ROC_AUC' is not a regression metric; choose one of rmse, mae, r2$"):
        chosen.primary(REGRESSION)


def _noise_model(seed: int) -> tuple[dict[str, float], dict[str, float]]:
    """A class-balanced logistic regression fitted on 85/15 random labels that have nothing to do
    with the features: its held-out log loss and macro F1, and the same for the class prior."""
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415 - scikit-learn only where a test fits
    from sklearn.metrics import f1_score, log_loss  # noqa: PLC0415

    labels = np.where(np.random.default_rng(seed).random(800) < 0.15, "rare", "common")
    features = np.random.default_rng(1).normal(size=(800, 10))
    model = LogisticRegression(max_iter=1000, class_weight="balanced").fit(features[:600], labels[:600])
    test = labels[600:]
    macro_f1 = "macro_f1"
    candidate = {
        LOG_LOSS.name: log_loss(test, model.predict_proba(features[600:]), labels=model.classes_),
        macro_f1: f1_score(test, model.predict(features[600:]), average="macro"),
    }
    baseline = tasks.baseline_metrics(CLASSIFICATION, tasks.summarize(CLASSIFICATION, labels[:600]), test)
    baseline[macro_f1] = f1_score(test, ["common"] * len(test), average="macro")
    return candidate, baseline


def test_a_model_of_imbalanced_random_labels_does_not_beat_the_class_prior():
    # The default metric, log loss against the class prior, refuses a noise model for every seed.
    for seed in range(5):
        candidate, baseline = _noise_model(seed)
        check = gate.baseline_check(STRICT.primary(CLASSIFICATION), candidate, baseline, STRICT.baseline_margin, CLASSIFICATION.baseline)
        assert not check.passed, check.detail
    # Macro F1 against the most frequent class is a weak test: that baseline scores 0 on the rare
    # class, and this noise model, which predicts some rows as rare, beats it by far more than 5%.
    candidate, baseline = _noise_model(0)
    macro_f1 = tasks.Metric("macro_f1", "macro_f1", "macro F1", higher_is_better=True, best=1.0)
    assert gate.baseline_check(macro_f1, candidate, baseline, STRICT.baseline_margin, "the most frequent class").passed


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"baseline_margin": 1.0}, r"^evaluation.baseline_margin: must be between 0 \(inclusive\) and 1 \(exclusive\), got 1.0$"),
        ({"champion_tolerance": -0.1}, r"^evaluation.champion_tolerance: must be between 0 \(inclusive\) and 1 \(exclusive\), got -0.1$"),
        ({"baseline_margin": "big"}, r"^evaluation.baseline_margin: expected a number, got 'big'$"),
        ({"min_r2": 0.3}, r"^unknown key 'evaluation.min_r2'"),
    ],
)
def test_bad_settings_are_one_line_naming_the_key(values, message):
    with pytest.raises(ConfigError, match=message):
        validate(GateSettings, "evaluation", STRICT.model_dump() | values)
