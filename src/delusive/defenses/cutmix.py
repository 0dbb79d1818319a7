"""``cutmix``: CutMix (Yun et al., ICCV 2019) as a defense baseline against availability poisons (APBench's
``cutmix``): paste a random box of another example into each image and mix the labels by area."""

from __future__ import annotations

import math

import torch

from delusive import runtime
from delusive.defenses.checks import _check, _is_number
from delusive.defenses.mixup import draw_beta, mixed_ce
from delusive.defenses.objective import OBJECTIVES, Objective, StepOutput
from delusive.threat import ThreatModel


def cut_box(h: int, w: int, lam: float, generator: torch.Generator) -> tuple[int, int, int, int]:
    """The box (y0, y1, x0, x1) of CutMix: sides H·√(1 − λ) and W·√(1 − λ) around a uniform centre, clipped."""
    cut = math.sqrt(1.0 - lam)
    ch, cw = int(h * cut), int(w * cut)
    cy = int(runtime.randint(0, h, (), generator))
    cx = int(runtime.randint(0, w, (), generator))
    y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
    x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
    return y0, y1, x0, x1


@OBJECTIVES.register("cutmix")
class CutMix(Objective):
    """CutMix: with probability ``prob`` per batch, λ ~ Beta(α, α), a random pairing π, and the box of
    :func:`cut_box` of x_π pasted into every x; λ is then corrected to the area actually kept,
    λ' = 1 − box area / (H·W), and the loss is λ'·CE(f(x̃), y) + (1 − λ')·CE(f(x̃), y_π). Otherwise plain CE.
    Defaults α = 1, ``prob`` = 0.5 (the authors' CIFAR command, ``--beta 1.0 --cutmix_prob 0.5``)."""

    name = "cutmix"
    needs_threat = False

    def __init__(self, threat: ThreatModel | None = None, alpha: float = 1.0, prob: float = 0.5) -> None:
        super().__init__(threat)
        _check(self.name, _is_number(alpha) and alpha > 0, "alpha", "a finite number > 0", alpha)
        _check(self.name, _is_number(prob) and 0 <= prob <= 1, "prob", "a number in [0, 1]", prob)
        self.alpha, self.prob = float(alpha), float(prob)

    def mix(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float, tuple[int, int, int, int] | None]:
        """(x̃, y, y_π, λ', box): the mixed batch, its label sets, the area-corrected λ' and the box (None:
        this batch was not mixed, λ' = 1)."""
        host = self.host_generator(generator)  # the batch's coin, λ and box are host values: drawn on the CPU
        if float(runtime.rand((), host)) >= self.prob:
            return x, y, y, 1.0, None
        lam = draw_beta(self.alpha, host)
        perm = runtime.randperm(x.shape[0], generator, x.device)
        h, w = x.shape[-2:]
        y0, y1, x0, x1 = cut_box(h, w, lam, host)
        xm = x.clone()
        xm[..., y0:y1, x0:x1] = x[perm][..., y0:y1, x0:x1]
        kept = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
        return xm, y, y[perm], kept, (y0, y1, x0, x1)

    def loss(self, model, x, y, idx, generator):  # type: ignore[no-untyped-def]
        xm, y_a, y_b, lam, _ = self.mix(x, y, generator)
        logits = model(xm)
        return StepOutput(mixed_ce(logits, y_a, y_b, lam), logits, {"lam": lam})
