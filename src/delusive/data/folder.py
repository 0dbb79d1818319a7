"""A folder of images per class: ``root/<class name>/*.png|jpg|…`` (classes sorted by name)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from delusive.data.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def read_image_folder(root: str | Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """uint8 images N×C×H×W (grey-scale if every image is, else RGB), labels and class names."""
    from PIL import Image, UnidentifiedImageError

    root = Path(root)
    classes = tuple(sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")))
    if not classes:
        raise DataError(root, "no class sub-folders found")
    files: list[tuple[Path, int]] = []
    for k, c in enumerate(classes):
        for p in sorted((root / c).iterdir()):
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
                files.append((p, k))
    if not files:
        raise DataError(root, f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in the class folders")
    images = []
    for p, _ in files:
        try:
            with Image.open(p) as im:
                images.append((im.mode, np.asarray(im.convert("RGB"))))
        except (UnidentifiedImageError, OSError) as e:
            raise DataError(p, f"not a readable image ({e})") from e
    grey = all(mode in ("L", "1", "I;16", "I") for mode, _ in images)
    size = images[0][1].shape[:2]
    out = []
    for (p, _), (_, arr) in zip(files, images, strict=True):
        if arr.shape[:2] != size:
            raise DataError(p, f"size {arr.shape[1]}×{arr.shape[0]} differs from the first image's {size[1]}×{size[0]}")
        out.append(arr[..., :1].transpose(2, 0, 1) if grey else arr.transpose(2, 0, 1))
    return np.stack(out).astype(np.uint8), np.array([k for _, k in files], dtype=np.int64), classes
