"""CIFAR-10 python batches (``cifar-10-batches-py``) read through a restricted unpickler.

The official batches are pickles; a pickle can run arbitrary code, so only plain containers, bytes, str,
numbers and numpy arrays (the objects numpy needs to rebuild an ndarray) may be constructed. Anything else
(``os.system``, ``builtins.eval``, …) raises :class:`DataError` before it is called.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from delusive.data.errors import DataError

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how Python 3 writes bytes in a protocol-2 pickle: str -> bytes, nothing more
}
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
META_FILE = "batches.meta"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class RestrictedUnpickler(pickle.Unpickler):
    """Admits only numpy's array-rebuilding callables; every other global is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def safe_unpickle(path: str | Path) -> Any:
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return RestrictedUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError,
            IndexError, KeyError) as e:
        raise DataError(path, f"not a plain CIFAR-10 batch pickle ({e})") from e


def _get(d: dict, key: str) -> Any:
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise KeyError(key)


def read_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images N×3×32×32 and int64 labels of one batch file."""
    path = Path(path)
    obj = safe_unpickle(path)
    if not isinstance(obj, dict):
        raise DataError(path, f"expected a dict, got {type(obj).__name__}")
    try:
        data, labels = _get(obj, "data"), _get(obj, "labels")
    except KeyError as e:
        raise DataError(path, f"missing key {e}") from None
    data = np.asarray(data)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(path, f"data must be uint8 N×3072, got {data.dtype} {data.shape}")
    y = np.asarray(labels, dtype=np.int64)
    if y.shape != (data.shape[0],):
        raise DataError(path, f"{y.shape[0] if y.ndim else 0} labels for {data.shape[0]} images")
    if y.size and (y.min() < 0 or y.max() > 9):
        raise DataError(path, f"labels must lie in [0, 10), got [{y.min()}, {y.max()}]")
    return data.reshape(-1, 3, 32, 32).copy(), y


def read_cifar10(folder: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    files = TRAIN_FILES if split == "train" else TEST_FILES
    parts = [read_batch(Path(folder) / f) for f in files]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
