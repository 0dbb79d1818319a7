"""Hyper-parameter validation shared by every defense, so each refuses bad params in one style
(``defense 'fat': steps must be an integer >= 1, got 0``), and the step-size convention of the AT variants.

Every objective's keyword defaults are its original paper's CIFAR-10 settings, with absolute step sizes
turned into fractions of ε; ``docs/defenses.md`` lists each default with its source.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

#: Step size of the TRADES, FAT and GAIRAT CIFAR-10 scripts (0.007 at ε = 0.031), as a fraction of ε.
ORIGINAL_REL_STEP = 0.007 / 0.031


def _check(name: str, ok: bool, option: str, allowed: str, value: Any) -> None:
    if not ok:
        raise ValueError(f"defense {name!r}: {option} must be {allowed}, got {value!r}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _check_pgd(name: str, steps: Any, rel_step_size: Any, min_steps: int = 1) -> None:
    """PGD-based AT needs at least one step: with 0 steps (and no start) it trains on the clean inputs,
    which is standard training under another name, not adversarial training (Madry et al. 2018)."""
    _check(name, _is_int(steps) and steps >= min_steps, "steps", f"an integer >= {min_steps}", steps)
    _check(name, _is_number(rel_step_size) and rel_step_size > 0, "rel_step_size", "a finite number > 0",
           rel_step_size)


def _ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), y)
