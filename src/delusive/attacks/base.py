"""The attack interface and registry shared by P1-P5, L2C and the ``clean`` pseudo-attack (Section 4).

Every attack maps a clean training set to perturbed images with the same labels, inside the threat model;
it never sees a defense. A crafting model, where needed, is passed in (trained elsewhere and cached).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from delusive.data import ArrayDataset
from delusive.registry import Registry, check_params, hyperparameters
from delusive.threat import ThreatModel


@dataclass
class CraftResult:
    """Perturbed images (float32 in [0,1], N×C×H×W) and, for class-wise attacks, the K class perturbations."""

    x: np.ndarray
    class_deltas: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # manifest entries the attack adds (L2C: its generator)
    timing: dict[str, float] = field(default_factory=dict)  # seconds by phase (L2C: train_generator_s, generate_s)


def target_map(y: torch.Tensor, num_classes: int, shift: int = 1) -> torch.Tensor:
    """The deterministic target t(y) = (y + shift) mod K of P1 and P3 (the reference's shift is 1)."""
    return (y + shift) % num_classes


class Attack:
    """Base class. Subclasses declare hyperparameters as keyword defaults of ``__init__`` (the reference's
    values); ``craft`` returns the perturbed set. ``needs_model`` says whether a crafting model is required."""

    name: ClassVar[str] = ""
    needs_model: ClassVar[bool] = True
    classwise: ClassVar[bool] = False

    def craft(self, train: ArrayDataset, threat: ThreatModel, model: nn.Module | None, seed: int = 0,
              work_dir: str | Path | None = None) -> CraftResult:
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in hyperparameters(type(self))}


ATTACKS: Registry[type[Attack]] = Registry("attack")


def attack_names() -> list[str]:
    return ATTACKS.names()


def create_attack(name: str, **params: Any) -> Attack:
    """Build attack ``name``; unknown params are an error naming the allowed ones."""
    cls = ATTACKS.get(name)
    check_params("attack", name, cls, params)
    _check_param_types(name, cls, params)
    return cls(**params)


def _check_param_types(name: str, cls: type, params: dict[str, Any]) -> None:
    """A parameter whose default is an int must be an integer, one whose default is a float a finite number:
    ``--attack-param trials=abc`` is refused naming ``trials``, not with ``int()``'s own words."""
    import inspect
    import math
    import numbers

    defaults = {k: p.default for k, p in inspect.signature(cls).parameters.items()}
    for key, value in params.items():
        default = defaults.get(key)
        if isinstance(default, bool) or not isinstance(default, int | float):
            continue  # flags, names and paths: the attack checks them itself
        integral = isinstance(value, numbers.Integral) or isinstance(value, float) and value.is_integer()
        if isinstance(value, bool) or (isinstance(default, int) and not integral):
            raise ValueError(f"attack {name!r}: {key} must be an integer, got {value!r}"
                             if isinstance(default, int) else f"attack {name!r}: {key} must be a number, got {value!r}")
        if isinstance(default, float) and not (isinstance(value, numbers.Real) and math.isfinite(float(value))):
            raise ValueError(f"attack {name!r}: {key} must be a finite number, got {value!r}")
