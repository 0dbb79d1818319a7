"""Region-masked threat model: perturb only inside a mask, with the base ball's own ε.

Section 5.3 of the paper (MNIST-CIFAR): the MNIST half is a non-robust region (ℓ∞, ε = 1) and the CIFAR half
may not move at all, i.e. B = {x' : ‖x_m − x'_m‖∞ + ∞·‖x_c − x'_c‖∞ ≤ 1}.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch

from delusive import runtime
from delusive.threat.balls import L2Ball, ThreatModel


class Masked(ThreatModel):
    """``base`` restricted to the pixels where ``mask`` is 1 (mask broadcastable to one image C×H×W)."""

    def __init__(self, base: ThreatModel, mask: torch.Tensor) -> None:
        mask = runtime.as_tensor(mask, dtype=torch.float32).cpu()
        if mask.dim() not in (2, 3):
            raise ValueError(f"mask: expected H×W or C×H×W, got shape {tuple(mask.shape)}")
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError("mask: values must be 0 or 1")
        super().__init__(base.eps, base.eps_text)
        self.base = base
        self.mask = mask
        self.norm_name = f"masked-{base.norm_name}"
        self._copies: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def _m(self, t: torch.Tensor) -> torch.Tensor:
        """The mask on ``t``'s device and dtype, copied there once (not on every PGD step)."""
        key = (t.device, t.dtype)
        m = self._copies.get(key)
        if m is None:
            m = self._copies[key] = self.mask.to(dtype=t.dtype, device=t.device)
        return m

    def norm(self, delta: torch.Tensor) -> torch.Tensor:
        return self.base.norm(delta * self._m(delta))

    def project_delta(self, delta: torch.Tensor) -> torch.Tensor:
        return self.base.project_delta(delta * self._m(delta))

    def direction(self, grad: torch.Tensor) -> torch.Tensor:
        return self.base.direction(grad * self._m(grad)) * self._m(grad)

    def masked_dim(self, sample_shape: tuple[int, ...] | torch.Size) -> int:
        """Number of coordinates of one sample of ``sample_shape`` (C×H×W) that the mask lets move."""
        return int(torch.broadcast_to(self.mask, tuple(sample_shape)).sum())

    def sample_delta(self, like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Uniform in the masked ball: zero outside the mask, uniform in the base ball of the d_m masked
        coordinates. For ℓ2 that is a Gaussian direction *within the mask* with radius ε·U^(1/d_m) (a
        full-image sample masked afterwards would have the wrong direction norm and radius law); for ℓ∞
        independent uniforms per coordinate are already uniform on the masked cube."""
        m = self._m(like)
        if isinstance(self.base, L2Ball):
            g = runtime.randn(like.shape, generator, like.device, like.dtype) * m
            d_m = self.masked_dim(like.shape[1:])
            u = runtime.rand(like.shape[0], generator, like.device, like.dtype)
            radius = self.base.eps * u.pow(1.0 / max(d_m, 1))
            return self.base.direction(g) * radius.reshape(-1, *([1] * (like.dim() - 1)))
        return self.project_delta(self.base.sample_delta(like, generator) * m)

    def contains(self, x_adv: torch.Tensor, x_clean: torch.Tensor, tol: float = 1e-6) -> torch.Tensor:
        outside = (x_adv - x_clean) * (1 - self._m(x_adv))
        still = outside.reshape(outside.shape[0], -1).abs().amax(1) <= tol
        return super().contains(x_adv, x_clean, tol) & still

    def describe(self) -> dict[str, Any]:
        d = self.base.describe()
        digest = hashlib.sha256(self.mask.numpy().astype("<f4").tobytes()).hexdigest()
        d.update(norm=self.norm_name, mask_fraction=float(self.mask.mean()), mask_shape=list(self.mask.shape),
                 mask_sha256=digest)
        return d


def half_mask(shape: tuple[int, int, int], part: str = "top") -> torch.Tensor:
    """A C×H×W mask selecting the ``top``/``bottom``/``left``/``right`` half of an image."""
    c, h, w = shape
    m = runtime.zeros((c, h, w))
    if part == "top":
        m[:, : h // 2] = 1
    elif part == "bottom":
        m[:, h // 2 :] = 1
    elif part == "left":
        m[:, :, : w // 2] = 1
    elif part == "right":
        m[:, :, w // 2 :] = 1
    else:
        raise ValueError(f"part: expected top, bottom, left or right, got {part!r}")
    return m
