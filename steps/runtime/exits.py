"""A step's process ended by a signal: how its run ends, and the reason it gives.

A step killed with SIGKILL (``kill -9``, the kernel's out-of-memory killer) or crashed (SIGSEGV)
records nothing: its run is left RUNNING, and ``mlflow.run`` only says "Run failed" (the exit
status stays inside MLflow's SubmittedRun, which a synchronous ``mlflow.run`` does not return).
The process that knows how the step ended is the one that waited for it: for a step forked by
the warm process, the warm process tells the step's launcher (steps/runtime/warm.py,
steps/runtime/launch.py), which records the signal on the step's run with :func:`record_signal`.
A step that ran in its launcher's own process (no warm process) cannot be watched that way: its
run ends FAILED with the driver's generic reason (steps/orchestration/runner.py).

This module imports only the standard library; :func:`record_signal` imports MLflow when it runs.
"""

from __future__ import annotations

import logging
import os
import signal

logger = logging.getLogger(__name__)

# The run tag naming the signal that ended a step's process (e.g. SIGKILL), set by its launcher.
SIGNAL_TAG = "pipeline.exit_signal"
# Signals a process gets from its own fault (a bug, here or in a compiled library): the step
# crashed, and its run ends FAILED. Any other signal was sent to it (kill, the out-of-memory
# killer, a scheduler): the step was stopped, and its run ends KILLED.
CRASH_SIGNALS = frozenset({signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGABRT, signal.SIGSYS, signal.SIGTRAP})
# Why a process gets a signal nobody catches, where it is not obvious from its name.
_LIKELY_SENDER = {signal.SIGKILL: "kill -9, or the system ran out of memory"}


def signal_name(signum: int) -> str:
    """``SIGKILL`` for 9; ``signal 64`` for a number without a name."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def signal_outcome(name: str) -> tuple[str, str]:
    """The status a step's run ends with when signal ``name`` ended its process, and the reason."""
    signum = signal.Signals.__members__.get(name)
    if signum in CRASH_SIGNALS:
        return "FAILED", f"the step's process crashed ({name})"
    sender = _LIKELY_SENDER.get(signum)
    return "KILLED", f"the step's process was killed ({name}{': ' + sender if sender else ''})"


def record_signal(step: str, name: str) -> None:
    """Record on this step's run (``MLFLOW_RUN_ID``) that signal ``name`` ended its process.

    Sets the reason (the run's error tag), :data:`SIGNAL_TAG` and the status. ``mlflow.run`` then
    marks the run FAILED regardless (see steps/runtime/signals.py, keep_killed_after_parent_exits);
    the driver restores the status from :data:`SIGNAL_TAG`. A failure to record is only logged: the
    step's exit status still fails it.
    """
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if not run_id:
        return
    # Imported here: the launcher imports this module, and must start in milliseconds.
    from mlflow import MlflowClient  # noqa: PLC0415

    from steps.core.errors import ERROR_TAG, first_line  # noqa: PLC0415
    from steps.runtime.tracking import BOUNDED_RETRIES, server_problem  # noqa: PLC0415

    for variable, value in BOUNDED_RETRIES.items():
        os.environ.setdefault(variable, value)  # a server that is gone must not keep the launcher for minutes
    status, reason = signal_outcome(name)
    client = MlflowClient()
    try:
        run = client.get_run(run_id)
        if ERROR_TAG not in run.data.tags:
            client.set_tag(run_id, ERROR_TAG, f"{step}: {reason}")
        client.set_tag(run_id, SIGNAL_TAG, name)
        if run.info.status == "RUNNING":
            client.set_terminated(run_id, status)
    except Exception as exc:  # the tracking server went away, or refuses us: the exit status still fails the step
        logger.warning("%s: could not record that %s ended the step's process: %s", step, name, server_problem(exc) or first_line(exc))
