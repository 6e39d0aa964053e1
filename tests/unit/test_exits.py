"""A step's process ended by a signal: the warm process says which, the run's status and reason
follow from it, and the summary's row says it."""

from __future__ import annotations

import os
import signal
import socket
import sys

import pytest

from steps.orchestration.report import run_status, step_why
from steps.orchestration.runner import StepResult
from steps.runtime.exits import signal_name, signal_outcome
from steps.runtime.warm import _wait


@pytest.mark.parametrize(
    ("name", "status", "reason"),
    [
        ("SIGKILL", "KILLED", "the step's process was killed (SIGKILL: kill -9, or the system ran out of memory)"),
        ("SIGTERM", "KILLED", "the step's process was killed (SIGTERM)"),
        ("SIGHUP", "KILLED", "the step's process was killed (SIGHUP)"),
        ("SIGSEGV", "FAILED", "the step's process crashed (SIGSEGV)"),
        ("SIGABRT", "FAILED", "the step's process crashed (SIGABRT)"),
        ("signal 64", "KILLED", "the step's process was killed (signal 64)"),
    ],
)
def test_a_signal_sent_to_a_step_kills_it_and_a_fault_crashes_it(name, status, reason):
    assert signal_outcome(name) == (status, reason)


def test_signals_are_named_as_the_run_records_them():
    assert signal_name(signal.SIGKILL) == "SIGKILL"
    assert signal_name(200) == "signal 200"


def _child_that(ends: str) -> int:
    """A forked child that ends as ``ends`` says: ``kill`` (SIGKILL itself) or ``exit``."""
    pid = os.fork()
    if pid == 0:
        if ends == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(3)
    return pid


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the warm process forks")
@pytest.mark.parametrize(("ends", "expected"), [("kill", {"status": 128 + signal.SIGKILL, "signal": "SIGKILL"}), ("exit", {"status": 3})])
def test_the_warm_process_tells_the_launcher_which_signal_ended_the_step(ends, expected):
    warm_side, launcher_side = socket.socketpair()
    with warm_side, launcher_side:
        sys.stdout.flush()
        assert _wait(_child_that(ends), warm_side) == expected


def _result(status: str, error: str | None = None) -> StepResult:
    return StepResult(name="train", run_id="r1", status=status, seconds=1.0, error=error, reason="no earlier run of this step")


def test_a_failed_or_killed_steps_row_says_why_it_ended_so_and_the_others_why_they_ran():
    assert step_why(_result("KILLED", "train: the step's process was killed (SIGKILL)")) == "the step's process was killed (SIGKILL)"
    assert step_why(_result("FAILED", "train: RuntimeError: simulated bug")) == "RuntimeError: simulated bug"
    assert step_why(_result("FINISHED")) == "no earlier run of this step"
    assert step_why(_result("FAILED")) == "no earlier run of this step"  # no reason recorded: why it ran, at least


def test_the_summary_says_the_status_the_run_ends_with():
    assert run_status(None, "FINISHED") == "FINISHED"
    assert run_status("step train failed: ...", "FINISHED") == "FAILED"
    assert run_status("main: interrupted (stopped by SIGTERM)", "KILLED") == "KILLED"
