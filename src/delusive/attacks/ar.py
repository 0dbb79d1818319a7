"""Autoregressive perturbations, AR (Sandoval-Segura, Singla, Geiping, Goldblum, Goldstein and Jacobs, NeurIPS
2022, "Autoregressive Perturbations for Data Poisoning"; official code psandovalsegura/autoregressive-poisoning).

Every class k owns an AR process: per channel c, eight coefficients a_{k,c} on the causal 3×3 window (the
window's bottom-right entry, the pixel being generated, has none), drawn N(0, 1) and normalised to sum to 1
(the authors' choice), redrawn until the process is stable on the image grid (``norm_bound``; the authors also
search for bounded processes). An image of class k gets its own sample of its class's process: start
from Gaussian noise on an (H + crop)×(W + crop) grid, then in raster order set every pixel (i, j) with i, j ≥ 2

    z[c, i, j] = Σ_{(u, v) ∈ 3×3 window ending at (i, j), (u, v) ≠ (i, j)} a_{k,c}[u, v] · z[c, i − 2 + u, j − 2 + v],

drop the first ``crop`` rows and columns (so every kept pixel follows the recurrence), and scale the sample to
norm exactly ε under the threat model (ℓ2 in the paper: ε = 1 on CIFAR-10). No model is needed; a
convolution with the filter [a, −1] is zero on the noise, which is the shortcut a network picks up. The
coefficients go into the manifest. The process runs in float64 (its values can grow along the raster).
"""

from __future__ import annotations

import numpy as np
import torch

from delusive import runtime
from delusive.attacks.base import ATTACKS, Attack, CraftResult
from delusive.threat import L2Ball, LinfBall, ThreatModel
from delusive.utils.seeding import derive_seed

WINDOW = 3
TRIALS = 8  # samples per candidate process in the stability check


def ar_coefficients(num_classes: int, channels: int, generator: torch.Generator, size: tuple[int, int] = (32, 32),
                    norm_bound: float = 1.5, max_rounds: int = 100, batch: int = 256) -> torch.Tensor:
    """K×C×3×3 float64 coefficients, the bottom-right entry 0 and each window summing to 1, every (class, channel)
    process *stable* on a ``size`` grid: each of ``TRIALS`` samples from a Gaussian start keeps an RMS value
    ≤ ``norm_bound``.

    Most random coefficient sets make the recurrence blow up along the raster (values of 1e17 at the far corner),
    so the scaled noise would sit in a few pixels; the authors likewise keep only processes whose generated norm
    stays under a bound (their autoregressive_param_finder.py, Appendix A.3), with their own constants.
    Candidates are drawn ``batch`` at a time and tested together; the first stable ones, in draw order, fill
    the classes' channels in order (so the result depends only on the generator's seed)."""
    need = num_classes * channels
    kept: list[torch.Tensor] = []
    trial = runtime.generator(int(runtime.randint(0, 2**31 - 1, 1, generator)))
    for _ in range(max_rounds):
        a = runtime.randn((batch, 1, WINDOW, WINDOW), generator, dtype=torch.float64)
        a[..., -1, -1] = 0
        a = a / a.sum(dim=(-2, -1), keepdim=True)
        z = ar_samples(a, runtime.arange(batch).repeat_interleave(TRIALS), size, 0, trial)
        rms = z.pow(2).mean((1, 2, 3)).sqrt().reshape(batch, TRIALS)
        ok = (torch.isfinite(rms) & (rms <= norm_bound)).all(1)
        kept.extend(a[ok][:, 0])
        if len(kept) >= need:
            return torch.stack(kept[:need]).reshape(num_classes, channels, WINDOW, WINDOW)
    raise ValueError(f"norm_bound: only {len(kept)} of {need} stable AR processes found in {max_rounds * batch} "
                     f"draws with norm_bound {norm_bound}; raise it")


def ar_samples(coeffs: torch.Tensor, labels: torch.Tensor, size: tuple[int, int], crop: int,
               generator: torch.Generator) -> torch.Tensor:
    """One sample of class labels[i]'s process per image: N×C×H×W float64, before any scaling."""
    n = labels.shape[0]
    c = coeffs.shape[1]
    h, w = size[0] + crop, size[1] + crop
    z = runtime.randn((n, c, h, w), generator, dtype=torch.float64)
    a = coeffs[labels]  # N×C×3×3
    for i in range(WINDOW - 1, h):
        for j in range(WINDOW - 1, w):
            window = z[:, :, i - 2:i + 1, j - 2:j + 1]
            z[:, :, i, j] = (window * a).sum(dim=(-2, -1))
    return z[:, :, crop:, crop:]


