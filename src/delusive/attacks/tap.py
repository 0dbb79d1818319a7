"""Targeted adversarial poisoning, TAP (Fowl, Goldblum, Chiang, Geiping, Czaja and Goldstein, NeurIPS 2021,
"Adversarial Examples Make Strong Poisons"; official code lhfowl/adversarial_poisons).

Every training image gets a targeted adversarial perturbation against a standard-trained crafting model:
δ_i = argmin_{‖δ‖≤ε} CE(f(x_i + δ), t(y_i)) with a fixed class permutation t(y) = (y + ``target_shift``) mod K,
found by PGD (the one engine, minimising toward t(y)). This is the paper's P1 (Tao et al.) plus what Fowl et al.
add: many more steps (250 on CIFAR-10) and *differentiable data augmentation* inside the attack, so the
perturbation survives the victim's augmentation: at every PGD step the model sees a randomly flipped
(per image) and translated (by up to ``max_shift`` pixels, one offset per step, zero-filled) copy of x + δ.
Fowl et al. optimise with signed Adam (their code's defaults: 250 iterations, τ = 0.1 with step decay, a Gaussian
start) and can ensemble restarts; we keep the engine's signed PGD steps of ``rel_step_size``·ε from the clean
image (docs/attacks.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from delusive import runtime
from delusive.attacks.base import ATTACKS, target_map
from delusive.attacks.per_sample import _PerSample
from delusive.utils.seeding import derive_seed


class RandomFlipShift(nn.Module):
    """model(aug(x)): each call flips every image left-right with probability ½ and translates the batch by a
    random (dy, dx) in [−s, s]² with zero fill, drawn from ``generator`` (differentiable in x)."""

    def __init__(self, model: nn.Module, max_shift: int, generator: torch.Generator) -> None:
        super().__init__()
        self.model, self.max_shift, self.generator = model, int(max_shift), generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flip = runtime.rand(x.shape[0], self.generator, x.device) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        s = self.max_shift
        if s > 0:
            dy, dx = (int(v) for v in runtime.randint(-s, s + 1, 2, self.generator, x.device).tolist())
            h, w = x.shape[-2:]
            padded = F.pad(x, (s, s, s, s))
            x = padded[..., s + dy:s + dy + h, s + dx:s + dx + w]
        return self.model(runtime.to_channels_last(x.contiguous()))


@ATTACKS.register("TAP")
class TAP(_PerSample):
    """Targeted adversarial poisons with differentiable flip + shift augmentation (Fowl et al. 2021)."""

    name = "TAP"

    def __init__(self, steps: int = 250, rel_step_size: float = 0.1, batch_size: int = 256,
                 random_start: bool = False, target_shift: int = 1, max_shift: int = 4) -> None:
        super().__init__(steps, rel_step_size, batch_size, random_start, target_shift)
        if isinstance(max_shift, bool) or int(max_shift) != max_shift or int(max_shift) < 0:
            raise ValueError(f"max_shift: must be a whole number >= 0, got {max_shift!r}")
        self.max_shift = int(max_shift)

    def targets(self, y, num_classes):  # type: ignore[no-untyped-def]
        if self.target_shift % num_classes == 0:
            raise ValueError(f"target_shift: {self.target_shift} maps every class to itself with {num_classes} "
                             "classes; TAP needs a permutation without fixed points")
        return target_map(y, num_classes, self.target_shift)

    def crafting_fn(self, model, seed, start):  # type: ignore[no-untyped-def]
        gen = runtime.generator(derive_seed(seed, "TAP", "augment", start), runtime.device_of(model))
        return RandomFlipShift(model, self.max_shift, gen)
