"""``cutout``: Cutout (DeVries and Taylor 2017) as a defense baseline against availability poisons (APBench's
``cutout``, side 16 on 32×32 CIFAR-10): zero one random square of every training image."""

from __future__ import annotations

import torch

from delusive import runtime
from delusive.defenses.checks import _ce, _check, _is_int
from delusive.defenses.objective import OBJECTIVES, Objective, StepOutput
from delusive.threat import ThreatModel


def cutout_mask(n: int, h: int, w: int, size: int, generator: torch.Generator,
                device: torch.device) -> torch.Tensor:
    """N×1×H×W mask, 0 inside a ``size``×``size`` square around a uniform centre per image (clipped at the
    border, as the original: the centre may lie anywhere, so a square can be partly outside), 1 elsewhere."""
    cy = runtime.randint(0, h, n, generator, device)
    cx = runtime.randint(0, w, n, generator, device)
    rows = runtime.arange(h, device).view(1, h, 1)
    cols = runtime.arange(w, device).view(1, 1, w)
    lo_y, lo_x = (cy - size // 2).view(n, 1, 1), (cx - size // 2).view(n, 1, 1)
    hi_y, hi_x = (cy + size // 2).view(n, 1, 1), (cx + size // 2).view(n, 1, 1)  # exclusive, as the original
    inside = (rows >= lo_y) & (rows < hi_y) & (cols >= lo_x) & (cols < hi_x)
    return (~inside).to(torch.float32).unsqueeze(1)


@OBJECTIVES.register("cutout")
class Cutout(Objective):
    """Cutout: each training image has a ``size``×``size`` square (default 16, the paper's CIFAR-10 setting;
    scale it with the image) zeroed at a uniformly random centre, then plain CE."""

    name = "cutout"
    needs_threat = False

    def __init__(self, threat: ThreatModel | None = None, size: int = 16) -> None:
        super().__init__(threat)
        _check(self.name, _is_int(size) and size >= 1, "size", "an integer >= 1", size)
        self.size = int(size)

    def cut(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, _, h, w = x.shape
        return x * cutout_mask(n, h, w, self.size, generator, x.device).to(x.dtype)

    def loss(self, model, x, y, idx, generator):  # type: ignore[no-untyped-def]
        logits = model(self.cut(x, generator))
        return StepOutput(_ce(logits, y), logits)
