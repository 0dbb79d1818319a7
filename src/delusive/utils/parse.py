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


MAX_EPS = 1e6  # any larger ε overflows the float32 arithmetic of the attacks (and no [0, 1] image needs it)


def parse_budget(norm: str, eps: str | float | int, name: str = "eps") -> float:
    """ε of a threat model, checked the same way wherever it comes from (CLI option, spec, manifest).

    ``eps`` must parse (:func:`parse_fraction`), be finite and below ``MAX_EPS``; an ℓ∞ ε above 1 exceeds the
    whole [0, 1] pixel range, so it means nothing and is refused too. Raises ``ValueError`` naming ``name``,
    the value and what is allowed. ε = 0 is allowed here (callers may warn about it).
    """
    value = parse_fraction(eps, name)
    if not math.isfinite(value) or value >= MAX_EPS:
        raise ValueError(f"{name}: {eps} is not a usable budget (must be finite and below 1e6)")
    if str(norm) == "linf" and value > 1:
        raise ValueError(f"{name}: {eps} exceeds 1, the whole [0, 1] pixel range of an linf budget")
    return value


MAX_SEED = 2**63 - 1  # torch.manual_seed and the 64-bit seed of every generator


def check_seed(value: object, name: str = "seed") -> int:
    """A seed: an integer (not a boolean) in [0, 2^63 - 1]; anything else is a ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise ValueError(f"{name}: expected integers in [0, 2^63 - 1], got {value!r}")
    return value
