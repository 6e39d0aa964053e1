"""Progress lines: none for short tasks, one every few seconds with what is left for long ones."""

from __future__ import annotations

import logging

import pytest

from steps.core import progress
from steps.core.progress import Progress


@pytest.fixture
def clock(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    return now


def test_a_short_task_says_nothing(clock, caplog):
    with caplog.at_level(logging.INFO):
        task = Progress("reading f.csv", 100)
        clock[0] = 1.0
        task.update(100)
        task.finish()
    assert caplog.messages == []


def test_a_long_task_reports_every_few_seconds_with_the_time_left(clock, caplog):
    with caplog.at_level(logging.INFO):
        task = Progress("reading big.csv", 3 << 30, unit="bytes")
        for seconds, done in ((2, 1 << 29), (5, 1 << 30), (7, 3 << 29), (10.5, 2 << 30), (12, 3 << 30)):  # every 3 s at most
            clock[0] = seconds
            task.update(done)
        task.finish()
    assert caplog.messages == [
        "reading big.csv: 1.0 GB of 3.0 GB (33%), 5 s, ~10 s left",
        "reading big.csv: 2.0 GB of 3.0 GB (67%), 10 s, ~5 s left",
        "reading big.csv: done in 12 s",
    ]


def test_rows_are_counted_with_separators_and_nothing_done_has_no_estimate(clock, caplog):
    with caplog.at_level(logging.INFO):
        task = Progress("scoring", 2_500_000)
        clock[0] = 6
        task.update(0)
    assert caplog.messages == ["scoring: 0 rows of 2,500,000 rows (0%), 6 s"]


def test_a_stage_reports_its_time_only_when_it_took_a_while(clock, caplog):
    with caplog.at_level(logging.INFO):
        with progress.stage("quick"):
            clock[0] += 0.5
        with progress.stage("read big.csv"):
            clock[0] += 2.25
    assert caplog.messages == ["read big.csv: 2.2 s"]
