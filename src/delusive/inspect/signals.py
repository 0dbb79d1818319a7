"""Model-free statistics of the images: fine-scale noise, high-pass residuals, class-mean patterns."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from delusive import runtime


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


#: grey levels a spike may sit on: levels within 3 of either end are skipped, because scanned or rescaled
#: clean sets carry natural near-saturation spikes there (MNIST's level 253: 2.8% excess mass)
SPIKE_LEVELS = (4, 251)
#: half-width of the neighbourhood a level is compared with
SPIKE_HALF_WINDOW = 4


def grey_levels(x: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] as their nearest 8-bit grey level (uint8, same shape)."""
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def spike_levels(max_change: float) -> list[int]:
    """The levels a poison whose per-pixel change is at most ``max_change`` can pile saturated pixels on:
    1..⌈255·max_change⌉ + 1 above black and as many below white, without the levels within 3 of either end.
    A uniform grey background (level 128, say) is a natural spike outside these bands for any budget < 0.49."""
    reach = min(int(math.ceil(255 * max_change)) + 1, 127)
    lo, hi = SPIKE_LEVELS
    return [v for v in range(lo, hi + 1) if v <= reach or v >= 255 - reach]


def level_spike(x: torch.Tensor, max_change: float, chunk: int = 8192) -> dict[str, float]:
    """The largest isolated spike of the pixel-value histogram within reach of a budget: the excess mass of
    one grey level over the median of its 8 neighbours, as a fraction of all pixels, with the level and the
    ratio; levels are those :func:`spike_levels` allows for a per-pixel change of ``max_change`` (ε).

    Why: an ℓ∞ poison puts most of its entries at ±ε (sign-gradient PGD steps, a tanh-bounded generator
    such as L2C's), and where the clean pixel was saturated at 0 (or 1) the clip leaves only +ε (or −ε), so
    a poisoned set's histogram gains a spike at the level ε (or 1 − ε) carrying a share of every saturated
    pixel. Clean images have no reason to pile up on one level near black or white. The spike does not
    depend on whether the perturbation is learnable, so it sees poisons that make the data harder (L2C) as
    well as shortcut poisons; it needs saturated pixels (dark backgrounds, highlights) and a poison that
    uses its bound."""
    hist = runtime.zeros(256, device="cpu", dtype=torch.float64)
    for s in range(0, x.shape[0], chunk):
        lv = grey_levels(x[s:s + chunk]).flatten().long()
        hist += torch.bincount(lv, minlength=256).to(torch.float64).cpu()
    total = max(float(hist.sum()), 1.0)
    w = SPIKE_HALF_WINDOW
    levels = runtime.as_tensor(spike_levels(max_change), device="cpu")
    windows = hist.unfold(0, 2 * w + 1, 1)[levels - w]  # row i is centred on levels[i]
    ordered = torch.cat([windows[:, :w], windows[:, w + 1:]], 1).sort(1).values
    base = (ordered[:, w - 1] + ordered[:, w]) / 2  # the median of an even count
    excess = (windows[:, w] - base) / total
    i = int(excess.argmax())
    return {"excess": float(excess[i]), "level": int(levels[i]), "ratio": float(windows[i, w] / (base[i] + 1.0))}


def level_share(x: torch.Tensor, level: int, chunk: int = 8192) -> torch.Tensor:
    """Per image: the share of its pixels at the 8-bit grey ``level`` (the per-sample side of the spike)."""
    out = [(grey_levels(x[s:s + chunk]) == level).flatten(1).float().mean(1) for s in range(0, x.shape[0], chunk)]
    return torch.cat(out) if out else runtime.zeros(0, device=x.device)
