"""``ortho_proj``: orthogonal projection (Sandoval-Segura et al., "What Can We Learn from Unlearnable
Datasets?", NeurIPS 2023). Many availability poisons are *linearly separable* shortcuts: a linear model fits
the poisoned training set almost perfectly along a few class directions. Fitting that linear model on the
(possibly poisoned) training set and projecting its class directions out of every image removes the shortcut
before a network ever sees it."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from delusive import runtime
from delusive.data import ArrayDataset
from delusive.defenses.checks import _check, _is_int, _is_number
from delusive.defenses.transform import TRANSFORMS, TrainingTransform
from delusive.utils.seeding import derive_seed

#: images are projected about mid-grey, so that "orthogonal" is a statement about the image content
CENTRE = 0.5


def fit_linear(x: torch.Tensor, y: torch.Tensor, num_classes: int, epochs: int, lr: float, batch_size: int,
               seed: int) -> torch.Tensor:
    """Multinomial logistic regression on flattened images ``x`` (N×D): mini-batch Adam on the mean CE,
    order seeded by ``seed``; returns the class weight vectors W (K×D) (the bias is not a direction)."""
    n, d = x.shape
    w = runtime.zeros((num_classes, d), x.device).requires_grad_(True)
    b = runtime.zeros((num_classes,), x.device).requires_grad_(True)
    opt = torch.optim.Adam([w, b], lr=lr)
    for e in range(epochs):
        order = runtime.randperm(n, runtime.generator(derive_seed(seed, "ortho_proj", e))).to(x.device)
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            loss = F.cross_entropy(x[idx] @ w.T + b, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return w.detach()


def class_basis(w: torch.Tensor) -> torch.Tensor:
    """An orthonormal basis Q (D×r) of the span of the class weight vectors (rows of W), r = rank(W)."""
    q, r = torch.linalg.qr(w.T.double(), mode="reduced")
    keep = r.diagonal().abs() > 1e-8 * r.diagonal().abs().max().clamp_min(1e-30)
    return q[:, keep].float()


@TRANSFORMS.register("ortho_proj")
class OrthoProj(TrainingTransform):
    """Fit a linear model (multinomial logistic regression, ``fit_epochs`` epochs of Adam at ``fit_lr``, batch
    ``fit_batch_size``, seeded) on the training set, take an orthonormal basis Q of the span of its K class
    weight vectors, and replace every image x by x' = c + s·(I − QQᵀ)(x − c), c = ½ (mid-grey).

    Two departures from the paper's x ↦ (I − QQᵀ)x, both affine maps a network's first linear layer absorbs:
    the projection is taken about mid-grey (so the images themselves, centred, are orthogonal to the class
    directions: Qᵀ(x' − c) = 0), and one global contrast factor s ≤ 1 (the largest that keeps every pixel
    in [0, 1], recorded in :attr:`last_scale`) keeps the data a valid image set. Costs: one linear fit; removes
    at most K directions of the D-dimensional image space, so clean accuracy barely moves. Cannot remove a
    shortcut a linear model does not find (poisons that are not linearly separable, e.g. error-maximising
    adversarial poisons whose signal is spread over many directions)."""

    name = "ortho_proj"

    def __init__(self, fit_epochs: int = 20, fit_lr: float = 0.01, fit_batch_size: int = 256) -> None:
        _check("ortho_proj", _is_int(fit_epochs) and fit_epochs >= 1, "fit_epochs", "an integer >= 1", fit_epochs)
        _check("ortho_proj", _is_number(fit_lr) and fit_lr > 0, "fit_lr", "a finite number > 0", fit_lr)
        _check("ortho_proj", _is_int(fit_batch_size) and fit_batch_size >= 1, "fit_batch_size", "an integer >= 1",
               fit_batch_size)
        self.fit_epochs, self.fit_lr, self.fit_batch_size = int(fit_epochs), float(fit_lr), int(fit_batch_size)
        self.last_basis: torch.Tensor | None = None
        self.last_scale: float | None = None

    def transform_images(self, data: ArrayDataset, seed: int) -> np.ndarray:
        x, y = data.tensors()
        flat = x.reshape(len(data), -1) - CENTRE
        w = fit_linear(flat, y, data.num_classes, self.fit_epochs, self.fit_lr, self.fit_batch_size, seed)
        q = class_basis(w)
        proj = flat - (flat @ q) @ q.T
        peak = float(proj.abs().max()) if proj.numel() else 0.0
        scale = min(1.0, CENTRE / peak) if peak > 0 else 1.0
        self.last_basis, self.last_scale = q, scale
        out = (CENTRE + scale * proj).clamp_(0.0, 1.0)  # the clamp only trims fp32 rounding at the edges
        return out.reshape(x.shape).numpy().astype(np.float32)
