"""Linear probes: one-vs-rest logistic models trained full-batch, with and without an ε-robust loss.

The robust loss is the exact worst case of a linear score under a norm-bounded input change: for a score
z = w·x + b and ‖δ‖ ≤ ε, min_δ s·(w·(x+δ) + b) = s·z − ε‖w‖_* (‖·‖_* the dual norm: ℓ1 for ℓ∞, ℓ2 for ℓ2).
Trained with it, a one-vs-rest model cannot rely on features smaller than ε — the features a delusive
poison plants (Tao et al. 2021, Theorem 1: adversarial training within the attacker's budget bounds the
damage). One-vs-rest keeps the penalty O(K·d) per step instead of the O(n·K·d) of a multi-class bound.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from delusive import runtime


@dataclass(frozen=True)
class LinearProbe:
    """Weights (d×K) and biases (K) of a one-vs-rest linear model on flattened pixels."""

    weight: torch.Tensor
    bias: torch.Tensor

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight + self.bias


def dual_norm(weight: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-class dual norm of the weight columns: ℓ1 for an ℓ∞ budget, ℓ2 for an ℓ2 budget."""
    if norm == "linf":
        return weight.abs().sum(0)
    if norm == "l2":
        return weight.norm(dim=0)
    raise ValueError(f"--norm: expected linf or l2, got {norm!r}")


def fit_probe(x: torch.Tensor, y: torch.Tensor, num_classes: int, norm: str, eps: float, steps: int = 100,
              lr: float = 0.05) -> LinearProbe:
    """Full-batch Adam on the (ε-robust when ``eps > 0``) one-vs-rest logistic loss; deterministic (zero
    initialisation, no sampling), so the same data gives the same probe."""
    d = x.shape[1]
    weight = runtime.zeros((d, num_classes), device=x.device).requires_grad_(True)
    bias = runtime.zeros((num_classes,), device=x.device).requires_grad_(True)
    opt = torch.optim.Adam([weight, bias], lr=lr)
    sign = F.one_hot(y, num_classes).to(x.dtype) * 2 - 1
    for _ in range(steps):
        margin = sign * (x @ weight + bias)
        if eps > 0:
            margin = margin - eps * dual_norm(weight, norm)
        loss = F.softplus(-margin).sum(1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return LinearProbe(weight.detach(), bias.detach())


def two_folds(n: int, labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded split of ``range(n)`` into two halves, stratified by label (each class split in half)."""
    rng = np.random.default_rng([int(seed), 24])
    a, b = [], []
    for k in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == k))
        a.append(idx[: len(idx) // 2])
        b.append(idx[len(idx) // 2:])
    return np.sort(np.concatenate(a)), np.sort(np.concatenate(b))


@dataclass(frozen=True)
class CrossFit:
    """Out-of-fold scores of two probes trained on complementary halves, and the probes themselves."""

    scores: torch.Tensor  # n×K, each row scored by the probe that did not see it
    probes: tuple[LinearProbe, LinearProbe]

    def errors(self, y: torch.Tensor) -> torch.Tensor:
        return (self.scores.argmax(1) != y).float()


def cross_fit(x: torch.Tensor, y: torch.Tensor, num_classes: int, folds: tuple[np.ndarray, np.ndarray],
              norm: str, eps: float, steps: int) -> CrossFit:
    """Train on each half, score the other: every row gets a held-out score (split-half validation)."""
    scores = runtime.zeros((x.shape[0], num_classes), device=x.device)
    probes = []
    for train, held in (folds, folds[::-1]):
        tr = runtime.as_tensor(train, device=x.device)
        he = runtime.as_tensor(held, device=x.device)
        probe = fit_probe(x[tr], y[tr], num_classes, norm, eps, steps)
        scores[he] = probe.scores(x[he])
        probes.append(probe)
    return CrossFit(scores, (probes[0], probes[1]))
