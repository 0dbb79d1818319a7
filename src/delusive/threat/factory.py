"""Build a threat model from user-facing options (``--norm l2 --eps 8/255``)."""

from __future__ import annotations

import torch

from delusive.threat.balls import L2Ball, LinfBall, ThreatModel
from delusive.threat.masked import Masked
from delusive.utils import parse_fraction

NORMS = ("linf", "l2")
_ALIASES = {"linf": "linf", "l_inf": "linf", "inf": "linf", "li": "linf", "l2": "l2", "2": "l2"}


def make_threat(norm: str, eps: str | float, mask: torch.Tensor | None = None) -> ThreatModel:
    """``norm`` in {linf, l2}; ``eps`` a number or a fraction string; optional region ``mask``."""
    key = _ALIASES.get(str(norm).lower())
    if key is None:
        raise ValueError(f"norm: expected one of {', '.join(NORMS)}, got {norm!r}")
    eps_text = eps if isinstance(eps, str) else repr(float(eps))
    value = parse_fraction(eps, "eps")
    base: ThreatModel = LinfBall(value, eps_text) if key == "linf" else L2Ball(value, eps_text)
    return Masked(base, mask) if mask is not None else base
