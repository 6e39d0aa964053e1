"""One pipeline at a time per tracking store, experiment and model on this machine.

Two overlapping runs of the same pipeline (a slow nightly run and the next one, a scheduler and a
person) would race for the cache and the registry. The driver holds an exclusive ``flock`` on a
lock file while it runs; the operating system releases it when the process ends in any way,
including SIGKILL, so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from steps.core.errors import PipelineError

logger = logging.getLogger(__name__)

POLL_SECONDS = 1.0


class PipelineBusyError(PipelineError):
    """Another run of the same pipeline holds the lock."""


def lock_path(tracking_uri: str, experiment_id: str, model_name: str) -> Path:
    """The lock file shared by every run of this pipeline against this store on this machine."""
    identity = hashlib.sha256(f"{tracking_uri.rstrip('/')}\n{experiment_id}\n{model_name}".encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"mlflow-pipeline-{identity}.lock"


def registry_lock_path(tracking_uri: str, model_name: str) -> Path:
    """The lock file that serialises alias changes of ``model_name`` in this store on this machine."""
    identity = hashlib.sha256(f"{tracking_uri.rstrip('/')}\nregistry\n{model_name}".encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"mlflow-pipeline-registry-{identity}.lock"


def _holder(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip() or "unknown"
    except OSError:
        return "unknown"


@contextmanager
def pipeline_lock(
    path: Path,
    holder: str,
    overlap: str,
    max_wait_seconds: float,
    *,
    what: str = "run of this pipeline",
    limit: str = "run.max_wait_seconds",
) -> Iterator[None]:
    """Hold the lock at ``path``; ``overlap`` says what to do when another run holds it.

    ``"fail"``: raise at once. ``"wait"``: wait up to ``max_wait_seconds`` (the setting named
    ``limit``), then raise. ``holder`` (e.g. the run id and pid) is written into the file for the
    other run's message; ``what`` names what holds the lock in messages.
    """
    try:
        # World-writable, so a person and the scheduler's service user share one lock.
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        with suppress(PermissionError):
            os.fchmod(fd, 0o666)  # the umask narrowed it; only the file's owner may widen it
    except OSError as exc:
        raise PipelineBusyError(f"cannot open the pipeline lock file {path}: {exc.strerror}") from None
    handle = os.fdopen(fd, "r+", encoding="utf-8")
    try:
        deadline = time.monotonic() + max_wait_seconds
        announced = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                other = _holder(path)
                if overlap == "fail":
                    raise PipelineBusyError(f"another {what} is in progress ({other}); run.overlap=fail, so this one stops") from None
                if time.monotonic() >= deadline:
                    raise PipelineBusyError(f"another {what} ({other}) still runs after {max_wait_seconds:g} s ({limit})") from None
                if not announced:
                    logger.warning("another %s is in progress (%s); waiting up to %g s", what, other, max_wait_seconds)
                    announced = True
                time.sleep(POLL_SECONDS)
        handle.seek(0)
        handle.truncate()
        handle.write(f"{holder}, pid {os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()  # releases the flock
