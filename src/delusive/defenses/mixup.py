"""``mixup``: mixup (Zhang et al., ICLR 2018) as a defense baseline against availability poisons (APBench's
``mixup``): train on convex combinations of pairs of examples and of their labels."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from delusive import runtime
from delusive.defenses.checks import _check, _is_number
from delusive.defenses.objective import OBJECTIVES, Objective, StepOutput
from delusive.threat import ThreatModel


def draw_beta(alpha: float, generator: torch.Generator) -> float:
    """λ ~ Beta(α, α), seeded from ``generator`` (torch's Beta takes no generator: one integer drawn from it
    seeds a numpy generator, so the same loop generator gives the same λ). ``generator`` is a CPU generator
    (:meth:`Objective.host_generator`), so the draw never reads an accelerator."""
    seed = int(runtime.randint(0, 2**62, (), generator))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def mixed_ce(logits: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor, lam: float) -> torch.Tensor:
    """λ·CE(logits, y_a) + (1 − λ)·CE(logits, y_b), batch means (= CE against the mixed one-hot labels)."""
    z = logits.float()
    return lam * F.cross_entropy(z, y_a) + (1.0 - lam) * F.cross_entropy(z, y_b)


@OBJECTIVES.register("mixup")
class Mixup(Objective):
    """mixup: λ ~ Beta(α, α) per batch, a random pairing π of the batch, x̃ = λx + (1 − λ)x_π, loss
    λ·CE(f(x̃), y) + (1 − λ)·CE(f(x̃), y_π). Default α = 1 (the paper's CIFAR-10 setting, λ uniform).
    The logits returned (train accuracy) are those of the mixed inputs against the first labels."""

    name = "mixup"
    needs_threat = False

    def __init__(self, threat: ThreatModel | None = None, alpha: float = 1.0) -> None:
        super().__init__(threat)
        _check(self.name, _is_number(alpha) and alpha > 0, "alpha", "a finite number > 0", alpha)
        self.alpha = float(alpha)

    def mix(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        """(x̃, y, y_π, λ): the mixed batch, its two label sets and the drawn λ."""
        lam = draw_beta(self.alpha, self.host_generator(generator))
        perm = runtime.randperm(x.shape[0], generator, x.device)
        return lam * x + (1.0 - lam) * x[perm], y, y[perm], lam

    def loss(self, model, x, y, idx, generator):  # type: ignore[no-untyped-def]
        xm, y_a, y_b, lam = self.mix(x, y, generator)
        logits = model(xm)
        return StepOutput(mixed_ce(logits, y_a, y_b, lam), logits, {"lam": lam})
