"""Readers for IDX files (MNIST, Fashion-MNIST), raw or gzip-compressed.

IDX layout: a 4-byte big-endian magic ``0x0000 TT DD`` (TT = element type, 0x08 = uint8; DD = number of
dimensions), then DD big-endian uint32 sizes, then the elements. Images are ``0x00000803`` (N×H×W) and
labels ``0x00000801`` (N). Every check failure raises :class:`DataError` naming the file.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

from delusive.data.errors import DataError
from delusive.utils.safefile import open_regular

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801


# deflate cannot expand data by more than about 1032:1; a .gz whose header promises more than this many
# times its own size cannot hold what it promises (a "gzip bomb", or a header that lies)
_MAX_GZIP_RATIO = 1100


def _read_bytes(path: Path, magic: int) -> bytes:
    """The file's payload (decompressed when its name ends in ``.gz``), read with a bound: the header is read
    first and at most the size it promises (plus one byte, to detect trailing data) is read after it, so a
    sparse 40 GiB file or a .gz that inflates to gigabytes is refused by name instead of filling memory."""
    ndim = magic & 0xFF
    head_size = 4 + 4 * ndim
    try:
        with open_regular(path) as raw:
            stored = os.fstat(raw.fileno()).st_size
            f = gzip.GzipFile(fileobj=raw, mode="rb") if path.suffix == ".gz" else raw
            head = f.read(head_size)
            if len(head) < head_size:
                return head  # _header reports the truncated header
            sizes = [int.from_bytes(head[i : i + 4], "big") for i in range(4, head_size, 4)]
            need = head_size + math.prod(sizes)
            gz = path.suffix == ".gz"
            limit = stored * _MAX_GZIP_RATIO + 64 if gz else stored
            if int.from_bytes(head[:4], "big") != magic:
                return head  # _header names the bad magic number
            what = "×".join(map(str, sizes)) + (" images" if ndim == 3 else " labels")
            if need > limit:
                if gz:
                    raise DataError(path, f"truncated: a .gz of {stored} bytes, the header promises {need} ({what}), "
                                    "more than it can inflate to")
                raise DataError(path, f"truncated: {stored} bytes, the header promises {need} ({what})")
            if not gz and stored > need:
                raise DataError(path, f"trailing bytes: {stored} bytes, the header promises {need} ({what})")
            data = head + f.read(need - head_size + 1)
            if len(data) > need:
                raise DataError(path, f"trailing bytes: the stream inflates to more than the {need} bytes the "
                                f"header promises ({what})")
            return data
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError; a cut-off stream is EOFError
        raise DataError(path, f"cannot read ({type(e).__name__}: {e})") from e


def _header(path: Path, data: bytes, magic: int, kind: str) -> list[int]:
    ndim = magic & 0xFF
    size = 4 + 4 * ndim
    if len(data) < 4:
        raise DataError(path, f"truncated IDX header: {len(data)} bytes")
    got = int.from_bytes(data[:4], "big")
    if got != magic:
        raise DataError(path, f"bad magic number {got:#010x}, expected {magic:#010x} ({kind})")
    if len(data) < size:
        raise DataError(path, f"truncated IDX header: {len(data)} bytes, expected {size}")
    return [int.from_bytes(data[i : i + 4], "big") for i in range(4, size, 4)]


def read_idx_images(path: str | Path) -> np.ndarray:
    """uint8 images N×1×H×W from an IDX3 file."""
    path = Path(path)
    data = _read_bytes(path, IMAGES_MAGIC)
    n, h, w = _header(path, data, IMAGES_MAGIC, "IDX uint8 images N×H×W")
    need = 16 + n * h * w
    if len(data) != need:
        what = "truncated" if len(data) < need else "trailing bytes"
        raise DataError(path, f"{what}: {len(data)} bytes, the header promises {need} ({n}×{h}×{w} images)")
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, 1, h, w).copy()


def read_idx_labels(path: str | Path, num_classes: int = 10) -> np.ndarray:
    """int64 labels from an IDX1 file, checked to lie in [0, num_classes)."""
    path = Path(path)
    data = _read_bytes(path, LABELS_MAGIC)
    (n,) = _header(path, data, LABELS_MAGIC, "IDX uint8 labels")
    if len(data) != 8 + n:
        what = "truncated" if len(data) < 8 + n else "trailing bytes"
        raise DataError(path, f"{what}: {len(data)} bytes, the header promises {8 + n} ({n} labels)")
    y = np.frombuffer(data, dtype=np.uint8, offset=8).astype(np.int64)
    if n and int(y.max()) >= num_classes:
        bad = int(np.flatnonzero(y >= num_classes)[0])
        raise DataError(path, f"label {int(y[bad])} at index {bad} is out of range [0, {num_classes})")
    return y


def read_idx_pair(images: str | Path, labels: str | Path, num_classes: int = 10,
                  image_size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of one split; counts must agree and, if given, images must be ``image_size`` (H, W)."""
    x, y = read_idx_images(images), read_idx_labels(labels, num_classes)
    if image_size is not None and x.shape[2:] != tuple(image_size):
        raise DataError(images, f"images are {x.shape[2]}×{x.shape[3]}, expected {image_size[0]}×{image_size[1]}")
    if x.shape[0] != y.shape[0]:
        raise DataError(labels, f"{y.shape[0]} labels for {x.shape[0]} images in {images}")
    return x, y
