"""``trades``: TRADES (Zhang et al. 2019, "Theoretically principled trade-off between robustness and
accuracy"), one of the AT variants of the paper's Table 2. Its inner maximisation runs on the one PGD engine
(:func:`delusive.perturb.pgd`) with the model in eval mode, for any threat model (ℓ∞ and ℓ2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from delusive import runtime
from delusive.defenses.checks import ORIGINAL_REL_STEP, _ce, _check, _check_pgd, _is_number
from delusive.defenses.objective import OBJECTIVES, Objective, StepOutput
from delusive.perturb import pgd
from delusive.runtime import eval_mode
from delusive.threat import ThreatModel


def _kl_to(clean_probs: torch.Tensor):  # type: ignore[no-untyped-def]
    """Per-sample KL(p_clean ‖ p(x')) as a PGD loss (labels are ignored)."""

    def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.kl_div(F.log_softmax(logits.float(), dim=1), clean_probs, reduction="none").sum(1)

    return loss


@OBJECTIVES.register("trades")
class TRADES(Objective):
    """TRADES (Zhang et al. 2019): ``CE(f(x), y) + β·KL(f(x) ‖ f(x'))`` with x' maximising that KL.

    Inner maximisation: ``steps`` PGD steps of ``rel_step_size``·ε on the per-sample KL divergence between
    the clean prediction and the prediction at x', from x + ``init_std``·N(0, I); the attack (clean
    reference included) runs in eval mode. Outer loss, in train mode: CE on the clean batch plus β times
    the batch-mean KL between the clean and the adversarial softmax, with gradients through both (as in the
    original ``trades_loss``). Defaults: β = 6, 10 steps of 0.007 at ε = 0.031, init 0.001·N(0, I) — the
    original's CIFAR-10 script. β = 0 is standard training's loss. The logits returned are the clean ones.
    """

    name = "trades"
    at_recipe = True

    def __init__(self, threat: ThreatModel | None, beta: float = 6.0, steps: int = 10,
                 rel_step_size: float = ORIGINAL_REL_STEP, init_std: float = 0.001) -> None:
        super().__init__(threat)
        _check_pgd(self.name, steps, rel_step_size)
        _check(self.name, _is_number(beta) and beta >= 0, "beta", "a finite number >= 0", beta)
        _check(self.name, _is_number(init_std) and init_std >= 0, "init_std", "a finite number >= 0", init_std)
        self.beta, self.steps, self.rel_step_size = float(beta), int(steps), float(rel_step_size)
        self.init_std = float(init_std)

    def adversarial(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                    generator: torch.Generator) -> torch.Tensor:
        assert self.threat is not None
        with eval_mode(model):
            with torch.no_grad():
                clean_probs = F.softmax(model(x).float(), dim=1)
            noise = runtime.randn(x.shape, generator, x.device, x.dtype)
            res = pgd(model, x, y, self.current_threat(), steps=self.steps, rel_step_size=self.rel_step_size,
                      loss=_kl_to(clean_probs), x_init=x + self.init_std * noise, generator=generator, final_eval=False)
        return res.x_adv

    def loss(self, model, x, y, idx, generator):  # type: ignore[no-untyped-def]
        x_adv = self.adversarial(model, x, y, generator)
        logits = model(x)
        logits_adv = model(x_adv)
        natural = _ce(logits, y)
        robust = F.kl_div(F.log_softmax(logits_adv.float(), dim=1), F.softmax(logits.float(), dim=1),
                          reduction="batchmean")
        return StepOutput(natural + self.beta * robust, logits,
                          {"natural_loss": natural.detach(), "robust_kl": robust.detach()})
