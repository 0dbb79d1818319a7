"""Training hyperparameters (SGD with momentum, weight decay, piecewise or cosine schedule)."""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field
from typing import Any

from delusive.runtime import PRECISIONS

SCHEDULES = ("piecewise", "cosine", "constant")


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser and schedule. Milestones are fractions of training: the reference's 100 and 125 of 150
    epochs are (2/3, 5/6); the rate is set per iteration from the fractional position, so short CPU runs get
    the same shape of schedule as long GPU runs."""

    epochs: int = 5
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "piecewise"
    milestones: tuple[float, ...] = (2 / 3, 5 / 6)
    gamma: float = 0.1
    seed: int = 0
    crop_padding: int = 0
    hflip: bool = False
    precision: str = "fp32"
    #: the adversarial-training recipe (defenses/recipe.py): ε grows linearly from 0 over this fraction of
    #: training, per iteration; None = the recipe's default for the objective (0 for non-adversarial ones)
    eps_ramp: float | None = None
    #: linear learning-rate warm-up over this fraction of training; None = the recipe's default
    lr_warmup: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._check_types()
        checks = [
            (self.epochs >= 1, "epochs", "an integer >= 1"),
            (self.batch_size >= 1, "batch_size", "an integer >= 1"),
            (self.lr > 0 and math.isfinite(self.lr), "lr", "a finite number > 0"),
            (0 <= self.momentum < 1, "momentum", "in [0, 1)"),
            (self.weight_decay >= 0 and math.isfinite(self.weight_decay), "weight_decay", "a finite number >= 0"),
            (self.schedule in SCHEDULES, "schedule", f"one of {', '.join(SCHEDULES)}"),
            (all(0 < m < 1 for m in self.milestones), "milestones", "fractions in (0, 1)"),
            (0 < self.gamma <= 1, "gamma", "in (0, 1]"),
            (self.crop_padding >= 0, "crop_padding", "an integer >= 0"),
            (self.precision in PRECISIONS, "precision", f"one of {', '.join(PRECISIONS)}"),
            (_fraction_or_none(self.eps_ramp), "eps_ramp", "a fraction of training in [0, 1) or null (default)"),
            (_fraction_or_none(self.lr_warmup), "lr_warmup", "a fraction of training in [0, 1) or null (default)"),
        ]
        for ok, name, allowed in checks:
            if not ok:
                raise ValueError(f"{name}: must be {allowed}, got {getattr(self, name)!r}")

    def _check_types(self) -> None:
        """Integers where the CLI takes integers, numbers where it takes numbers, whether the value came from an
        option or a spec (one validation path). YAML 1.1 reads ``1e-3`` (no dot) as text: such a numeric text
        is taken as the number it spells, as ``--lr 1e-3`` is."""
        for name in ("epochs", "batch_size", "seed", "crop_padding"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise ValueError(f"{name}: must be an integer, got {v!r}")
        for name in ("lr", "momentum", "weight_decay", "gamma"):
            v = getattr(self, name)
            if isinstance(v, str):
                try:
                    v = float(v)
                except ValueError:
                    raise ValueError(f"{name}: must be a number, got {getattr(self, name)!r}") from None
                object.__setattr__(self, name, v)
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                raise ValueError(f"{name}: must be a number, got {v!r}")
        if not all(isinstance(m, numbers.Real) and not isinstance(m, bool) for m in self.milestones):
            raise ValueError(f"milestones: must be fractions in (0, 1), got {self.milestones!r}")

    def lr_at(self, progress: float, step: float = 0.0) -> float:
        """Learning rate at ``progress`` ∈ [0, 1) of training: the schedule, times the linear warm-up factor
        ``min(1, (progress + step) / lr_warmup)`` (``step``: one iteration's share of training, so the first
        step of a warm-up does not train at rate 0)."""
        if self.schedule == "cosine":
            lr = self.lr * 0.5 * (1 + math.cos(math.pi * progress))
        elif self.schedule == "piecewise":
            lr = self.lr * self.gamma ** sum(progress >= m for m in self.milestones)
        else:
            lr = self.lr
        if self.lr_warmup:
            lr *= min(1.0, (progress + step) / self.lr_warmup)
        return lr

    def eps_scale_at(self, progress: float) -> float:
        """The ε-ramp factor at ``progress``: ε grows linearly from 0 to the full radius over ``eps_ramp``."""
        if not self.eps_ramp:
            return 1.0
        return min(1.0, progress / self.eps_ramp)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["milestones"] = list(self.milestones)
        return d


def _fraction_or_none(v: Any) -> bool:
    if v is None:
        return True
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and 0 <= v < 1
