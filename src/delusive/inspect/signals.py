"""Model-free statistics of the images: fine-scale noise, high-pass residuals, class-mean patterns."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def haar_diagonal(x: torch.Tensor) -> torch.Tensor:
    """The finest diagonal Haar detail coefficients (HH) of N×C×H×W images, N×(C·H/2·W/2)."""
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    a, b = x[..., 0:h:2, 0:w:2], x[..., 0:h:2, 1:w:2]
    c, d = x[..., 1:h:2, 0:w:2], x[..., 1:h:2, 1:w:2]
    return ((a - b - c + d) / 2).flatten(1)


def noise_sigma(x: torch.Tensor) -> torch.Tensor:
    """Per-image noise level, Donoho & Johnstone's robust estimate σ = median|HH| / 0.6745 (1994): smooth
    regions dominate natural images, so the median detail coefficient is near zero unless something dense —
    sensor noise or an additive perturbation — covers the image."""
    return haar_diagonal(x).abs().median(1).values / 0.6745


def detail_energy(x: torch.Tensor) -> torch.Tensor:
    """Per-image mean |HH|: the fine-scale energy, a per-sample score that a dense perturbation raises."""
    return haar_diagonal(x).abs().mean(1)


def high_pass(x: torch.Tensor) -> torch.Tensor:
    """x minus its 3×3 box blur (replicate padding): what a small dense perturbation mostly lives in."""
    c = x.shape[1]
    kernel = torch.ones_like(x[:1, :1, :3, :3]).expand(c, 1, 3, 3) / 9.0
    return x - F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, groups=c)


def class_patterns(x: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """K×C×H×W: each class's mean high-pass residual minus the mean over all images. A class-wise additive
    perturbation δ_k survives the class average (it is the same in every image of the class) while the
    images' own fine detail averages out; the global mean removes what all classes share."""
    hp = high_pass(x)
    overall = hp.mean(0, keepdim=True)
    out = torch.zeros_like(hp[:1]).repeat(num_classes, 1, 1, 1)
    for k in range(num_classes):
        sel = y == k
        if bool(sel.any()):
            out[k] = hp[sel].mean(0) - overall[0]
    return out
