"""Parsing of user-given numbers such as budgets written as fractions (``8/255``)."""

from __future__ import annotations

import math
import re

_NUMBER = r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
_FRACTION = re.compile(rf"^\s*{_NUMBER}\s*(?:/\s*{_NUMBER})?\s*$")


def parse_fraction(value: str | float | int, name: str = "value") -> float:
    """Parse ``0.5``, ``8/255`` or a number into a non-negative finite float.

    Raises ``ValueError`` naming ``name``, the bad value and what is allowed.
    """
    if isinstance(value, bool):
        raise ValueError(f"{name}: expected a number or a fraction like 8/255, got {value!r}")
    if isinstance(value, int | float):
        out = float(value)
    else:
        m = _FRACTION.match(str(value))
        if not m:
            raise ValueError(f"{name}: expected a number or a fraction like 8/255, got {value!r}")
        num = float(m.group(1))
        den = float(m.group(2)) if m.group(2) is not None else 1.0
        if den == 0:
            raise ValueError(f"{name}: division by zero in {value!r}")
        out = num / den
    if not math.isfinite(out) or out < 0:
        raise ValueError(f"{name}: must be a finite number >= 0, got {value!r}")
    return out
