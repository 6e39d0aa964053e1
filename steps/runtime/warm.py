"""The pipeline's warm process: the steps' libraries imported once, each step forked from it.

Starting a step's process costs 2-3 s before it does anything: the interpreter, then MLflow,
its SQL store, pandas, scikit-learn and skops. The driver's launcher (``python -m steps
main``) starts one warm process before the driver's own imports (a driver started otherwise
starts it when the first step must run); it imports all of that once and waits on a Unix socket. Each step's command
(steps/runtime/launch.py, started by ``mlflow.run`` as usual) connects, and the warm process forks a
child that takes over the launcher's standard streams, working directory, environment
(``MLFLOW_RUN_ID`` and the rest) and arguments, and runs the step; the launcher exits with the
child's status. The step's run, outputs, errors and exit status are those of a step started
from scratch; and a step killed by a signal (SIGKILL) has its run say so, which on its own it
could not: this process tells the launcher the signal, and the launcher records it
(steps/runtime/exits.py).

Stopping: a stop signal sent to the launcher is forwarded to the child; a launcher that dies
takes the child with it (SIGTERM, so its run ends KILLED); the warm process ends with the driver
(Linux: when the driver dies, too), and the child with the warm process.

Only a process of the same user that knows the address's token can start a step (the token
reaches the warm process on its stdin, never its command line or environment). A step is declined,
and its launcher runs it itself, when the project's code changed since the warm process started,
or when its environment differs from the one the warm process imported its libraries with in any
variable but RUN_TIME_VARIABLES: libraries read some variables once, at import (thread counts,
plugin and config paths), and a forked step would silently get the warm process's values.
``PIPELINE_WARM=0`` switches all of this off (steps/runtime/launch.py); docs/warm-process.md.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import secrets
import select
import signal
import socket
import struct
import sys
import time
import traceback
from collections.abc import Mapping, Sequence

from steps.runtime.exits import signal_name
from steps.runtime.launch import PROJECT_ROOT, STEP_NAMES, WARM_SOCKET_ENV, WARM_SWITCH_ENV, socket_address
from steps.runtime.signals import stop_like_ctrl_c

logger = logging.getLogger(__name__)

# Imported before the first step is served: MLflow's SQL stores (imported on first use
# otherwise) and the first step's libraries. The other steps' modules are imported while no
# step is waiting (or when a step asks for them first), so the first step starts early.
PRELOAD_FIRST = ("mlflow.store.tracking.sqlalchemy_store", "mlflow.store.model_registry.sqlalchemy_store", "steps.ingest")
PRELOAD_LATER = tuple(f"steps.{step}" for step in STEP_NAMES if step != "ingest")
# How often a running step's launcher is checked for having gone away.
POLL_SECONDS = 0.05
MAX_REQUEST_BYTES = 4 << 20
REQUEST_TIMEOUT_SECONDS = 5.0
# The variables in which a step's environment may differ from the warm process's start-up
# environment: each is set or changed for a step after the warm process started, and is read when
# the step runs, not at import (one exception, harmless, below). Any other difference declines the step.
RUN_TIME_VARIABLES = frozenset(
    {
        # Set by mlflow.run for each step (the step's own run, and where it is tracked); MLflow
        # reads them when the step starts its run and on each request.
        "MLFLOW_RUN_ID",
        "MLFLOW_EXPERIMENT_ID",
        "MLFLOW_TRACKING_URI",
        # Removed by the driver before it starts steps (mlflow.run refuses it beside an experiment
        # id: steps/orchestration/driver.py); read when a run starts.
        "MLFLOW_EXPERIMENT_NAME",
        # Set by the driver after its warm process started: this socket (read by the launcher only)
        # and the parent run (PARENT_RUN_ENV of steps/mlflow_io/step_run.py, read when a step fails).
        WARM_SOCKET_ENV,
        "PIPELINE_PARENT_RUN_ID",
        # The switch: read by the driver and the launcher only (a launcher with it off never asks).
        WARM_SWITCH_ENV,
        # Set by the driver once it has read -P verbose (after its warm process started): read
        # when a step configures its logging, and by MLflow when a run ends (its "View run" line).
        "PIPELINE_VERBOSE",
        "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT",
        # Set by MLflow in the driver when the driver imports it (after its warm process started),
        # removed when MLflow finds telemetry off. It only labels MLflow's usage telemetry, read
        # when MLflow is imported: a forked step's telemetry keeps the warm process's label.
        "_MLFLOW_TELEMETRY_SESSION_ID",
        # Set by the shell mlflow.run starts each step's command with (bash -c): the working
        # directory (the step gets the launcher's own with chdir), the nesting level and the
        # command's path; a non-interactive bash also drops an exported prompt. Nothing reads
        # them at import.
        "PWD",
        "SHLVL",
        "_",
        "PS1",
        "PS2",
    }
)


def serve(address: str, token: str, environment: Mapping[str, str] | None = None) -> None:
    """Listen on ``address``, import the steps' libraries, then run each requested step.

    ``environment``: the one the libraries are imported with (default: this process's, now).
    """
    environment = dict(os.environ if environment is None else environment)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_address(address))
    listener.listen(8)  # launchers may connect before the imports are done: they wait
    # The project's code as it is now: a step whose code changes after this is refused, and
    # its launcher runs the new code itself (the cache keys steps by the code on disk).
    code = _code_versions()
    for module in PRELOAD_FIRST:
        _preload(module)
    later = list(PRELOAD_LATER)
    while True:
        if later and not select.select([listener], [], [], 0)[0]:
            _preload(later.pop(0))  # nobody waiting: prepare the next steps
            continue
        connection, _ = listener.accept()
        with connection:
            _serve_one(listener, connection, token, code, environment)


def _preload(module: str) -> None:
    """Import ``module``; a module that fails to import is left to the step's own process,
    which reports the error as it would without the warm process."""
    try:
        importlib.import_module(module)
    except Exception:  # any import error: the step reports it itself
        logger.debug("warm process: cannot preload %s", module, exc_info=True)


def _code_versions() -> dict[str, tuple[int, int]]:
    """Modification time and size of each module of the project."""
    versions = {}
    for path in sorted(p for p in (PROJECT_ROOT / "steps").rglob("*") if p.suffix in (".py", ".j2")):
        with contextlib.suppress(OSError):
            stat = path.stat()
            versions[str(path.relative_to(PROJECT_ROOT))] = (stat.st_mtime_ns, stat.st_size)
    return versions


def differing_variables(requested: Mapping[str, str], started: Mapping[str, str], now: Mapping[str, str] | None = None) -> list[str]:
    """The names of the variables, but RUN_TIME_VARIABLES, set differently (or only) in one of the two.

    ``now``: the warm process's environment after its imports. A variable that an imported library
    set itself (MLflow sets KMP_DUPLICATE_LIB_OK and KMP_INIT_AT_FORK) is set the same way in a
    driver that imported it too, and a forked step has it anyway: it does not differ.
    """
    names = (requested.keys() | started.keys()) - RUN_TIME_VARIABLES
    current = started if now is None else now
    # Absent in one is None: a variable removed from the request differs unless the imports removed it too.
    return sorted(name for name in names if requested.get(name) not in (started.get(name), current.get(name)))


def _serve_one(
    listener: socket.socket, connection: socket.socket, token: str, code: dict[str, tuple[int, int]], environment: Mapping[str, str]
) -> None:
    if not _same_user(connection):
        return
    fds: list[int] = []
    try:
        connection.settimeout(REQUEST_TIMEOUT_SECONDS)  # a launcher sends its request at once
        message, fds, _, _ = socket.recv_fds(connection, MAX_REQUEST_BYTES, 3)
        while not message.endswith(b"\n") and len(message) < MAX_REQUEST_BYTES:
            more = connection.recv(MAX_REQUEST_BYTES)
            if not more:
                break
            message += more
        connection.settimeout(None)
        request = json.loads(message)
        presented = str(request["env"].get(WARM_SOCKET_ENV, "")).partition("#")[2]
        if not secrets.compare_digest(presented, token) or len(fds) != 3 or request["step"] not in STEP_NAMES:
            logger.warning("warm process: refused a request")
            return
        if _code_versions() != code:
            _reply(connection, {"refused": "the project's code changed since the warm process started"})
            return
        differing = differing_variables(request["env"], environment, os.environ)
        if differing:
            # Names only: the values may be secrets, and the launcher has its own anyway.
            _reply(connection, {"refused": "environment", "variables": differing})
            return
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            listener.close()
            connection.close()
            _run_step(request, fds)  # never returns
        _reply(connection, {"pid": pid})
        ended = _wait(pid, connection)
        with contextlib.suppress(OSError):
            _reply(connection, ended)
    except Exception:  # a bad request must not end the warm process
        logger.warning("warm process: ignored a malformed request")
    finally:
        for fd in fds:
            os.close(fd)


def _reply(connection: socket.socket, message: dict) -> None:
    connection.sendall(json.dumps(message).encode() + b"\n")


def _same_user(connection: socket.socket) -> bool:
    """Whether the peer runs as this process's user (Linux: SO_PEERCRED; elsewhere the socket's
    private directory already ensures it)."""
    if not hasattr(socket, "SO_PEERCRED"):
        return True
    credentials = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _, uid, _ = struct.unpack("3i", credentials)
    return uid == os.getuid()


def _run_step(request: dict, fds: Sequence[int]) -> None:
    """In the forked child: become the launcher's step process, run the step, exit with its status."""
    code = 1
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in fds:
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        # The launcher's program name (MLflow names a new run's source after it), then the arguments.
        sys.argv = [str(request.get("argv0", f"steps/{request['step']}.py")), *request["args"]]
        importlib.import_module(f"steps.{request['step']}").main(request["args"])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
        if not isinstance(exc.code, int | None):
            sys.stderr.write(f"{exc.code}\n")
    except BaseException:  # a bug in the step: its traceback, as the interpreter would print it
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _wait(pid: int, connection: socket.socket) -> dict[str, int | str]:
    """How the child ended: ``{"status": <exit status>}``, and ``"signal": <its name>`` if a signal
    ended it (the status is then 128 + its number, as a shell says). The launcher records the
    signal on the step's run, which the step, killed, could not (steps/runtime/exits.py).

    If the launcher goes away meanwhile (killed), the child is stopped too.
    """
    launcher_gone = False
    while True:
        done, wait_status = os.waitpid(pid, os.WNOHANG)
        if done:
            if os.WIFSIGNALED(wait_status):
                return {"status": 128 + os.WTERMSIG(wait_status), "signal": signal_name(os.WTERMSIG(wait_status))}
            return {"status": os.waitstatus_to_exitcode(wait_status)}
        if not launcher_gone and select.select([connection], [], [], POLL_SECONDS)[0]:
            if not connection.recv(1):
                launcher_gone = True
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGTERM)
        elif launcher_gone:
            time.sleep(POLL_SECONDS)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m steps.runtime.warm <address>``, the token on the first line of stdin."""
    environment = dict(os.environ)  # as started: before the steps' libraries are imported (some set variables)
    address = (sys.argv[1:] if argv is None else argv)[0]
    token = sys.stdin.readline().strip()
    devnull = os.open(os.devnull, os.O_RDONLY)  # the pipe is done with; nothing else reads stdin
    os.dup2(devnull, 0)
    os.close(devnull)
    if not token:
        logger.error("warm process: no token on stdin; not serving")
        sys.exit(2)
    # SIGTERM (from the driver, or on Linux the driver's death) ends it; Ctrl-C reaches the
    # whole process group and is for the step to handle.
    stop_like_ctrl_c()
    # It ends at once, also in the middle of an import (an exception raised there is printed as a
    # traceback); a step it forked follows it, by its own parent-death signal.
    signal.signal(signal.SIGTERM, _exit_now)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(KeyboardInterrupt):
        serve(address, token, environment)


def _exit_now(signum: int, frame: object) -> None:
    del frame
    os._exit(128 + signum)


if __name__ == "__main__":
    main()
