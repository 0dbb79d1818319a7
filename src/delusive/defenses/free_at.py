"""``free_at``: "Adversarial training for free!" (Shafahi et al. 2019), one of the AT variants of the paper's
Table 2. It uses the loop's minibatch replay (:attr:`Objective.replays`) and checkpointed objective state (the
perturbation it carries across minibatches)."""

from __future__ import annotations

from typing import Any

import torch

from delusive.defenses.checks import _ce, _check, _check_pgd, _is_int
from delusive.defenses.objective import OBJECTIVES, Objective, StepOutput
from delusive.threat import ThreatModel


@OBJECTIVES.register("free_at")
class FreeAT(Objective):
    """"Adversarial training for free!" (Shafahi et al. 2019): every minibatch is replayed ``replays`` (m)
    times; each replay's single backward pass gives both the weight gradient (the loop's optimiser step)
    and the input gradient, which moves a perturbation δ ← Π(δ + α·dir(∇_δ CE)) with α = ``rel_step_size``·ε
    (the original: α = ε, m = 8 on CIFAR-10, m = 4 on ImageNet). δ starts at zero and is carried over to the
    next replay *and the next minibatch* (the original's global noise buffer); the loss is CE on clip(x + δ).

    Differences from the other objectives, both inherent to the method: the input gradient comes from the
    training forward pass, so the "attack" runs in train mode; and one epoch takes m optimiser steps per
    batch. The original divides the epoch count by m to keep the total cost of natural training; here
    ``epochs`` counts passes over the data, so give ``epochs / m`` for the original's budget.
    """

    name = "free_at"
    at_recipe = True

    def __init__(self, threat: ThreatModel | None, replays: int = 8, rel_step_size: float = 1.0) -> None:
        super().__init__(threat)
        _check(self.name, _is_int(replays) and replays >= 1, "replays", "an integer >= 1", replays)
        _check_pgd(self.name, 1, rel_step_size)  # one signed-gradient step per replay
        self.replays, self.rel_step_size = int(replays), float(rel_step_size)
        self._delta: torch.Tensor | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"delta": None if self._delta is None else self._delta.detach().clone().contiguous()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        d = state.get("delta")
        self._delta = None if d is None else d.clone()

    def _buffer(self, x: torch.Tensor) -> torch.Tensor:
        """The carried δ, sized for this batch (a larger batch gets zeros beyond the carried rows). A δ restored
        from a checkpoint (saved on the CPU) moves to the batch's device: a resumed run keeps its perturbation."""
        buf = self._delta
        if buf is not None and buf.device != x.device:
            buf = buf.to(device=x.device, dtype=x.dtype)
        if buf is None or buf.shape[1:] != x.shape[1:]:
            buf = torch.zeros_like(x, memory_format=torch.contiguous_format)
        if buf.shape[0] < x.shape[0]:
            buf = torch.cat([buf, buf.new_zeros((x.shape[0] - buf.shape[0], *buf.shape[1:]))])
        self._delta = buf
        return buf

    def loss(self, model, x, y, idx, generator):  # type: ignore[no-untyped-def]
        assert self.threat is not None
        threat, n = self.current_threat(), x.shape[0]
        buf = self._buffer(x)
        delta = buf[:n].detach().clone().requires_grad_(True)
        alpha = self.rel_step_size * threat.eps

        def carry(grad: torch.Tensor) -> None:
            # runs inside the loop's backward pass: the same gradient that updates the weights moves δ
            with torch.no_grad():
                buf[:n] = threat.project_delta(delta.detach() + alpha * threat.direction(grad.float()))

        delta.register_hook(carry)
        logits = model(torch.clamp(x + delta, 0.0, 1.0))
        return StepOutput(_ce(logits, y), logits)
