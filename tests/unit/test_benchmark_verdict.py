"""The benchmark's large-data verdict: pipeline <= 2 x floor + the fixed overhead measured on small data."""

from __future__ import annotations

import pytest

from benchmarks.benchmark import SCALE_TARGET, scale_verdict

# A small-data run: the pipeline 17.3 s, its floor 1.6 s, so 15.7 s of fixed overhead.
SMALL_PIPELINE, SMALL_FLOOR = 17.3, 1.6


def test_a_pipeline_far_slower_than_twice_the_floor_plus_the_small_data_overhead_fails() -> None:
    verdict = scale_verdict(pipeline=300.0, floor=31.7, small_pipeline=SMALL_PIPELINE, small_floor=SMALL_FLOOR)
    assert verdict.overhead == pytest.approx(15.7)
    assert verdict.bound == pytest.approx(2 * 31.7 + 15.7)
    assert not verdict.met


def test_a_pipeline_within_twice_the_floor_plus_the_small_data_overhead_passes() -> None:
    verdict = scale_verdict(pipeline=55.2, floor=31.7, small_pipeline=SMALL_PIPELINE, small_floor=SMALL_FLOOR)
    assert verdict.bound == pytest.approx(79.1)
    assert verdict.met


def test_the_bound_is_inclusive() -> None:
    assert scale_verdict(pipeline=79.1, floor=31.7, small_pipeline=SMALL_PIPELINE, small_floor=SMALL_FLOOR).met
    assert not scale_verdict(pipeline=79.2, floor=31.7, small_pipeline=SMALL_PIPELINE, small_floor=SMALL_FLOOR).met


def test_the_overhead_comes_from_the_small_run_not_the_judged_one() -> None:
    # Taking the overhead from the judged run itself (300 - 31.7) would let this pass.
    judged_by_itself = scale_verdict(pipeline=300.0, floor=31.7, small_pipeline=300.0, small_floor=31.7)
    assert judged_by_itself.met
    assert not scale_verdict(pipeline=300.0, floor=31.7, small_pipeline=SMALL_PIPELINE, small_floor=SMALL_FLOOR).met


def test_the_factor_is_the_scale_target() -> None:
    assert SCALE_TARGET == 2.0
    assert scale_verdict(100.0, 40.0, 12.0, 2.0).bound == pytest.approx(2.0 * 40.0 + 10.0)
