"""How values are written for people: cards, tables and summaries show numbers the same way."""

from __future__ import annotations

import math
import numbers
from typing import Any


def format_value(value: Any, digits: int = 4) -> str:
    """A number with ``digits`` significant digits (integers in full, with separators); else text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        value = float(value)
        if math.isnan(value):
            return "NaN"
        return f"{value:.{digits}g}"
    return str(value)
