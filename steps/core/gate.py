"""The gate's rules: which candidate may become the champion, and why, in words.

Plain comparisons of metrics, so they are tested in milliseconds: the absolute thresholds of the
``evaluation`` section (``min_r2``, ``max_rmse``) and the relative rule against the champion
(its RMSE on the same test split, with ``champion_tolerance``). evaluate applies them to the
metrics MLflow's evaluation computed; register re-applies the relative rule to a champion
promoted while the candidate was being evaluated, from that champion's recorded metrics.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, field_validator

from steps.core.model import R2, RMSE

NO_CHAMPION = "no champion yet: absolute thresholds only"


class GateSettings(BaseModel):
    """The ``evaluation`` section: the thresholds a candidate must meet."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)

    min_r2: float
    max_rmse: float
    champion_tolerance: float

    @field_validator("min_r2")
    @classmethod
    def _r2(cls, value: float) -> float:
        if not value <= 1:
            raise ValueError(f"must be <= 1 (the best possible R²), got {value}")
        return value

    @field_validator("max_rmse")
    @classmethod
    def _rmse(cls, value: float) -> float:
        if not value > 0:
            raise ValueError(f"must be > 0, got {value}")
        return value

    @field_validator("champion_tolerance")
    @classmethod
    def _tolerance(cls, value: float) -> float:
        if not 0 <= value < 1:
            raise ValueError(f"must be between 0 (inclusive) and 1 (exclusive), got {value}")
        return value


@dataclass(frozen=True)
class Check:
    """One rule of the gate and how the candidate fared."""

    name: str
    passed: bool
    detail: str


def _meets(value: float, threshold: float, higher_is_better: bool) -> bool:
    """``value`` is on the right side of ``threshold`` (a missing or NaN value never is)."""
    if value is None or math.isnan(value):
        return False
    return value >= threshold if higher_is_better else value <= threshold


def absolute_checks(settings: GateSettings, metrics: Mapping[str, float]) -> list[Check]:
    """The minimum R² and the maximum RMSE, in words."""
    checks = []
    for metric, key, threshold in ((R2, "min_r2", settings.min_r2), (RMSE, "max_rmse", settings.max_rmse)):
        value = metrics.get(metric.name, math.nan)
        ok = _meets(value, threshold, metric.higher_is_better)
        relation = (">=" if ok else "<") if metric.higher_is_better else ("<=" if ok else ">")
        checks.append(Check(key, ok, f"{metric.label} {value:.4g} {relation} {key} {threshold:g}"))
    return checks


def champion_check(settings: GateSettings, metrics: Mapping[str, float], champion: Mapping[str, float], champion_name: str) -> Check:
    """Not worse than the champion (by more than the tolerance) on the same test split."""
    rmse, champion_rmse = metrics.get(RMSE.name, math.nan), champion[RMSE.name]
    limit = champion_rmse * (1 + settings.champion_tolerance)
    ok = _meets(rmse, limit, RMSE.higher_is_better)
    relation = "<=" if ok else ">"
    if settings.champion_tolerance:
        detail = (
            f"RMSE {rmse:.4g} {relation} {limit:.4g}, {champion_name}'s RMSE "
            f"{champion_rmse:.4g} on the same test split + {settings.champion_tolerance * 100:g}% tolerance"
        )
    else:
        detail = f"RMSE {rmse:.4g} {relation} {champion_rmse:.4g}, {champion_name}'s RMSE on the same test split"
    return Check("champion", ok, detail)


def judge(
    settings: GateSettings, metrics: Mapping[str, float], champion: Mapping[str, float] | None = None, champion_name: str = ""
) -> list[Check]:
    """Every rule of the gate for a candidate with ``metrics`` (and the champion's, if any)."""
    checks = absolute_checks(settings, metrics)
    if champion is not None:
        checks.append(champion_check(settings, metrics, champion, champion_name))
    return checks


def verdict(checks: list[Check], champion_note: str) -> tuple[bool, str]:
    """Passed when every check passed; the reason lists the failed checks (or all, when passed)."""
    failed = [c.detail for c in checks if not c.passed]
    reason = "; ".join(failed if failed else [c.detail for c in checks])
    if champion_note:
        reason += f"; {champion_note}"
    return not failed, reason
