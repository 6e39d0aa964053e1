"""Stopping cleanly: SIGTERM, and the death of the process that launched us, act like Ctrl-C.

``mlflow run`` starts the driver, and the driver each step, as child processes in one process
group. Ctrl-C reaches all of them as SIGINT (Python's KeyboardInterrupt), and every level marks
its run KILLED on the way out. SIGTERM, which schedulers and ``kill`` send, would end a Python
process on the spot and leave its run RUNNING; and a SIGTERM (or SIGKILL) sent to the
``mlflow run`` process alone would leave the driver and the running step going on without it.
:func:`stop_like_ctrl_c` makes SIGTERM raise KeyboardInterrupt too and, on Linux, asks the kernel
to send this process SIGTERM when its parent dies.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from steps.core.errors import ERROR_TAG
from steps.runtime.tracking import BOUNDED_RETRIES

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>
# How long the watcher started by keep_killed_after_parent_exits waits for `mlflow run` to exit.
WATCH_SECONDS = 120.0


class Stopped(KeyboardInterrupt):
    """A stop request (SIGTERM, or the launching process died), handled like Ctrl-C."""


def _raise_stopped(signum: int, frame: FrameType | None) -> None:
    del frame
    # Cleanup that follows must not be cut short by the next signal (Ctrl-C reaches every process
    # of the group, and `mlflow run` also terminates its child when interrupted).
    ignore_stop_signals()
    raise Stopped(f"stopped by {signal.Signals(signum).name}")


def ignore_stop_signals() -> None:
    """Ignore SIGINT and SIGTERM from now on: the process is already stopping."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)


# The process that started this one, as it was when stop_like_ctrl_c was called.
_launcher: dict[str, int] = {}


def stop_like_ctrl_c(*, with_parent: bool = True) -> None:
    """SIGINT and SIGTERM raise :class:`Stopped` (once); on Linux, so does the parent's death.

    ``with_parent=False`` leaves out the latter (for a process whose parent may outlive it).
    """
    _launcher["pid"] = os.getppid()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _raise_stopped)
    if with_parent and sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            logger.warning("cannot ask to be stopped with the parent process (prctl errno %d)", ctypes.get_errno())
        elif os.getppid() != _launcher["pid"]:
            raise Stopped("stopped: the launching process was gone already")


@contextmanager
def stop_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then act on them.

    For a few writes that must not be cut in half (moving an alias and recording why). Only the
    main thread can handle signals; elsewhere the block runs as is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    for signum in previous:
        signal.signal(signum, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if received:
            os.kill(os.getpid(), received[0])  # now handled as usual (raises Stopped, or ignored)


def keep_killed_after_parent_exits(run_id: str, error_prefix: str) -> None:
    """Put KILLED back on ``run_id`` after ``mlflow run`` (our parent process) overwrites it.

    Interrupted by Ctrl-C, ``mlflow run`` waits for this process to exit and then marks the run
    FAILED "unless it is already terminated", but its check compares a status name with status
    numbers (``mlflow.projects._maybe_set_run_terminated`` in MLflow 3.17), so it always
    overwrites. A small detached process waits for ``mlflow run`` to exit and restores KILLED on a
    run that still carries our ``error_prefix``. Nothing to do when the parent has already died.
    """
    parent = os.getppid()
    if parent != _launcher.get("pid"):
        return  # reparented: `mlflow run` is gone and overwrites nothing
    subprocess.Popen(
        [sys.executable, "-m", "steps.runtime.signals", run_id, str(parent), error_prefix],
        cwd=Path(__file__).resolve().parents[2],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a second Ctrl-C does not stop it
    )


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # an exited process waiting to be reaped counts as gone


def _restore_killed(argv: Sequence[str]) -> int:
    run_id, pid, error_prefix = argv[0], int(argv[1]), argv[2]
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)  # the driver ignored them while stopping; we may be stopped
    for name, value in BOUNDED_RETRIES.items():
        os.environ.setdefault(name, value)  # a server that is gone must not keep us for minutes
    deadline = time.monotonic() + WATCH_SECONDS
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    from mlflow import MlflowClient  # noqa: PLC0415 - only this watcher needs it

    client = MlflowClient()
    run = client.get_run(run_id)
    if run.info.status == "FAILED" and run.data.tags.get(ERROR_TAG, "").startswith(error_prefix):
        client.set_terminated(run_id, "KILLED", end_time=run.info.end_time)
    return 0


if __name__ == "__main__":
    sys.exit(_restore_killed(sys.argv[1:]))
