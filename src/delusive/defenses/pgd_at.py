"""``pgd_at``: PGD adversarial training (Madry et al. 2018), minimising the adversarial risk (Eq. 2); by
Theorem 1 it bounds the natural risk on the clean distribution when the training data sits within the
defender's ε of it."""

from __future__ import annotations

import torch
from torch import nn

from delusive.defenses.checks import _ce, _check_pgd
from delusive.defenses.objective import OBJECTIVES, Objective, StepOutput
from delusive.perturb import pgd
from delusive.runtime import eval_mode
from delusive.threat import ThreatModel


@OBJECTIVES.register("pgd_at")
class PGDAT(Objective):
    """PGD adversarial training (Madry et al. 2018) as in the reference: K ≥ 1 steps of ``rel_step_size``·ε
    from one random start, attack with the model in eval mode, CE on the adversarial examples only."""

    name = "pgd_at"

    def __init__(self, threat: ThreatModel | None, steps: int = 7, rel_step_size: float = 0.2,
                 random_start: bool = True) -> None:
        super().__init__(threat)
        _check_pgd(self.name, steps, rel_step_size)
        self.steps, self.rel_step_size, self.random_start = int(steps), float(rel_step_size), bool(random_start)

    def adversarial(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                    generator: torch.Generator) -> torch.Tensor:
        assert self.threat is not None
        with eval_mode(model):
            res = pgd(model, x, y, self.threat, steps=self.steps, rel_step_size=self.rel_step_size,
                      random_start=self.random_start, generator=generator, final_eval=False)
        return res.x_adv

    def loss(self, model, x, y, idx, generator):  # type: ignore[no-untyped-def]
        logits = model(self.adversarial(model, x, y, generator))
        return StepOutput(_ce(logits, y), logits)
