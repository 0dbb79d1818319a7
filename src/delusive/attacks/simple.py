"""The model-free attacks: ``clean`` (identity, so experiments treat the clean set uniformly) and P5.

P5 (Section 4): one random perturbation r_y per class, added to every image of class y. ℓ2: a Gaussian
direction scaled to norm exactly ε; ℓ∞: uniform in [−ε, ε] per pixel (REFERENCE.md). Applied as clip(x + r_y).
"""

from __future__ import annotations

import numpy as np
import torch

from delusive import runtime
from delusive.attacks.base import ATTACKS, Attack, CraftResult
from delusive.data import ArrayDataset
from delusive.threat import L2Ball, Masked
from delusive.utils.seeding import derive_seed


@ATTACKS.register("clean")
class Clean(Attack):
    """No perturbation: the clean training set as an artifact."""

    name = "clean"
    needs_model = False

    def craft(self, train, threat, model, seed=0, work_dir=None):  # type: ignore[no-untyped-def]
        return CraftResult(train.float_x().astype(np.float32, copy=True))


def apply_class_deltas(train: ArrayDataset, deltas: torch.Tensor) -> np.ndarray:
    """clip(x + δ_y, 0, 1) for every image (Pitfall 1 of DESIGN.md: the realised norms are recorded later)."""
    x, y = train.tensors()
    return torch.clamp(x + deltas[y], 0.0, 1.0).numpy().astype(np.float32)


@ATTACKS.register("P5")
class P5(Attack):
    """Class-wise random noise; needs no model."""

    name = "P5"
    needs_model = False
    classwise = True

    def craft(self, train, threat, model, seed=0, work_dir=None):  # type: ignore[no-untyped-def]
        g = runtime.generator(derive_seed(seed, "P5"))  # drawn on the CPU: same noise on every device
        like = runtime.zeros((train.num_classes, *train.shape))
        base = threat.base if isinstance(threat, Masked) else threat
        if isinstance(base, L2Ball):  # a Gaussian direction (inside the mask) scaled to norm exactly ε
            deltas = threat.direction(runtime.randn(like.shape, g)) * threat.eps
        else:  # uniform in [−ε, ε] per pixel (zero outside a mask)
            deltas = threat.project_delta((2 * runtime.rand(like.shape, g) - 1) * threat.eps)
        return CraftResult(apply_class_deltas(train, deltas), deltas.numpy().astype(np.float32))

