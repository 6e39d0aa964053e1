"""Progress of long loops (large files, large splits), as log lines a few seconds apart.

Small inputs finish before the first report is due and print nothing; a step that reads ten
million rows says how far it is every few seconds and how long is left, in lines that read well
in a terminal, a scheduler's log file and CI output alike (no carriage returns, no bars).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)

# Seconds between two reports of the same task.
REPORT_SECONDS = 3.0
# From this many rows on, a fit is announced before it starts (scikit-learn reports nothing
# while it fits, which takes seconds at this size).
LARGE_FIT_ROWS = 1_000_000


def _amount(value: float, unit: str) -> str:
    if unit == "bytes":
        for scale, name in ((1 << 30, "GB"), (1 << 20, "MB"), (1 << 10, "kB")):
            if value >= scale:
                return f"{value / scale:.1f} {name}"
        return f"{value:.0f} bytes"
    return f"{value:,.0f} {unit}"


class Progress:
    """Reports ``done`` of ``total`` for the task ``what`` at most every ``every`` seconds.

    ``logger`` is the step's own, so the line carries the step's name like its other lines.
    """

    def __init__(self, what: str, total: float, unit: str = "rows", *, every: float = REPORT_SECONDS, log: logging.Logger = logger):
        self.what, self.total, self.unit, self.every, self.log = what, total, unit, every, log
        self.started = self.last = time.monotonic()
        self.reported = False

    def update(self, done: float) -> None:
        """``done`` of the total are done now (a count, not an increment)."""
        now = time.monotonic()
        if now - self.last < self.every or self.total <= 0:
            return
        self.last, self.reported = now, True
        elapsed = now - self.started
        fraction = min(1.0, done / self.total)
        left = f", ~{elapsed / fraction * (1 - fraction):.0f} s left" if fraction > 0 else ""
        self.log.info(
            "%s: %s of %s (%.0f%%), %.0f s%s",
            self.what,
            _amount(done, self.unit),
            _amount(self.total, self.unit),
            100 * fraction,
            elapsed,
            left,
        )

    def finish(self) -> None:
        """Close a task that was reported on (a short one stays silent)."""
        if self.reported:
            self.log.info("%s: done in %.0f s", self.what, time.monotonic() - self.started)


@contextmanager
def stage(what: str, *, log: logging.Logger = logger, min_seconds: float = 1.0) -> Iterator[None]:
    """Log ``<what>: <n> s`` after a stage of a step that took ``min_seconds`` or more (on large
    data a step is several such stages: read, check, split, write), so a long step is never
    silent for long; quick stages stay silent."""
    started = time.monotonic()
    yield
    elapsed = time.monotonic() - started
    if elapsed >= min_seconds:
        log.info("%s: %.1f s", what, elapsed)
