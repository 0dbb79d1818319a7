"""SVHN cropped digits (``train_32x32.mat``, ``test_32x32.mat``, ``extra_32x32.mat``; MATLAB v5 files).

Each file holds ``X``: uint8 32×32×3×N (H, W, C, N) and ``y``: N×1 labels 1..10, where 10 stands for the
digit 0. The reader returns N×3×32×32 images and labels 0..9 (10 → 0), so label k is the digit k.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from delusive.data.errors import DataError

FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat", "extra": "extra_32x32.mat"}


def read_svhn(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images N×3×32×32 and int64 labels 0..9 (the file's label 10 means the digit 0)."""
    from scipy.io import loadmat

    path = Path(path)
    try:
        mat = loadmat(path, variable_names=("X", "y"))
    except Exception as e:  # scipy raises many types (ValueError, TypeError, NotImplementedError for v7.3, …)
        raise DataError(path, f"not a readable MATLAB v5 file ({type(e).__name__}: {e})") from e
    if "X" not in mat or "y" not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise DataError(path, f"expected variables 'X' and 'y', found {found}")
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"])
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.dtype != np.uint8:
        raise DataError(path, f"'X' must be uint8 32×32×3×N, got {x.dtype} {x.shape}")
    if y.dtype.kind not in "iuf" or y.ndim not in (1, 2) or (y.ndim == 2 and 1 not in y.shape):
        raise DataError(path, f"'y' must be an N×1 array of labels, got {y.dtype} {y.shape}")
    y = y.reshape(-1)
    if y.shape[0] != x.shape[3]:
        raise DataError(path, f"{y.shape[0]} labels for {x.shape[3]} images")
    if y.size and (not np.array_equal(y, np.round(y)) or y.min() < 1 or y.max() > 10):
        bad = int(np.flatnonzero((y != np.round(y)) | (y < 1) | (y > 10))[0])
        raise DataError(path, f"label {y[bad]} at index {bad} is out of range: labels must lie in 1..10 "
                              "(10 = digit 0)")
    labels = y.astype(np.int64)
    labels[labels == 10] = 0
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), labels
