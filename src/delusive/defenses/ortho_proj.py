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
_CHUNK = 4096


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


def nearest_orthogonal_images(x: torch.Tensor, q: torch.Tensor, centre: float = CENTRE, tol: float = 1e-5,
                              max_iter: int = 1000) -> tuple[torch.Tensor, float, int]:
    """The nearest images (rows of ``x``, N×D) in [0, 1]^D whose centred versions are orthogonal to the
    columns of ``q`` (D×r, orthonormal): Dykstra's alternating projections between the affine subspace
    {z : Qᵀ(z − centre) = 0} and the box [0, 1]^D, which converge to the Euclidean projection onto their
    intersection (non-empty: the flat image ``centre`` lies in both). Stops when max |Qᵀ(z − centre)| < ``tol``;
    returns (images, that residual, iterations)."""
    z = x.clone()
    p = torch.zeros_like(x)
    r = torch.zeros_like(x)
    residual = float("inf")
    done = 0
    for it in range(1, max_iter + 1):
        done = it
        a = z + p
        a = a - ((a - centre) @ q) @ q.T
        p = z + p - a
        b = a + r
        z = b.clamp(0.0, 1.0)
        r = b - z
        residual = float(((z - centre) @ q).abs().max()) if z.numel() else 0.0
        if residual < tol:
            break
    return z, residual, done


@TRANSFORMS.register("ortho_proj")
class OrthoProj(TrainingTransform):
    """Fit a linear model (multinomial logistic regression, ``fit_epochs`` epochs of Adam at ``fit_lr``, batch
    ``fit_batch_size``, seeded) on the training set, take an orthonormal basis Q of the span of its K class
    weight vectors, and replace every image x by the nearest image x' in [0, 1]^D with Qᵀ(x' − c) = 0,
    c = ½ (mid-grey): the paper's projection x ↦ (I − QQᵀ)x, taken about mid-grey and kept inside the valid
    pixel range (the paper's normalised tensors may leave it; an ArrayDataset may not). Without the range
    constraint a fifth of Fashion-MNIST's pixels would leave [0, 1]; clipping alone would undo part of the
    projection and shrinking the contrast to fit slowed training to a halt, so the nearest valid orthogonal
    image is computed exactly (:func:`nearest_orthogonal_images`, about 15 iterations; the residual reached
    is in :attr:`last_residual`). Costs: one linear fit; removes at most K directions of the D-dimensional
    image space. Cannot remove a shortcut a linear model does not find (poisons that are not linearly
    separable, e.g. error-maximising adversarial poisons whose signal is spread over many directions)."""

    name = "ortho_proj"

    def __init__(self, fit_epochs: int = 20, fit_lr: float = 0.01, fit_batch_size: int = 256) -> None:
        _check("ortho_proj", _is_int(fit_epochs) and fit_epochs >= 1, "fit_epochs", "an integer >= 1", fit_epochs)
        _check("ortho_proj", _is_number(fit_lr) and fit_lr > 0, "fit_lr", "a finite number > 0", fit_lr)
        _check("ortho_proj", _is_int(fit_batch_size) and fit_batch_size >= 1, "fit_batch_size", "an integer >= 1",
               fit_batch_size)
        self.fit_epochs, self.fit_lr, self.fit_batch_size = int(fit_epochs), float(fit_lr), int(fit_batch_size)
        self.last_basis: torch.Tensor | None = None
        self.last_residual: float | None = None

    def transform_images(self, data: ArrayDataset, seed: int) -> np.ndarray:
        x, y = data.tensors()
        flat = x.reshape(len(data), -1)
        w = fit_linear(flat - CENTRE, y, data.num_classes, self.fit_epochs, self.fit_lr, self.fit_batch_size, seed)
        q = class_basis(w)
        out = np.empty(flat.shape, dtype=np.float32)
        residual = 0.0
        for i in range(0, len(data), _CHUNK):  # rows are independent: bounded memory on 50k CIFAR images
            part, res, _ = nearest_orthogonal_images(flat[i:i + _CHUNK], q)
            out[i:i + _CHUNK] = part.numpy()
            residual = max(residual, res)
        self.last_basis, self.last_residual = q, residual
        return out.reshape(x.shape)
