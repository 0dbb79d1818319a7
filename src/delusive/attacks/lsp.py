"""Linearly separable synthetic perturbations, LSP (Yu, Zhang, Chen, Yin and Liu, KDD 2022, "Availability
Attacks Create Shortcuts"; official code dayu11/Availability-Attacks-Create-Shortcuts).

Yu et al. show that availability poisons work because their perturbations are linearly separable by class,
and build such perturbations directly, with no model: draw one point per image from a K-class Gaussian mixture
whose centres sit ``class_sep`` apart on the vertices of a hypercube (the authors use sklearn's
make_classification, class_sep 10, one cluster per class), in a small space of one value per channel per
patch; tile each value over a ``patch_size``×``patch_size`` patch (an upsampling by repetition, cropped to
H×W); and scale every perturbation to ℓ2 norm exactly ε. The paper's ε is that of an ℓ∞ ball of 6/255 spread
evenly: ε = √(C·H·W)·6/255 (1.30 on CIFAR-10, 0.659 on Fashion-MNIST), the default of ``attacks/defaults.py``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from delusive import runtime
from delusive.attacks.ar import scale_to_budget
from delusive.attacks.base import ATTACKS, Attack, CraftResult
from delusive.threat import L2Ball, LinfBall
from delusive.utils.seeding import derive_seed


def lsp_perturbations(labels: torch.Tensor, num_classes: int, shape: tuple[int, int, int], patch_size: int,
                      class_sep: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(N×C×⌈H/p⌉×⌈W/p⌉ grid values before upsampling and scaling, K×D class centres) for images of ``labels``."""
    c, h, w = shape
    gh, gw = math.ceil(h / patch_size), math.ceil(w / patch_size)
    dim = c * gh * gw
    # K distinct hypercube vertices (±class_sep per coordinate): a random sign pattern per class, redrawn on a clash
    centres: list[torch.Tensor] = []
    while len(centres) < num_classes:
        v = torch.where(runtime.rand(dim, generator, dtype=torch.float64) < 0.5, -class_sep, class_sep)
        if dim >= 64 or not any(bool((v == u).all()) for u in centres):
            centres.append(v)
    mu = torch.stack(centres)
    pts = mu[labels] + runtime.randn((labels.shape[0], dim), generator, dtype=torch.float64)
    return pts.reshape(-1, c, gh, gw), mu


def upsample(grid: torch.Tensor, patch_size: int, size: tuple[int, int]) -> torch.Tensor:
    """Each grid value tiled over a ``patch_size``² patch, cropped to ``size``."""
    h, w = size
    return grid.repeat_interleave(patch_size, 2).repeat_interleave(patch_size, 3)[:, :, :h, :w].contiguous()


@ATTACKS.register("LSP")
class LSP(Attack):
    """Patch-wise synthetic noise from K separable clusters (Yu et al. 2022); needs no model."""

    name = "LSP"
    needs_model = False

    def __init__(self, patch_size: int | None = None, class_sep: float = 10.0) -> None:
        if patch_size is not None and (isinstance(patch_size, bool) or int(patch_size) != patch_size
                                       or int(patch_size) < 1):
            raise ValueError(f"patch_size: must be a whole number >= 1 (or None: a quarter of the image), "
                             f"got {patch_size!r}")
        if not (isinstance(class_sep, int | float) and math.isfinite(class_sep) and class_sep > 0):
            raise ValueError(f"class_sep: must be a finite number > 0, got {class_sep!r}")
        self.patch_size = None if patch_size is None else int(patch_size)
        self.class_sep = float(class_sep)

    def _grid(self, train, threat, seed):  # type: ignore[no-untyped-def]
        if not isinstance(threat, L2Ball | LinfBall):
            raise ValueError(f"attack LSP: needs an l2 or linf budget, got {threat.norm_name}")
        c, h, w = train.shape
        patch = self.patch_size or max(1, min(h, w) // 4)  # CIFAR-10: 8 (the authors'), 28×28: 7
        _, y = train.tensors()
        grid, _ = lsp_perturbations(y, train.num_classes, train.shape, patch, self.class_sep,
                                    runtime.generator(derive_seed(seed, "LSP")))
        return grid, patch

    def perturbations(self, train, threat, seed):  # type: ignore[no-untyped-def]
        """(δ N×C×H×W float64 at norm ε, patch size): the noise before it is added and clipped."""
        grid, patch = self._grid(train, threat, seed)
        return scale_to_budget(upsample(grid, patch, train.shape[1:]), threat), patch

    def craft(self, train, threat, model, seed=0, work_dir=None, chunk: int = 4096):  # type: ignore[no-untyped-def]
        grid, patch = self._grid(train, threat, seed)
        x, _ = train.tensors()
        out = np.empty((len(x), *train.shape), dtype=np.float32)
        for s in range(0, len(x), chunk):
            d = scale_to_budget(upsample(grid[s:s + chunk], patch, train.shape[1:]), threat)
            out[s:s + len(d)] = torch.clamp(x[s:s + len(d)].double() + d, 0.0, 1.0).float().numpy()
        return CraftResult(out, extra={"lsp": {"patch_size": patch}})
