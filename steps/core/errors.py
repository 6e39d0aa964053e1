"""Errors the pipeline reports to users as one clear line instead of a traceback."""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable, Iterator

# The run tag that holds a failed or stopped run's one-line reason.
ERROR_TAG = "pipeline.error"


class PipelineError(Exception):
    """A problem the user can fix: bad configuration, bad data or a missing input.

    The message is one line that names the file, column or parameter and the problem.
    """


class ConfigError(PipelineError):
    """The configuration (conf/*.yaml or a -P parameter) is invalid."""


class DataError(PipelineError):
    """The dataset does not satisfy the schema."""


class InputError(PipelineError):
    """A step input (an artifact URI or a file) is missing or unreadable."""


class StorageError(PipelineError):
    """A file or store cannot be written: the disk is full, read-only, over quota, or not ours to write."""


# The OSErrors of the environment rather than of the code, as the error line says them ({}: where).
_STORAGE_PROBLEMS = {
    errno.ENOSPC: "no space left on device writing {}",
    errno.EDQUOT: "disk quota exceeded writing {}",
    errno.EROFS: "read-only file system: cannot write {}",
    errno.EACCES: "permission denied on {}",
}


def storage_error(exc: BaseException, store: str | Callable[[], str]) -> StorageError | None:
    """``exc`` as one line if it is (or was raised from) a full, read-only or forbidden disk; None for any other error.

    The line names the file the error names (for a copy, its destination), else ``store`` (e.g.
    "the artifact store <uri>", or a function that says it, called only then): a write that fails
    midway on a full disk names no file.
    """
    for cause in _causes(exc):
        if isinstance(cause, OSError) and cause.errno in _STORAGE_PROBLEMS:
            path = cause.filename2 or cause.filename
            named = isinstance(path, str | bytes | os.PathLike)  # not a file descriptor
            where = os.fsdecode(path) if named else store() if callable(store) else store
            return StorageError(_STORAGE_PROBLEMS[cause.errno].format(where))
    return None


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling (unless ``from None``), each once."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)


# user:password@ (or token@) in a URL: MLflow's messages quote the full tracking URI.
_URL_CREDENTIALS = re.compile(r"(?<=://)[^/\s@]+@")


def redact(text: str) -> str:
    """``text`` without credentials embedded in URLs (``http://user:pass@host`` -> ``http://host``)."""
    return _URL_CREDENTIALS.sub("", text)


def first_line(text: object) -> str:
    """The first non-empty line of ``text``, without credentials in URLs (messages and error tags stay one line)."""
    return redact(next((line.strip() for line in str(text).splitlines() if line.strip()), ""))


def describe(exc: BaseException) -> str:
    """One line saying what ``exc`` was: its first line, or its type when it has no message."""
    return first_line(exc) or type(exc).__name__
