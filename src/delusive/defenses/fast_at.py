"""``fast_at``: "Fast is better than free" (Wong et al. 2020), FGSM AT with a random start, one of the AT
variants of the paper's Table 2, with the original's catastrophic-overfitting check as a monitor."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from delusive import runtime
from delusive.defenses.checks import _ce, _check_pgd
from delusive.defenses.objective import OBJECTIVES, Objective, StepOutput
from delusive.perturb import pgd
from delusive.runtime import eval_mode
from delusive.threat import ThreatModel


class CatastrophicOverfittingWarning(UserWarning):
    """Fast AT's PGD accuracy on a training minibatch fell sharply: single-step AT has likely overfit."""


@OBJECTIVES.register("fast_at")
class FastAT(Objective):
    """"Fast is better than free" (Wong et al. 2020): CE on one FGSM step from a random start.

    x' = Π(x₀ + α·dir(∇ CE)), x₀ uniform in the ball (``random_start``; False is the zero start of plain
    FGSM, which Wong et al. show overfits catastrophically), α = ``rel_step_size``·ε = 1.25ε, Π the
    projection onto the ball and [0, 1]. These are the original's safeguards kept in the objective.

    ``overfit_check`` is the original's ``--early-stop`` as a monitor: at the first batch of every epoch
    after the first it measures PGD-5 accuracy (step ε/4, random start, an example stops once misclassified:
    the original's check with 2/255 at 8/255) on that batch in eval mode with its own generator (training
    is unchanged) and, when it fell by more than 0.2 since the previous check, warns
    (:class:`CatastrophicOverfittingWarning`) and records the epoch in ``overfit_epoch``. The loop cannot
    stop or roll back from an objective, so stopping early and keeping the previous epoch's weights (as the
    original does) is left to the user. The monitor's state is checkpointed, so a resumed run warns as an
    uninterrupted one would.
    """

    name = "fast_at"
    at_recipe = True

    def __init__(self, threat: ThreatModel | None, rel_step_size: float = 1.25, random_start: bool = True,
                 overfit_check: bool = False) -> None:
        super().__init__(threat)
        _check_pgd(self.name, 1, rel_step_size)  # FGSM: one step
        self.rel_step_size, self.random_start = float(rel_step_size), bool(random_start)
        self.overfit_check = bool(overfit_check)
        self.overfit_epoch: int | None = None
        self._check_pending = False
        self._prev_robust: float | None = None

    def begin_epoch(self, epoch: int, epochs: int) -> None:
        super().begin_epoch(epoch, epochs)
        self._check_pending = self.overfit_check and epoch > 0

    def loss(self, model, x, y, idx, generator):  # type: ignore[no-untyped-def]
        assert self.threat is not None
        stats: dict[str, float | torch.Tensor] = {}
        if self._check_pending:
            self._check_pending = False
            stats["pgd5_accuracy"] = self._monitor(model, x, y)
        with eval_mode(model):
            res = pgd(model, x, y, self.current_threat(), steps=1, rel_step_size=self.rel_step_size,
                      random_start=self.random_start, generator=generator, final_eval=False)
        logits = model(res.x_adv)
        return StepOutput(_ce(logits, y), logits, stats)

    def state_dict(self) -> dict[str, Any]:
        return {"prev_robust": self._prev_robust, "overfit_epoch": self.overfit_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._prev_robust = state.get("prev_robust")
        self.overfit_epoch = state.get("overfit_epoch")

    def _monitor(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
        assert self.threat is not None
        gen = runtime.generator(self.epoch, x.device)
        with eval_mode(model):
            res = pgd(model, x, y, self.threat, steps=5, rel_step_size=0.25, random_start=True, early_stop_tau=0,
                      generator=gen)
        acc = 1.0 - res.misclassified.float().mean().item()
        if self._prev_robust is not None and acc - self._prev_robust < -0.2 and self.overfit_epoch is None:
            self.overfit_epoch = self.epoch
            warnings.warn(f"fast_at: PGD-5 accuracy on a training batch fell from {self._prev_robust:.2f} after "
                          f"epoch {self.epoch - 1} to {acc:.2f} after epoch {self.epoch}: catastrophic "
                          f"overfitting (the original stops here and keeps the weights of epoch "
                          f"{self.epoch - 1}); consider fewer epochs or a smaller rel_step_size",
                          CatastrophicOverfittingWarning, stacklevel=3)
        self._prev_robust = acc
        return acc
