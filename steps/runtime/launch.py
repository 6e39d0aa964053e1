"""Start a step: in the pipeline's warm process when the driver runs one, else in this process.

Every MLproject entry point's command is ``python -m steps <entry point> <arguments>``, which lands
here. Under a driver (``main``, ``sweep``), the environment names a warm process
(steps/runtime/warm.py) that has already imported MLflow, pandas, scikit-learn and the steps: this
process hands it its arguments, environment, working directory and standard streams, waits for the
step to finish there, and exits with its status (after recording on the step's run the signal
that ended it, if one did: steps/runtime/exits.py). That saves each step the 2-3 s of starting Python
and importing those libraries. Run alone (``mlflow run . -e train ...``), with ``PIPELINE_WARM=0``,
when the warm process cannot be reached, or when it declines the step (its code or its import-time
environment differ from the step's), the step runs here as before. docs/warm-process.md explains it.

This module imports only the standard library: it must start in milliseconds (MLflow only to record a killed step).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType

from steps.runtime.exits import record_signal

logger = logging.getLogger(__name__)

# Set by the driver: ``<address>#<token>`` of its warm process's Unix socket.
WARM_SOCKET_ENV = "PIPELINE_WARM_SOCKET"
# The switch: 0, false, no or off (any case) and the driver starts no warm process, and launchers
# do not look for one: every step runs in its own process. Unset or anything else: on.
WARM_SWITCH_ENV = "PIPELINE_WARM"
WARM_OFF_VALUES = frozenset({"0", "false", "no", "off"})
# At most this many variable names in the line saying why the warm process declined a step.
MAX_NAMES_SHOWN = 8
STEP_NAMES = ("ingest", "featurize", "train", "evaluate", "register", "rollback", "predict", "compare", "schema")
# Entry points that drive steps (run in this process, with a warm process for their steps): their modules.
DRIVERS = {"main": "main", "sweep": "steps.sweep"}
ENTRY_POINTS = (*DRIVERS, *STEP_NAMES)
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in ENTRY_POINTS:
        sys.stderr.write(f"error: usage: python -m steps <{'|'.join(ENTRY_POINTS)}> [arguments]; got {args[:1]}\n")
        sys.exit(2)
    step, step_args = args[0], args[1:]
    if step in DRIVERS:
        sys.exit(run_driver(DRIVERS[step], step_args))
    address = os.environ.get(WARM_SOCKET_ENV, "").partition("#")[0] if warm_enabled() else ""
    if address:
        status = run_in_warm_process(address, step, step_args)
        if status is not None:
            sys.exit(status)
    importlib.import_module(f"steps.{step}").main(step_args)


def warm_enabled() -> bool:
    """Whether steps may run in a warm process: not when PIPELINE_WARM is 0, false, no or off."""
    return os.environ.get(WARM_SWITCH_ENV, "").strip().lower() not in WARM_OFF_VALUES


def run_driver(module: str, args: Sequence[str]) -> int:
    """A driver (main.py, steps/sweep.py), with the warm process started first, so that its imports
    run on another core while the driver's own imports and cache lookups do."""
    warm = None if os.environ.get(WARM_SOCKET_ENV) or not warm_enabled() else WarmProcess(PROJECT_ROOT)
    if warm is not None:
        os.environ[WARM_SOCKET_ENV] = warm.environment_value
    try:
        return importlib.import_module(module).main(args)
    finally:
        if warm is not None:
            warm.stop()
            os.environ.pop(WARM_SOCKET_ENV, None)


