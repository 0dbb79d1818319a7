"""Robust error-minimizing noise, REM (Fu, He, Liu, Shen and Tao, ICLR 2022, "Robust Unlearnable Examples:
Protecting Data Against Adversarial Learning"; official code fshp971/robust-unlearnable-examples).

EM's noise stops working once the victim trains adversarially. REM solves the *min-min-max* problem

    min_θ E[ min_{‖δ‖≤ε} max_{‖ξ‖≤ρ_a} CE(f_θ(x + δ + ξ), y) ]

with the same alternation as EM (``attacks/em.py``), two things changed: the crafting model trains with PGD
adversarial training of radius ``adv_eps`` (ρ_a) on the perturbed data, and δ minimises the loss at the
*worst* ξ: each of δ's PGD steps first finds ξ by ``adv_steps`` of PGD ascent around x + δ (the same engine),
then takes the gradient at x + δ + ξ with ξ held fixed (Danskin's theorem). REM trains for a fixed number of
rounds (an adversarially trained model never reaches EM's 99% threshold). Both PGD runs take steps of ε/5 and
the inner one starts at random, as in the authors' scripts (δ: 10 steps of 1.6/255; ξ: 10 steps of 0.8/255
within 4/255). Fu et al. also average δ's gradient over random augmentations (expectation over transformation,
5 samples) and decay the model's learning rate; we do not (docs/attacks.md).
The defender's AT radius must exceed ρ_a for AT to undo the noise; the paper's default ρ_a = ε/2.
"""

from __future__ import annotations

import torch
from torch import nn

from delusive.attacks.base import ATTACKS
from delusive.attacks.em import MinMinAttack
from delusive.perturb import pgd
from delusive.threat import ThreatModel, make_threat
from delusive.utils import parse_fraction


class WorstCaseShift(nn.Module):
    """x ↦ f(x + ξ*(x)), ξ* = argmax_{‖ξ‖≤ρ} CE(f(x + ξ), y) found by PGD and held fixed (no gradient through
    it): the inner max of REM, so the engine's gradient w.r.t. x is the gradient at the worst case."""

    def __init__(self, model: nn.Module, threat: ThreatModel, steps: int, rel_step_size: float) -> None:
        super().__init__()
        self.model, self.threat, self.steps, self.rel_step_size = model, threat, steps, rel_step_size
        self.labels: torch.Tensor | None = None  # the batch's labels, set by the caller before each PGD run
        self.generator: torch.Generator | None = None  # set by the caller: the inner max then starts at random

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert self.labels is not None, "set labels before calling"
        with torch.enable_grad():
            xi = pgd(self.model, x.detach(), self.labels, self.threat, steps=self.steps,
                     rel_step_size=self.rel_step_size, maximize=True, random_start=self.generator is not None,
                     generator=self.generator, final_eval=False).x_adv - x.detach()
        return self.model(x + xi)


@ATTACKS.register("REM")
class REM(MinMinAttack):
    """Robust error-minimizing noise (sample-wise), with adversarial-training radius ``adv_eps`` (ρ_a)."""

    name = "REM"

    def __init__(self, arch: str = "resnet18", train_steps: int = 10, pgd_steps: int = 10, rel_step_size: float = 0.2,
                 batch_size: int = 128, lr: float = 0.1, stop_accuracy: float = 1.0, max_rounds: int = 500,
                 adv_eps: str = "4/255", adv_steps: int = 10, adv_rel_step_size: float = 0.2) -> None:
        super().__init__(arch, train_steps, pgd_steps, rel_step_size, batch_size, lr, stop_accuracy, max_rounds)
        if isinstance(adv_steps, bool) or int(adv_steps) != adv_steps or int(adv_steps) < 0:
            raise ValueError(f"adv_steps: must be a whole number >= 0, got {adv_steps!r}")
        if not float(adv_rel_step_size) > 0:
            raise ValueError(f"adv_rel_step_size: must be > 0, got {adv_rel_step_size!r}")
        self.adv_eps = str(adv_eps)
        value = parse_fraction(self.adv_eps, "adv_eps")
        if not 0 <= value < 1e6:
            raise ValueError(f"adv_eps: must be a finite number >= 0, got {adv_eps!r}")
        self.adv_steps, self.adv_rel_step_size = int(adv_steps), float(adv_rel_step_size)

    def _adv_threat(self, threat: ThreatModel) -> ThreatModel:
        return make_threat(threat.norm_name, self.adv_eps)

    def stop_rule(self) -> bool:
        return False

    def train_inputs(self, model, xp, y, threat, gen):  # type: ignore[no-untyped-def]
        """PGD adversarial training of radius ρ_a around the perturbed batch (random start, as Madry et al.)."""
        if self.adv_steps == 0 or parse_fraction(self.adv_eps, "adv_eps") == 0:
            return xp
        return pgd(model, xp, y, self._adv_threat(threat), steps=self.adv_steps, rel_step_size=self.adv_rel_step_size,
                   maximize=True, random_start=True, generator=gen, final_eval=False).x_adv

    def noise_model(self, model, threat):  # type: ignore[no-untyped-def]
        return WorstCaseShift(model, self._adv_threat(threat), self.adv_steps, self.adv_rel_step_size)
