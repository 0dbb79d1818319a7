"""``ArrayDataset``: a whole split in memory, images N×C×H×W in [0,1] (uint8 meaning /255, or float32).

Every reader returns one, and every later stage (crafting, training, verification) takes one, so the
checks here (shape, dtype, value and label range) are made once, at the boundary.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class ArrayDataset:
    """Images ``x`` (uint8 0..255 meaning value/255, or float32 in [0,1]) and labels ``y`` (int64).

    The arrays are not copied; treat them as read-only (``subset`` and ``float_x`` make new arrays).
    """

    x: np.ndarray
    y: np.ndarray
    num_classes: int
    name: str = ""
    classes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        x, y = self.x, self.y
        if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
            raise TypeError(f"ArrayDataset{self._n()}: x and y must be numpy arrays, got "
                            f"{type(x).__name__} and {type(y).__name__}")
        if x.ndim != 4:
            raise ValueError(f"ArrayDataset{self._n()}: x must be N×C×H×W, got shape {x.shape}")
        if x.dtype not in (np.uint8, np.float32):
            raise ValueError(f"ArrayDataset{self._n()}: x must be uint8 or float32, got {x.dtype}")
        if y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise ValueError(f"ArrayDataset{self._n()}: y must have shape ({x.shape[0]},), got {y.shape}")
        if y.dtype.kind not in "iu":
            raise ValueError(f"ArrayDataset{self._n()}: y must hold integers, got {y.dtype}")
        if y.dtype != np.int64:
            object.__setattr__(self, "y", y.astype(np.int64))
        if int(self.num_classes) < 1:
            raise ValueError(f"ArrayDataset{self._n()}: num_classes must be >= 1, got {self.num_classes}")
        if len(y) and (int(self.y.min()) < 0 or int(self.y.max()) >= self.num_classes):
            raise ValueError(f"ArrayDataset{self._n()}: labels must lie in [0, {self.num_classes}), "
                             f"got [{int(self.y.min())}, {int(self.y.max())}]")
        if x.dtype == np.float32 and x.size and not (np.isfinite(x).all() and float(x.min()) >= 0
                                                     and float(x.max()) <= 1):
            raise ValueError(f"ArrayDataset{self._n()}: float images must lie in [0, 1] (and be finite)")
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
            if len(self.classes) != self.num_classes:
                raise ValueError(f"ArrayDataset{self._n()}: {len(self.classes)} class names for "
                                 f"{self.num_classes} classes")

    @classmethod
    def from_tensors(cls, x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray, num_classes: int | None = None,
                     *, name: str = "", classes: tuple[str, ...] | list[str] | None = None) -> ArrayDataset:
        """A dataset from image and label tensors (or arrays): ``x`` N×C×H×W, float in [0, 1] or uint8, on any
        device (copied to the CPU); ``num_classes`` defaults to ``len(classes)``, else the largest label + 1."""
        xs = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        ys = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
        if xs.dtype != np.uint8:
            xs = xs.astype(np.float32, copy=False)
        if num_classes is None:
            num_classes = len(classes) if classes is not None else int(ys.max(initial=0)) + 1
        return cls(xs, ys.astype(np.int64, copy=False), int(num_classes), name,
                   tuple(classes) if classes is not None else None)

    def _n(self) -> str:
        return f" {self.name!r}" if self.name else ""

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        c, h, w = (int(s) for s in self.x.shape[1:])
        return c, h, w

    def subset(self, indices: np.ndarray | list[int]) -> ArrayDataset:
        """The rows ``indices`` (in that order) as a new dataset with the same classes."""
        idx = np.asarray(indices, dtype=np.int64)
        return ArrayDataset(self.x[idx], self.y[idx], self.num_classes, self.name, self.classes)

    def float_x(self) -> np.ndarray:
        """Images as float32 in [0, 1]: a new array for uint8 storage, ``x`` itself for float32."""
        return self.x.astype(np.float32) / np.float32(255.0) if self.x.dtype == np.uint8 else self.x

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(float32 N×C×H×W in [0, 1], int64 labels) on the CPU; float32 storage is shared, not copied."""
        return torch.from_numpy(np.ascontiguousarray(self.float_x())), torch.from_numpy(np.ascontiguousarray(self.y))

    def sha256(self) -> str:
        """Content hash over dtype, shape, class count, pixels and labels: the dataset's identity in caches.

        Name and class names are left out on purpose: the same pixels and labels are the same data.
        """
        h = hashlib.sha256()
        h.update(f"{self.x.dtype}|{self.x.shape}|{self.num_classes}|".encode())
        h.update(np.ascontiguousarray(self.x).tobytes())
        h.update(np.ascontiguousarray(self.y, dtype="<i8").tobytes())
        return h.hexdigest()

    def label_histogram(self) -> np.ndarray:
        """Number of images per class (length ``num_classes``)."""
        return np.bincount(self.y, minlength=self.num_classes)


