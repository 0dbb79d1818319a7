"""ℓ∞ and ℓ2 balls intersected with the [0,1] pixel box (the paper's B(x, ε) with Δ = ‖·‖_p, Sec. 2).

Each threat model answers the questions every attack and defense asks: project onto the feasible set,
steepest-ascent direction under the norm, a random start inside the ball, the per-sample norm and a
membership check. Projection clamps δ to the ball and then x+δ to [0,1]; clipping coordinates toward a point
of the box never increases |δ_i|, so the result stays in the ball: feasible, idempotent and the identity on
feasible points.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch

from delusive import runtime

_TINY = 1e-12


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1)


def _per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.reshape(-1, *([1] * (like.dim() - 1)))


class ThreatModel(ABC):
    """A norm ball of radius ``eps`` around each clean input, intersected with the [0,1] box."""

    norm_name: str = ""

    def __init__(self, eps: float, eps_text: str | None = None) -> None:
        eps = float(eps)
        if not eps >= 0 or eps != eps or eps == float("inf"):
            raise ValueError(f"eps: must be a finite number >= 0, got {eps!r}")
        self.eps = eps
        self.eps_text = eps_text if eps_text is not None else repr(eps)

    # --- geometry -------------------------------------------------------------------------------------
    @abstractmethod
    def norm(self, delta: torch.Tensor) -> torch.Tensor:
        """Per-sample norm of ``delta`` (shape N)."""

    @abstractmethod
    def project_delta(self, delta: torch.Tensor) -> torch.Tensor:
        """Nearest point of the ball (ignoring the box) to ``delta``."""

    @abstractmethod
    def direction(self, grad: torch.Tensor) -> torch.Tensor:
        """Steepest-ascent direction of unit norm for a gradient (sign for ℓ∞, normalised for ℓ2)."""

    @abstractmethod
    def sample_delta(self, like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A random perturbation inside the ball (before box clipping)."""

    # --- derived operations ---------------------------------------------------------------------------
    def project(self, x_adv: torch.Tensor, x_clean: torch.Tensor) -> torch.Tensor:
        """Project ``x_adv`` onto B(x_clean, ε) ∩ [0,1]^d."""
        delta = self.project_delta(x_adv - x_clean)
        return torch.clamp(x_clean + delta, 0.0, 1.0)

    def random_init(self, x_clean: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A random feasible point around ``x_clean`` (random start of PGD, RandNoise training)."""
        return self.project(x_clean + self.sample_delta(x_clean, generator), x_clean)

    def contains(self, x_adv: torch.Tensor, x_clean: torch.Tensor, tol: float = 1e-6) -> torch.Tensor:
        """Per-sample membership in B(x_clean, ε) ∩ [0,1] (boolean, shape N), with tolerance ``tol``."""
        in_box = (_flat(x_adv) >= -tol).all(1) & (_flat(x_adv) <= 1 + tol).all(1)
        return in_box & (self.norm(x_adv - x_clean) <= self.eps + tol)

    def describe(self) -> dict[str, Any]:
        return {"norm": self.norm_name, "eps": self.eps, "eps_text": self.eps_text}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(eps={self.eps_text})"


class LinfBall(ThreatModel):
    """‖δ‖∞ ≤ ε: every pixel moves at most ε (Feng et al.'s and the paper's ℓ∞ threat model)."""

    norm_name = "linf"

    def norm(self, delta: torch.Tensor) -> torch.Tensor:
        return _flat(delta).abs().amax(1)

    def project_delta(self, delta: torch.Tensor) -> torch.Tensor:
        return torch.clamp(delta, -self.eps, self.eps)

    def direction(self, grad: torch.Tensor) -> torch.Tensor:
        return grad.sign()

    def sample_delta(self, like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        u = runtime.rand(like.shape, generator, like.device, like.dtype)
        return (2 * u - 1) * self.eps


class L2Ball(ThreatModel):
    """‖δ‖₂ ≤ ε over the whole image (the paper's default CIFAR-10 threat model, ε = 0.5)."""

    norm_name = "l2"

    def norm(self, delta: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(_flat(delta), ord=2, dim=1)

    def project_delta(self, delta: torch.Tensor) -> torch.Tensor:
        n = self.norm(delta)
        scale = torch.where(n > self.eps, self.eps / n.clamp_min(_TINY), torch.ones_like(n))
        return delta * _per_sample(scale, delta)

    def direction(self, grad: torch.Tensor) -> torch.Tensor:
        n = self.norm(grad).clamp_min(_TINY)
        return grad / _per_sample(n, grad)

    def sample_delta(self, like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Uniform in the ball: Gaussian direction, radius ε·U^(1/d)."""
        g = runtime.randn(like.shape, generator, like.device, like.dtype)
        d = like[0].numel()
        u = runtime.rand(like.shape[0], generator, like.device, like.dtype)
        radius = self.eps * u.pow(1.0 / max(d, 1))
        return self.direction(g) * _per_sample(radius, like)
