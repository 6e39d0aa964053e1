"""The gate's rules on recorded metrics: plain comparisons, no MLflow."""

from __future__ import annotations

import math

import pytest

from steps.core import gate
from steps.core.conf import validate
from steps.core.errors import ConfigError
from steps.core.gate import GateSettings

STRICT = GateSettings(min_r2=0.3, max_rmse=65.0, champion_tolerance=0.0)
LENIENT = GateSettings(min_r2=0.3, max_rmse=65.0, champion_tolerance=0.01)


def metrics(rmse: float, r2: float = 0.5) -> dict[str, float]:
    return {"root_mean_squared_error": rmse, "r2_score": r2}


def test_absolute_thresholds_are_inclusive_and_said_in_words():
    checks = gate.absolute_checks(STRICT, metrics(65.0, r2=0.3))
    assert [(c.name, c.passed, c.detail) for c in checks] == [
        ("min_r2", True, "R² 0.3 >= min_r2 0.3"),
        ("max_rmse", True, "RMSE 65 <= max_rmse 65"),
    ]
    failed = gate.absolute_checks(STRICT, metrics(65.01, r2=0.29))
    assert [c.detail for c in failed] == ["R² 0.29 < min_r2 0.3", "RMSE 65.01 > max_rmse 65"]


def test_a_missing_or_nan_metric_never_passes():
    assert not any(c.passed for c in gate.absolute_checks(STRICT, {}))
    assert not gate.absolute_checks(STRICT, metrics(math.nan))[1].passed


@pytest.mark.parametrize(
    ("settings", "rmse", "passed", "detail"),
    [
        (STRICT, 50.0, True, "RMSE 50 <= 50, champion version 2's RMSE on the same test split"),
        (STRICT, 50.001, False, "RMSE 50 > 50, champion version 2's RMSE on the same test split"),
        (LENIENT, 50.4, True, "RMSE 50.4 <= 50.5, champion version 2's RMSE 50 on the same test split + 1% tolerance"),
        (LENIENT, 50.6, False, "RMSE 50.6 > 50.5, champion version 2's RMSE 50 on the same test split + 1% tolerance"),
    ],
)
def test_against_the_champion_the_tolerance_decides(settings, rmse, passed, detail):
    check = gate.champion_check(settings, metrics(rmse), metrics(50.0), "champion version 2")
    assert (check.name, check.passed, check.detail) == ("champion", passed, detail)


def test_the_verdict_names_the_failed_checks_or_all_of_them():
    passing = gate.judge(STRICT, metrics(40.0), metrics(45.0), "champion version 1")
    assert gate.verdict(passing, "") == (
        True,
        "R² 0.5 >= min_r2 0.3; RMSE 40 <= max_rmse 65; RMSE 40 <= 45, champion version 1's RMSE on the same test split",
    )
    failing = gate.judge(STRICT, metrics(46.0), metrics(45.0), "champion version 1")
    assert gate.verdict(failing, "") == (False, "RMSE 46 > 45, champion version 1's RMSE on the same test split")
    assert gate.verdict(gate.judge(STRICT, metrics(40.0)), gate.NO_CHAMPION)[1].endswith("; no champion yet: absolute thresholds only")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"min_r2": 1.5}, r"^evaluation.min_r2: must be <= 1 \(the best possible R²\), got 1.5$"),
        ({"max_rmse": 0.0}, r"^evaluation.max_rmse: must be > 0, got 0.0$"),
        ({"champion_tolerance": 1.0}, r"^evaluation.champion_tolerance: must be between 0 \(inclusive\) and 1 \(exclusive\), got 1.0$"),
        ({"max_rmse": "big"}, r"^evaluation.max_rmse: expected a number, got 'big'$"),
    ],
)
def test_bad_thresholds_are_one_line_naming_the_key(values, message):
    with pytest.raises(ConfigError, match=message):
        validate(GateSettings, "evaluation", STRICT.model_dump() | values)
