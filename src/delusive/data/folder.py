"""A folder of images per class: ``root/<class name>/*.png|jpg|…`` (classes sorted by name).

Files whose suffix is not an image suffix (notes, ``.DS_Store``, …) are skipped; a file with an image
suffix that does not decode, that is not a regular file (a FIFO, a device, a symlink to ``/dev/zero``), that
PIL refuses as a decompression bomb, or an image whose size differs from the first one, is a
:class:`DataError` naming that file. A class folder that exists but holds no image is a :class:`DataError`
naming the folder: a class with no training image is a mistake, not a class. All images must share one
size (no resizing here: that would silently change the data).
Channels: if every image is grey-scale (PIL modes 1, L, LA, I, I;16) the set is 1×H×W, otherwise every
image is converted to RGB (3×H×W); alpha is dropped; 16-bit grey values are scaled to 8 bits (v / 257).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from delusive.data.errors import DataError
from delusive.utils.safefile import UnsafeFileError, open_regular

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
_GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N")


def class_folders(root: str | Path) -> tuple[str, ...]:
    """Names of the visible sub-folders of ``root``, sorted: the class names, label k = k-th name."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "not a directory")
    return tuple(sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")))


def _decode(path: Path) -> tuple[bool, np.ndarray]:
    """(is grey, H×W uint8 or H×W×3 uint8) for one image file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with open_regular(path) as f, Image.open(f) as im:
            im.load()
            mode = im.mode
            if mode.startswith("I"):
                arr = np.asarray(im, dtype=np.float64)
                return True, np.clip(np.round(arr / 257.0), 0, 255).astype(np.uint8)
            if mode in _GREY_MODES:
                return True, np.asarray(im.convert("L"), dtype=np.uint8)
            return False, np.asarray(im.convert("RGB"), dtype=np.uint8)
    except UnsafeFileError as e:
        raise DataError(path, e.problem) from None
    except Image.DecompressionBombError as e:
        raise DataError(path, f"refused as a possible decompression bomb ({e})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as e:  # PIL's errors for bad files
        raise DataError(path, f"not a readable image ({type(e).__name__}: {e})") from e


def read_image_folder(root: str | Path, classes: tuple[str, ...] | None = None
                      ) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """uint8 images N×C×H×W, int64 labels and the class names of ``root``.

    ``classes`` fixes the class list (and so the label of each name), e.g. the union over a dataset's
    train/ and test/ folders so that both splits label a class alike; a listed class without a folder
    here simply has no images. Default: the sub-folders of ``root``.
    """
    root = Path(root)
    if classes is None:
        classes = class_folders(root)
    if not classes:
        raise DataError(root, "no class sub-folders found (expected root/<class name>/<image files>)")
    files: list[tuple[Path, int]] = []
    for k, c in enumerate(classes):
        d = root / c
        if d.is_dir():
            found = [(p, k) for p in sorted(d.iterdir())
                     if not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES]
            if not found:
                raise DataError(d, f"class folder {c!r} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                                   "remove it or add its images")
            files += found
    if not files:
        raise DataError(root, f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in the class folders")
    decoded = [_decode(p) for p, _ in files]
    grey = all(g for g, _ in decoded)
    size = decoded[0][1].shape[:2]
    out = np.empty((len(files), 1 if grey else 3, *size), dtype=np.uint8)
    for i, ((p, _), (g, arr)) in enumerate(zip(files, decoded, strict=True)):
        if arr.shape[:2] != size:
            raise DataError(p, f"size {arr.shape[1]}×{arr.shape[0]} (W×H) differs from {size[1]}×{size[0]} of "
                               f"{files[0][0]}; all images must share one size")
        out[i] = arr[None] if grey else (np.repeat(arr[None], 3, axis=0) if g else arr.transpose(2, 0, 1))
    return out, np.array([k for _, k in files], dtype=np.int64), tuple(classes)


def read_labelled_folder(root: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images and int64 labels of a flat folder of images listed in ``root/labels.csv``
    (``filename,label``; the layout ``delusive export`` writes), in the table's order. Every row must name a
    regular image file inside ``root``; labels must be integers >= 0."""
    import csv
    import io

    from delusive.utils.safefile import member, name_problem, read_regular_bytes

    root = Path(root)
    table = root / "labels.csv"
    text = read_regular_bytes(member(root, "labels.csv", "table")).decode("utf-8", errors="replace")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not {"filename", "label"} <= set(reader.fieldnames or []):
        raise DataError(table, f"expected columns filename,label, got {reader.fieldnames}")
    files: list[Path] = []
    labels: list[int] = []
    for row in reader:
        problem = name_problem(row["filename"])
        if problem is not None:
            raise DataError(table, f"line {reader.line_num}: filename {problem}")
        try:
            label = int(row["label"])
        except (TypeError, ValueError):
            label = -1
        if label < 0:
            raise DataError(table, f"line {reader.line_num}: label must be an integer >= 0, got {row['label']!r}")
        try:
            files.append(member(root, row["filename"], f"labels.csv line {reader.line_num}: file"))
        except UnsafeFileError as e:
            raise DataError(table, str(e)) from None
        labels.append(label)
    if not files:
        raise DataError(table, "lists no images")
    decoded = [_decode(p) for p in files]
    grey = all(g for g, _ in decoded)
    size = decoded[0][1].shape[:2]
    out = np.empty((len(files), 1 if grey else 3, *size), dtype=np.uint8)
    for i, (p, (g, arr)) in enumerate(zip(files, decoded, strict=True)):
        if arr.shape[:2] != size:
            raise DataError(p, f"size {arr.shape[1]}×{arr.shape[0]} (W×H) differs from {size[1]}×{size[0]}")
        out[i] = arr[None] if grey else (np.repeat(arr[None], 3, axis=0) if g else arr.transpose(2, 0, 1))
    return out, np.array(labels, dtype=np.int64)
