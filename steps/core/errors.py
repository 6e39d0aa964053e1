"""Errors the pipeline reports to users as one clear line instead of a traceback."""

from __future__ import annotations

import re

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
