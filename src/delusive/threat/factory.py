"""Build a threat model from user-facing options (``--norm l2 --eps 8/255``)."""

from __future__ import annotations

import torch

from delusive.threat.balls import L2Ball, LinfBall, ThreatModel
from delusive.threat.l0 import L0Ball
from delusive.threat.masked import Masked
from delusive.utils import parse_fraction

NORMS = ("linf", "l2")
_ALIASES = {"linf": "linf", "l_inf": "linf", "inf": "linf", "li": "linf", "l2": "l2", "2": "l2"}


def make_threat(norm: str, eps: str | float, mask: torch.Tensor | None = None) -> ThreatModel:
    """``norm`` in {linf, l2}; ``eps`` a number or a fraction string; optional region ``mask``."""
    if str(norm).lower() == "l0":  # a pixel count (OPS); not offered as a --norm of attacks or defenses
        base0: ThreatModel = L0Ball(parse_fraction(eps, "eps"), eps if isinstance(eps, str) else repr(float(eps)))
        return Masked(base0, mask) if mask is not None else base0
    key = _ALIASES.get(str(norm).lower())
    if key is None:
        raise ValueError(f"norm: expected one of {', '.join(NORMS)}, got {norm!r}")
    eps_text = eps if isinstance(eps, str) else repr(float(eps))
    value = parse_fraction(eps, "eps")
    base: ThreatModel = LinfBall(value, eps_text) if key == "linf" else L2Ball(value, eps_text)
    return Masked(base, mask) if mask is not None else base


def _moving_dim(t: ThreatModel, dim: int) -> int:
    """How many of an input's ``dim`` coordinates ``t`` may move (all of them unless masked)."""
    if not isinstance(t, Masked):
        return dim
    per = t.mask.numel()
    return int(t.mask.sum()) * (dim // per) if per and dim % per == 0 else dim


def covers(defense: ThreatModel, attack: ThreatModel, dim: int) -> bool:
    """Whether the defender's ball contains the attacker's (Theorem 1 needs ε_defense ≥ ε_attack).

    Masks first: a masked defense covers only an attack whose mask lies inside its own (an unmasked attack
    only if the defense's mask is everything), since the attack can move pixels the defense holds fixed.
    Then the radii, over the d_a coordinates the attack may move: same norm, compare radii; ℓ∞ defense vs ℓ2
    attack: the ℓ2 ball of radius r lies in the ℓ∞ ball of r; ℓ2 defense vs ℓ∞ attack: the ℓ∞ ball of r on
    d_a coordinates lies in the ℓ2 ball of r·√d_a. An attack of radius 0 is covered by anything.
    """
    d = defense.base if isinstance(defense, Masked) else defense
    a = attack.base if isinstance(attack, Masked) else attack
    if a.eps == 0:
        return True
    if isinstance(defense, Masked):
        dm = defense.mask.bool()
        if isinstance(attack, Masked):
            try:
                dm_b, am_b = torch.broadcast_tensors(dm, attack.mask.bool())
            except RuntimeError:  # masks of incompatible shapes cannot be compared: do not claim cover
                return False
            if bool((am_b & ~dm_b).any()):
                return False
        elif not bool(dm.all()):
            return False
    tol = 1e-12
    if isinstance(a, L0Ball):  # k whole pixels, each anywhere in [0,1]^C (C <= 3): a radius-1 ℓ∞ or √(3k) ℓ2 ball
        return isinstance(d, LinfBall) and d.eps + tol >= 1 or isinstance(d, L2Ball) and d.eps + tol >= (3 * a.k) ** 0.5
    if isinstance(d, L0Ball):  # an ℓ0 defense covers only an ℓ0 attack of no more pixels
        return isinstance(a, L0Ball) and d.k >= a.k
    if isinstance(d, LinfBall):
        return d.eps + tol >= a.eps
    if isinstance(d, L2Ball) and isinstance(a, L2Ball):
        return d.eps + tol >= a.eps
    return d.eps + tol >= a.eps * _moving_dim(attack, dim) ** 0.5