def run_in_warm_process(address: str, step: str, args: Sequence[str]) -> int | None:
    """Run ``step`` in the warm process at ``address``; its exit status, or None if unreachable."""
    try:
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.connect(socket_address(address))
    except OSError:
        return None
    with connection:
        request = {"step": step, "args": list(args), "argv0": sys.argv[0], "cwd": os.getcwd(), "env": dict(os.environ)}
        try:
            socket.send_fds(connection, [json.dumps(request).encode() + b"\n"], [0, 1, 2])
            reader = connection.makefile("r", encoding="utf-8")
            started = reader.readline()
        except OSError:
            return None
        if not started:
            return None  # refused (wrong token), or the warm process went away before starting the step
        reply = json.loads(started)
        if "refused" in reply:
            _log_refusal(step, reply)
            return None
        worker = int(reply["pid"])

        def forward(signum: int, frame: FrameType | None) -> None:
            del frame
            with contextlib.suppress(OSError):  # already gone
                os.kill(worker, signum)

        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, forward)
        finished = reader.readline()
        for signum in (signal.SIGINT, signal.SIGTERM):
            # The step has ended: nothing to forward to (its pid may be reused), and the short
            # record below, if any, is not to be cut in half.
            signal.signal(signum, signal.SIG_IGN)
    if not finished:
        return 1  # the warm process died while the step ran; the driver reports the step failed
    ended = json.loads(finished)
    if "signal" in ended:
        # Killed or crashed: the step recorded nothing, and only this process learns how it ended.
        record_signal(step, str(ended["signal"]))
    return int(ended["status"])


def _log_refusal(step: str, reply: dict) -> None:
    """One line on why the warm process declined ``step`` (which then runs in this process)."""
    names = [str(name) for name in reply.get("variables", [])]
    if not names:
        logger.info("%s runs in its own process: %s", step, reply["refused"])
        return
    shown = ", ".join(names[:MAX_NAMES_SHOWN]) + (f" and {len(names) - MAX_NAMES_SHOWN} more" if len(names) > MAX_NAMES_SHOWN else "")
    logger.warning("%s runs in its own process: the warm process was started with other values of %s", step, shown)


def socket_address(address: str) -> str:
    """``@name`` is a Linux abstract socket (no file); anything else a path."""
    return "\0" + address[1:] if address.startswith("@") else address


class WarmProcess:
    """The driver's handle on its warm process (steps/runtime/warm.py).

    With PIPELINE_WARM off it starts nothing: ``environment_value`` is empty and ``pid`` None, so
    launchers run their steps themselves.
    """

    def __init__(self, project_dir: Path):
        self._directory = None
        self._process: subprocess.Popen | None = None
        self.environment_value = ""
        if not warm_enabled():
            return
        if sys.platform.startswith("linux"):
            address = f"@mlflow-pipeline-{secrets.token_hex(8)}"
        else:
            self._directory = tempfile.mkdtemp(prefix="pipeline-")  # private (0700)
            address = str(Path(self._directory) / "warm.sock")
        token = secrets.token_hex(16)
        # The token goes through a pipe to the warm process's stdin, not its command line (which
        # any user sees in ps) nor its environment (which stays readable in /proc/<pid>/environ of
        # the warm process and of every child it forks, even after it is removed from os.environ).
        # env: os.environ, from which mlflow.run makes each step's environment too (without it, the
        # process's C environment, which may differ: readline, once imported, adds LINES and COLUMNS).
        self._process = subprocess.Popen(
            [sys.executable, "-m", "steps.runtime.warm", address], cwd=project_dir, env=dict(os.environ), stdin=subprocess.PIPE
        )
        with contextlib.suppress(OSError), self._process.stdin as pipe:  # it died at once: the launchers find no socket
            pipe.write(f"{token}\n".encode())
        self.environment_value = f"{address}#{token}"

    @property
    def pid(self) -> int | None:
        """The warm process's pid; None when PIPELINE_WARM is off."""
        return self._process.pid if self._process is not None else None

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._directory:
            with contextlib.suppress(OSError):
                Path(self._directory, "warm.sock").unlink(missing_ok=True)
                os.rmdir(self._directory)
        if os.environ.get(WARM_SOCKET_ENV) == self.environment_value:
            os.environ.pop(WARM_SOCKET_ENV)


def ensure_warm_process(project_dir: Path) -> WarmProcess | None:
    """Start a warm process for this driver's steps unless one already serves them (the driver's
    launcher starts one for the whole run); the caller stops the one this returns."""
    if os.environ.get(WARM_SOCKET_ENV) or not warm_enabled():
        return None
    process = WarmProcess(project_dir)
    os.environ[WARM_SOCKET_ENV] = process.environment_value
    return process


@contextlib.contextmanager
def warm_process(project_dir: Path) -> Iterator[WarmProcess]:
    process = WarmProcess(project_dir)
    try:
        yield process
    finally:
        process.stop()


if __name__ == "__main__":
    main()
