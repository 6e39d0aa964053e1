"""How values are written for people: cards, tables, summaries and the gate's verdict show numbers
the same way, whether a number was just computed or read back from the tracking store."""

from __future__ import annotations

import math
import numbers
import sys
from typing import Any

# MLflow's SQL tracking stores cannot hold infinity: they keep an infinite metric as the largest
# float (and -inf as its negative). Read back, such a value is shown as the infinity it was, so
# that a summary built from the store says what the step that computed it said.
_STORED_INFINITY = sys.float_info.max


def format_value(value: Any, digits: int = 4) -> str:
    """A number with ``digits`` significant digits (integers in full, with separators); else text.

    NaN is ``NaN``; infinity (and the stores' stand-in for it) is ``inf`` or ``-inf``.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        return _real(float(value), digits)
    return str(value)


def _real(value: float, digits: int) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value) or abs(value) == _STORED_INFINITY:
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}g}"
