"""Threat models: the sets a perturbation may live in (ℓ∞ ball, ℓ2 ball, region mask), intersected with [0,1]."""

from delusive.threat.balls import L2Ball, LinfBall, ThreatModel
from delusive.threat.defaults import DEFAULT_BUDGETS, default_budget
from delusive.threat.factory import NORMS, covers, make_threat
from delusive.threat.l0 import L0Ball
from delusive.threat.masked import Masked, half_mask

__all__ = [
    "DEFAULT_BUDGETS",
    "NORMS",
    "L0Ball",
    "L2Ball",
    "LinfBall",
    "Masked",
    "ThreatModel",
    "covers",
    "default_budget",
    "half_mask",
    "make_threat",
]
