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


def covers(defense: ThreatModel, attack: ThreatModel, dim: int) -> bool:
    """Whether the defender's ball contains the attacker's (Theorem 1 needs ε_defense ≥ ε_attack).

    Same norm: compare radii. ℓ∞ defense vs ℓ2 attack: the ℓ2 ball of radius r lies in the ℓ∞ ball of r.
    ℓ2 defense vs ℓ∞ attack: the ℓ∞ ball of r lies in the ℓ2 ball of r·√dim. Masks compare their bases.
    """
    d = defense.base if isinstance(defense, Masked) else defense
    a = attack.base if isinstance(attack, Masked) else attack
    tol = 1e-12
    if isinstance(d, LinfBall):
        return d.eps + tol >= a.eps
    if isinstance(d, L2Ball) and isinstance(a, L2Ball):
        return d.eps + tol >= a.eps
    return d.eps + tol >= a.eps * dim**0.5
