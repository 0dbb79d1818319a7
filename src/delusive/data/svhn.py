"""SVHN cropped digits (``train_32x32.mat``, ``test_32x32.mat``, ``extra_32x32.mat``, MATLAB v5)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from delusive.data.errors import DataError

FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat", "extra": "extra_32x32.mat"}


def read_svhn(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images N×3×32×32 and labels 0..9 (the file's label 10 means the digit 0)."""
    from scipy.io import loadmat

    path = Path(path)
    try:
        mat = loadmat(path)
    except Exception as e:  # noqa: BLE001 - scipy raises many types for a bad file
        raise DataError(path, f"not a readable MATLAB file ({e})") from e
    if "X" not in mat or "y" not in mat:
        raise DataError(path, "expected variables 'X' and 'y'")
    x, y = mat["X"], np.asarray(mat["y"]).reshape(-1)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.dtype != np.uint8:
        raise DataError(path, f"'X' must be uint8 32×32×3×N, got {x.dtype} {x.shape}")
    if y.shape[0] != x.shape[3]:
        raise DataError(path, f"{y.shape[0]} labels for {x.shape[3]} images")
    y = y.astype(np.int64)
    if y.size and (y.min() < 1 or y.max() > 10):
        raise DataError(path, f"labels must lie in 1..10 (10 = digit 0), got [{y.min()}, {y.max()}]")
    y[y == 10] = 0
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), y
