"""Readers for IDX files (MNIST, Fashion-MNIST), raw or gzip-compressed."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from delusive.data.errors import DataError

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(path, f"cannot read ({e})") from e


def read_idx_images(path: str | Path) -> np.ndarray:
    """uint8 images N×1×H×W from an IDX3 file."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 16:
        raise DataError(path, "truncated IDX header (expected 16 bytes)")
    magic, n, h, w = (int.from_bytes(data[i : i + 4], "big") for i in range(0, 16, 4))
    if magic != IMAGES_MAGIC:
        raise DataError(path, f"bad magic number {magic:#010x}, expected {IMAGES_MAGIC:#010x} (IDX images)")
    need = 16 + n * h * w
    if len(data) != need:
        raise DataError(path, f"truncated or oversized: {len(data)} bytes, header promises {need} ({n}×{h}×{w})")
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, 1, h, w).copy()


def read_idx_labels(path: str | Path, num_classes: int = 10) -> np.ndarray:
    """int64 labels from an IDX1 file, checked to lie in [0, num_classes)."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 8:
        raise DataError(path, "truncated IDX header (expected 8 bytes)")
    magic, n = (int.from_bytes(data[i : i + 4], "big") for i in (0, 4))
    if magic != LABELS_MAGIC:
        raise DataError(path, f"bad magic number {magic:#010x}, expected {LABELS_MAGIC:#010x} (IDX labels)")
    if len(data) != 8 + n:
        raise DataError(path, f"truncated or oversized: {len(data)} bytes, header promises {8 + n}")
    y = np.frombuffer(data, dtype=np.uint8, offset=8).astype(np.int64)
    if n and int(y.max()) >= num_classes:
        bad = int(np.flatnonzero(y >= num_classes)[0])
        raise DataError(path, f"label {int(y[bad])} at index {bad} is out of range [0, {num_classes})")
    return y


def read_idx_pair(images: str | Path, labels: str | Path, num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    x, y = read_idx_images(images), read_idx_labels(labels, num_classes)
    if x.shape[0] != y.shape[0]:
        raise DataError(labels, f"{y.shape[0]} labels for {x.shape[0]} images in {images}")
    return x, y