def recurrence_residual(delta: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    """|z[i, j] − Σ a·window| at every generated position (i, j ≥ 2) of each sample: zero for AR noise."""
    a = coeffs[:, :, :, :].to(delta.dtype)
    n, c, h, w = delta.shape
    out = delta.new_zeros((n, c, h - 2, w - 2))
    for i in range(2, h):
        for j in range(2, w):
            out[:, :, i - 2, j - 2] = delta[:, :, i, j] - (delta[:, :, i - 2:i + 1, j - 2:j + 1] * a).sum((-2, -1))
    return out.abs()


def scale_to_budget(z: torch.Tensor, threat: ThreatModel) -> torch.Tensor:
    """``z`` scaled so every sample has norm exactly ε under ``threat`` (ℓ2 or ℓ∞)."""
    base = threat
    if not isinstance(base, L2Ball | LinfBall):
        raise ValueError(f"needs an l2 or linf budget, got {threat.norm_name}")
    norms = base.norm(z).clamp_min(1e-300)
    return z * (threat.eps / norms).reshape(-1, *([1] * (z.dim() - 1)))


@ATTACKS.register("AR")
class AR(Attack):
    """Class-wise autoregressive noise (Sandoval-Segura et al. 2022); needs no model."""

    name = "AR"
    needs_model = False

    def __init__(self, crop: int = 4, norm_bound: float = 1.5) -> None:
        if isinstance(crop, bool) or int(crop) != crop or int(crop) < 0:
            raise ValueError(f"crop: must be a whole number >= 0, got {crop!r}")
        if not (isinstance(norm_bound, int | float) and 1.0 <= norm_bound < 1e6):
            raise ValueError(f"norm_bound: must be a number in [1, 1e6), got {norm_bound!r}")
        self.crop, self.norm_bound = int(crop), float(norm_bound)

    def coefficients(self, train, seed: int) -> torch.Tensor:  # type: ignore[no-untyped-def]
        c, h, w = train.shape
        return ar_coefficients(train.num_classes, c, runtime.generator(derive_seed(seed, "AR", "coefficients")),
                               (h + self.crop, w + self.crop), self.norm_bound)

    def noise_chunks(self, train, threat, seed, coeffs, chunk: int = 4096):  # type: ignore[no-untyped-def]
        """(start, δ of images start… in float64 at norm ε), in fixed chunks from one generator: the same draws
        however the caller consumes them, and bounded memory on a 50k-image set."""
        if not isinstance(threat, L2Ball | LinfBall):
            raise ValueError(f"attack AR: needs an l2 or linf budget, got {threat.norm_name}")
        _, h, w = train.shape
        _, y = train.tensors()
        gen = runtime.generator(derive_seed(seed, "AR", "samples"))
        for s in range(0, len(y), chunk):
            z = ar_samples(coeffs, y[s:s + chunk], (h, w), self.crop, gen)
            yield s, scale_to_budget(z, threat)

    def perturbations(self, train, threat, seed):  # type: ignore[no-untyped-def]
        """(δ N×C×H×W float64 at norm ε, coefficients K×C×3×3): the noise before it is added and clipped."""
        coeffs = self.coefficients(train, seed)
        parts = [d for _, d in self.noise_chunks(train, threat, seed, coeffs)]
        return (torch.cat(parts) if parts else runtime.zeros((0, *train.shape), dtype=torch.float64)), coeffs

    def craft(self, train, threat, model, seed=0, work_dir=None):  # type: ignore[no-untyped-def]
        coeffs = self.coefficients(train, seed)
        x, _ = train.tensors()
        out = np.empty((len(x), *train.shape), dtype=np.float32)
        for s, d in self.noise_chunks(train, threat, seed, coeffs):
            out[s:s + len(d)] = torch.clamp(x[s:s + len(d)].double() + d, 0.0, 1.0).float().numpy()
        return CraftResult(out, extra={"ar_coefficients": coeffs.tolist()})
