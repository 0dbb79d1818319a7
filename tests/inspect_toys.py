"""Toy data for the inspect tests: 4 classes of 1×16×16 smooth blobs whose position and brightness vary, so
a linear probe learns them well but not perfectly; plus class-wise and per-sample planted perturbations."""

from __future__ import annotations

import numpy as np

from delusive.data import ArrayDataset

SIZE = 16
CENTRES = [(5, 5), (5, 10), (10, 5), (10, 10)]


def toy_clean(n: int = 2000, seed: int = 0) -> ArrayDataset:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 4
    rng.shuffle(y)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    x = np.zeros((n, 1, SIZE, SIZE), np.float32)
    for i in range(n):
        cy, cx = CENTRES[y[i]]
        cy, cx = cy + rng.normal(0, 2.2), cx + rng.normal(0, 2.2)
        amp, width = rng.uniform(0.5, 1.0), rng.uniform(1.5, 3.0)
        x[i, 0] = amp * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * width ** 2))
    return ArrayDataset(np.round(np.clip(x, 0, 1) * 255).astype(np.uint8), y.astype(np.int64), 4, "toy")


def class_deltas(eps: float = 0.2, seed: int = 1) -> np.ndarray:
    """One random ±ε pattern per class (P5-style, ℓ∞)."""
    rng = np.random.default_rng(seed)
    return (rng.choice([-1.0, 1.0], size=(4, 1, SIZE, SIZE)) * eps).astype(np.float32)


def plant(ds: ArrayDataset, deltas: np.ndarray, rows: np.ndarray) -> ArrayDataset:
    """``ds`` with clip(x + δ_y) in ``rows`` (stored as uint8, rounded toward the clean image)."""
    x = ds.float_x().copy()
    x[rows] = np.clip(x[rows] + deltas[ds.y[rows]], 0, 1)
    u8 = ds.x.astype(np.int16)
    new = np.round(x * 255).astype(np.int16)
    step = np.clip(new - u8, -51, 51)  # never beyond ε = 0.2 = 51/255
    return ArrayDataset((u8 + step).astype(np.uint8), ds.y, ds.num_classes, ds.name)
