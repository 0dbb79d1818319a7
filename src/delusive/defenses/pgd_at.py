"""``pgd_at``: PGD adversarial training (Madry et al. 2018), minimising the adversarial risk (Eq. 2); by
Theorem 1 it bounds the natural risk on the clean distribution when the training data sits within the
defender's ε of it."""

from __future__ import annotations

import math

import torch
from torch import nn

from delusive.defenses.checks import _ce, _check_pgd
from delusive.defenses.objective import OBJECTIVES, Objective, StepOutput, scaled_threat
from delusive.perturb import pgd
from delusive.runtime import eval_mode
from delusive.threat import ThreatModel


@OBJECTIVES.register("pgd_at")
class PGDAT(Objective):
    """PGD adversarial training (Madry et al. 2018) as in the reference: K ≥ 1 steps of ``rel_step_size``·ε
    from one random start, attack with the model in eval mode, CE on the adversarial examples only.

    Like every adversarial objective it follows the AT recipe's per-iteration ε ramp (defenses/recipe.py).
    ``eps_warmup`` (a fraction of training, default 0: off) is the older per-epoch ramp — epoch e of E trains
    at ε·min(1, (e+1)/⌈warmup·E⌉) — kept so the measurements that used it stay reproducible; it multiplies
    with the recipe's ramp."""

    name = "pgd_at"
    at_recipe = True

    def __init__(self, threat: ThreatModel | None, steps: int = 7, rel_step_size: float = 0.2,
                 random_start: bool = True, eps_warmup: float = 0.0) -> None:
        super().__init__(threat)
        _check_pgd(self.name, steps, rel_step_size)
        if isinstance(eps_warmup, bool) or not isinstance(eps_warmup, int | float) or not 0 <= eps_warmup <= 1:
            raise ValueError(f"defense 'pgd_at': eps_warmup must be a fraction in [0, 1], got {eps_warmup!r}")
        self.steps, self.rel_step_size, self.random_start = int(steps), float(rel_step_size), bool(random_start)
        self.eps_warmup = float(eps_warmup)

    def current_threat(self) -> ThreatModel:
        """The threat model of the current epoch (the full ball, or a smaller one during the warm-up)."""
        threat = super().current_threat()
        if self.eps_warmup <= 0:
            return threat
        ramp = max(1, math.ceil(self.eps_warmup * self.epochs))
        factor = min(1.0, (self.epoch + 1) / ramp)
        return threat if factor >= 1 else scaled_threat(threat, factor)

    def adversarial(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                    generator: torch.Generator) -> torch.Tensor:
        assert self.threat is not None
        with eval_mode(model):
            res = pgd(model, x, y, self.current_threat(), steps=self.steps, rel_step_size=self.rel_step_size,
                      random_start=self.random_start, generator=generator, final_eval=False)
        return res.x_adv

    def loss(self, model, x, y, idx, generator):  # type: ignore[no-untyped-def]
        logits = model(self.adversarial(model, x, y, generator))
        return StepOutput(_ce(logits, y), logits)

