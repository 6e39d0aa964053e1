"""Errors the pipeline reports to users as one clear line instead of a traceback."""

from __future__ import annotations


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