def make_synthetic(n: int, num_classes: int = 10, shape: tuple[int, int, int] = (1, 28, 28), seed: int = 0,
                   name: str = "synthetic", *, sample_seed: int | None = None) -> ArrayDataset:
    """A learnable toy set: each class is a fixed random binary pattern (pixels at 0.25 or 0.75) plus
    Gaussian noise (σ = 0.18), stored as uint8; labels are balanced (``arange(n) % num_classes``, shuffled).

    ``seed`` fixes everything: the class patterns *and* the samples. To draw a fresh, disjoint sample of
    the *same* task (a held-out split), keep ``seed`` and pass a ``sample_seed``: the patterns still come
    from ``seed``, labels and noise from ``sample_seed``. A small CNN learns the task in one or two
    epochs, which makes it the fixture for fast tests of the whole pipeline.
    """
    if n < 1 or num_classes < 2:
        raise ValueError(f"make_synthetic: need n >= 1 and num_classes >= 2, got n={n}, num_classes={num_classes}")
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"make_synthetic: shape must be (C, H, W) with positive sizes, got {shape}")
    rng = np.random.default_rng(seed)
    c, h, w = (int(s) for s in shape)
    protos = rng.random((num_classes, c, h, w)) < 0.3
    if sample_seed is not None:
        rng = np.random.default_rng([int(seed), int(sample_seed), 0x5A4D])
    y = np.arange(n) % num_classes
    rng.shuffle(y)
    base = np.where(protos[y], 0.75, 0.25)
    noise = rng.normal(0.0, 0.18, size=(n, c, h, w))
    x = np.clip(base + noise, 0, 1)
    return ArrayDataset(np.round(x * 255).astype(np.uint8), y.astype(np.int64), num_classes, name=name)


def holdout_split(ds: ArrayDataset, fraction: float, seed: int = 0) -> tuple[ArrayDataset, ArrayDataset]:
    """(train, test): a seeded, class-stratified ``fraction`` of ``ds`` held out as a test split, for a folder
    that has only one split. Each class with at least two images gives round(fraction·n_k) of them (at least
    one) to the test part; both parts keep ``ds``'s order (sorted indices), so the split is the same for the
    same data, fraction and seed on every machine."""
    if isinstance(fraction, bool) or not 0 < float(fraction) < 1:
        raise ValueError(f"--test-fraction: must lie strictly between 0 and 1, got {fraction!r}")
    rng = np.random.default_rng([int(seed), 0x7E57])
    test: list[np.ndarray] = []
    for k in range(ds.num_classes):
        idx = np.flatnonzero(ds.y == k)
        if idx.size < 2:
            continue
        take = min(max(1, int(round(float(fraction) * idx.size))), idx.size - 1)
        test.append(rng.permutation(idx)[:take])
    chosen = np.sort(np.concatenate(test)) if test else np.zeros(0, np.int64)
    if chosen.size == 0:
        raise ValueError(f"--test-fraction {fraction}: no class of {ds.name or 'the dataset'} has two images to split")
    keep = np.ones(len(ds), dtype=bool)
    keep[chosen] = False
    return ds.subset(np.flatnonzero(keep)), ds.subset(chosen)
