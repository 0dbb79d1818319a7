"""ℓ0 budget over pixel positions: at most ``eps`` positions of an image may change (a pixel = all channels at
one (row, column), as the one-pixel shortcut of Wu et al., ICLR 2023, changes a whole RGB pixel).

The norm counts the positions where any channel moved by more than ``tol`` (default 1e-6: float32 round-off
of an unchanged pixel is exactly zero, and a uint8 change is at least 1/255). Projection keeps the ``eps``
positions with the largest per-position ℓ2 change and zeroes the rest, the nearest point in ℓ2 of the ℓ0
ball. PGD-style steps over an ℓ0 ball are not meaningful here: ``direction`` is the gradient restricted to
the ``eps`` positions of largest gradient, enough for any caller that asks for it, and no attack or defense
of this package runs PGD in this ball (OPS searches positions and colours exhaustively).
"""

from __future__ import annotations

import torch

from delusive import runtime
from delusive.threat.balls import ThreatModel

PIXEL_TOL = 1e-6


def _position_energy(delta: torch.Tensor) -> torch.Tensor:
    """N × (H·W): the squared change of each pixel position summed over channels."""
    if delta.dim() < 3:
        raise ValueError(f"l0 budget: expected N×C×H×W perturbations, got shape {tuple(delta.shape)}")
    d = delta if delta.dim() == 4 else delta.unsqueeze(1)
    return d.float().pow(2).sum(1).reshape(d.shape[0], -1)


def _keep_top(delta: torch.Tensor, score: torch.Tensor, k: int) -> torch.Tensor:
    d = delta if delta.dim() == 4 else delta.unsqueeze(1)
    if k >= score.shape[1]:
        return delta
    keep = runtime.zeros(score.shape, delta.device, torch.bool)
    if k > 0:
        keep.scatter_(1, score.topk(k, dim=1).indices, True)
    out = d * keep.reshape(d.shape[0], 1, *d.shape[2:]).to(d.dtype)
    return out if delta.dim() == 4 else out.squeeze(1)


class L0Ball(ThreatModel):
    """At most ``eps`` changed pixel positions per image (``eps`` a whole number; each changed position may take
    any value in [0, 1])."""

    norm_name = "l0"

    def __init__(self, eps: float, eps_text: str | None = None, tol: float = PIXEL_TOL) -> None:
        super().__init__(eps, eps_text)
        if self.eps != int(self.eps):
            raise ValueError(f"eps: an l0 budget counts pixels and must be a whole number, got {eps_text or eps}")
        self.k = int(self.eps)
        self.tol = float(tol)

    def norm(self, delta: torch.Tensor) -> torch.Tensor:
        d = delta if delta.dim() == 4 else delta.unsqueeze(1)
        moved = (d.abs() > self.tol).any(1)
        return moved.reshape(d.shape[0], -1).sum(1).to(torch.float32)

    def project_delta(self, delta: torch.Tensor) -> torch.Tensor:
        return _keep_top(delta, _position_energy(delta), self.k)

    def direction(self, grad: torch.Tensor) -> torch.Tensor:
        return _keep_top(grad, _position_energy(grad), self.k)

    def sample_delta(self, like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``eps`` random positions per image, each moved by a uniform amount in [−1, 1] per channel."""
        u = 2 * runtime.rand(like.shape, generator, like.device, like.dtype) - 1
        score = runtime.rand((like.shape[0], like.shape[-2] * like.shape[-1]), generator, like.device)
        return _keep_top(u, score, self.k)
