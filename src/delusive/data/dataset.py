"""``ArrayDataset``: a whole split in memory, images N×C×H×W in [0,1] (uint8 meaning /255, or float32)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class ArrayDataset:
    """Images ``x`` (uint8 0..255 meaning value/255, or float32 in [0,1]), labels ``y`` (int64)."""

    x: np.ndarray
    y: np.ndarray
    num_classes: int
    name: str = ""
    classes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        x, y = self.x, self.y
        if x.ndim != 4:
            raise ValueError(f"ArrayDataset{self._n()}: x must be N×C×H×W, got shape {x.shape}")
        if x.dtype not in (np.uint8, np.float32):
            raise ValueError(f"ArrayDataset{self._n()}: x must be uint8 or float32, got {x.dtype}")
        if y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise ValueError(f"ArrayDataset{self._n()}: y must have shape ({x.shape[0]},), got {y.shape}")
        if y.dtype != np.int64:
            object.__setattr__(self, "y", y.astype(np.int64))
        if self.num_classes < 1:
            raise ValueError(f"ArrayDataset{self._n()}: num_classes must be >= 1")
        if len(y) and (int(self.y.min()) < 0 or int(self.y.max()) >= self.num_classes):
            raise ValueError(f"ArrayDataset{self._n()}: labels must lie in [0, {self.num_classes}), "
                             f"got [{int(self.y.min())}, {int(self.y.max())}]")
        if x.dtype == np.float32 and x.size and (float(x.min()) < 0 or float(x.max()) > 1 or
                                                 not np.isfinite(x).all()):
            raise ValueError(f"ArrayDataset{self._n()}: float images must lie in [0, 1]")
        if self.classes is not None and len(self.classes) != self.num_classes:
            raise ValueError(f"ArrayDataset{self._n()}: {len(self.classes)} class names for {self.num_classes} classes")

    def _n(self) -> str:
        return f" {self.name!r}" if self.name else ""

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.x.shape[1:])  # type: ignore[return-value]

    def subset(self, indices: np.ndarray | list[int]) -> ArrayDataset:
        idx = np.asarray(indices, dtype=np.int64)
        return ArrayDataset(self.x[idx], self.y[idx], self.num_classes, self.name, self.classes)

    def float_x(self) -> np.ndarray:
        return self.x.astype(np.float32) / 255.0 if self.x.dtype == np.uint8 else self.x

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(np.ascontiguousarray(self.float_x())), torch.from_numpy(self.y)

    def sha256(self) -> str:
        """Content hash over dtype, shape, pixels, labels and class count (stable across runs)."""
        h = hashlib.sha256()
        h.update(f"{self.x.dtype}|{self.x.shape}|{self.num_classes}|".encode())
        h.update(np.ascontiguousarray(self.x).tobytes())
        h.update(np.ascontiguousarray(self.y, dtype="<i8").tobytes())
        return h.hexdigest()

    def label_histogram(self) -> np.ndarray:
        return np.bincount(self.y, minlength=self.num_classes)


def make_synthetic(n: int, num_classes: int = 10, shape: tuple[int, int, int] = (1, 28, 28), seed: int = 0,
                   name: str = "synthetic") -> ArrayDataset:
    """A learnable toy set: each class is a fixed random blob pattern plus per-image noise (uint8).

    Deterministic for a seed; a small CNN learns it in one or two epochs, which makes it the fixture for
    fast tests of the whole pipeline.
    """
    if n < 1 or num_classes < 2:
        raise ValueError(f"make_synthetic: need n >= 1 and num_classes >= 2, got {n}, {num_classes}")
    rng = np.random.default_rng(seed)
    c, h, w = shape
    protos = rng.random((num_classes, c, h, w)) < 0.3
    y = np.arange(n) % num_classes
    rng.shuffle(y)
    base = np.where(protos[y], 0.75, 0.25)
    noise = rng.normal(0.0, 0.18, size=(n, c, h, w))
    x = np.clip(base + noise, 0, 1)
    return ArrayDataset(np.round(x * 255).astype(np.uint8), y.astype(np.int64), num_classes, name=name)
