"""Writers of small dataset files in exactly the real on-disk formats (used by tests/test_data_*.py).

- IDX (MNIST, Fashion-MNIST): big-endian magic 0x00000803 / 0x00000801, sizes, uint8 payload; raw or .gz.
- CIFAR-10 python batches: a protocol-2 pickle of a dict with byte-string keys, as Python 2's cPickle wrote
  them (``Py2Pickler`` emits str/bytes as SHORT_BINSTRING/BINSTRING and numpy's legacy global names, so
  ``pickle.load(encoding='bytes')`` sees what it sees on the official files), or as Python 3 writes
  protocol 2 (bytes through ``_codecs.encode``).
- SVHN: MATLAB v5 ``.mat`` with ``X`` uint8 32×32×3×N and ``y`` N×1 labels 1..10 (10 = digit 0).
- Image folders: PNG files in class sub-folders.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np

IDX_NAMES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
CIFAR_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]


def idx_images_bytes(images: np.ndarray, magic: int = 0x00000803) -> bytes:
    n, h, w = images.shape
    return struct.pack(">IIII", magic, n, h, w) + np.asarray(images, dtype=np.uint8).tobytes()


def idx_labels_bytes(labels: np.ndarray, magic: int = 0x00000801, count: int | None = None) -> bytes:
    return struct.pack(">II", magic, len(labels) if count is None else count) + np.asarray(labels, np.uint8).tobytes()


def write_bytes(path: Path, data: bytes, gz: bool = False) -> Path:
    path = Path(str(path) + ".gz") if gz else Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_idx_split(folder: Path, split: str, images: np.ndarray, labels: np.ndarray, gz: bool = False) -> None:
    """One split of an MNIST-style dataset: ``<prefix>-images-idx3-ubyte`` and ``-labels-idx1-ubyte``."""
    img_name, lbl_name = IDX_NAMES[split]
    write_bytes(folder / img_name, idx_images_bytes(images), gz)
    write_bytes(folder / lbl_name, idx_labels_bytes(labels), gz)


class Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Protocol-2 pickles as Python 2's cPickle wrote them: every str/bytes as a (byte) string, and numpy's
    ``numpy.core.multiarray._reconstruct`` / ``numpy.ndarray`` / ``numpy.dtype`` global names."""

    dispatch = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]

    def save_py2_string(self, obj: str | bytes) -> None:
        data = obj if isinstance(obj, bytes) else obj.encode("latin-1")
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = save_py2_string
    dispatch[str] = save_py2_string

    def save_global(self, obj: Any, name: str | None = None) -> None:
        module, qual = getattr(obj, "__module__", ""), name or obj.__qualname__
        if obj is np.ndarray:
            module, qual = "numpy", "ndarray"
        elif obj is np.dtype:
            module, qual = "numpy", "dtype"
        elif module == "numpy._core.multiarray":
            module = "numpy.core.multiarray"
        self.write(pickle.GLOBAL + f"{module}\n{qual}\n".encode())
        self.memoize(obj)


def py2_pickle(obj: Any) -> bytes:
    import io

    f = io.BytesIO()
    Py2Pickler(f, protocol=2).dump(obj)
    return f.getvalue()


def cifar_batch(n: int, seed: int, label: str = "training batch") -> dict[bytes, Any]:
    rng = np.random.default_rng(seed)
    return {b"batch_label": label.encode(), b"labels": [int(v) for v in rng.integers(0, 10, n)],
            b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8),
            b"filenames": [f"img_{seed}_{i}.png".encode() for i in range(n)]}


def write_cifar(root: Path, n: int = 4, py2: bool = True) -> dict[str, dict[bytes, Any]]:
    """``root/cifar-10-batches-py/`` with data_batch_1..5, test_batch and batches.meta; returns the batches."""
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True, exist_ok=True)
    dump = py2_pickle if py2 else (lambda o: pickle.dumps(o, protocol=2))
    batches = {}
    for i, name in enumerate([*CIFAR_TRAIN, "test_batch"]):
        batches[name] = cifar_batch(n, i)
        (d / name).write_bytes(dump(batches[name]))
    meta = {b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse",
                             b"ship", b"truck"], b"num_cases_per_batch": n, b"num_vis": 3072}
    (d / "batches.meta").write_bytes(dump(meta))
    return batches


def write_svhn(folder: Path, split: str, labels_1_to_10: list[int], seed: int = 0) -> np.ndarray:
    """``<split>_32x32.mat`` as published (X: 32×32×3×N uint8, y: N×1 uint8); returns X."""
    from scipy.io import savemat

    folder.mkdir(parents=True, exist_ok=True)
    n = len(labels_1_to_10)
    x = np.random.default_rng(seed).integers(0, 256, (32, 32, 3, n)).astype(np.uint8)
    savemat(folder / f"{split}_32x32.mat", {"X": x, "y": np.asarray(labels_1_to_10, np.uint8).reshape(n, 1)})
    return x


def write_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
