"""Rotation views for rotation-prediction self-supervised learning (Gidaris et al. 2018; paper Sec. 5.2).

The pretext task labels an image by the rotation applied to it: 0 → 0°, 1 → 90°, 2 → 180°, 3 → 270°. A
rotation view is an ordinary :class:`ArrayDataset` with those 4 labels, so every attack (which perturbs a
labelled training set) and every defense (which trains on one) applies to the pretext task unchanged; the
representation is then judged by a linear probe on the clean base data (``delusive.evaluation.probe``).

Direction: rotation k turns the image by k·90° **counter-clockwise** as displayed (row 0 at the top), i.e.
``numpy.rot90(img, k, axes=(-2, -1))`` = ``torch.rot90(img, k, dims=(-2, -1))``: the top row becomes the
left column. Layout: rotation-major, row ``k·N + i`` is base image ``i`` turned by rotation ``k``. Only
square images (a 90° turn must keep the shape).

Catalog name ``rot:<dataset>`` (e.g. ``rot:fashion-mnist``): the rotation view of the base dataset's split.
Its augmentation keeps the base's random-crop padding (a padded crop commutes with a quarter turn) but never
flips: a horizontal flip turns a 90° view into what looks like a 270° view of a mirrored image, so flipping
after rotating would corrupt the labels (Gidaris et al. flip before rotating).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from delusive.data.catalog import DatasetInfo, dataset_info, load_dataset
from delusive.data.dataset import ArrayDataset

__all__ = ["PREFIX", "ROTATIONS", "is_rotation", "load_rotation", "rotation_dataset", "rotation_info"]

PREFIX = "rot:"
ROTATIONS = ("0°", "90°", "180°", "270°")


def is_rotation(name: str) -> bool:
    return name.startswith(PREFIX)


def _base_name(name: str) -> str:
    base = name.removeprefix(PREFIX)
    if not base:
        raise ValueError(f"dataset {name!r}: expected rot:<dataset>, e.g. rot:fashion-mnist")
    if is_rotation(base):
        raise ValueError(f"dataset {name!r}: a rotation view of a rotation view is not supported")
    return base


def rotation_info(name: str) -> DatasetInfo:
    """The catalog entry of ``rot:<dataset>``: 4 classes, the base's shape, splits and crop padding, no flips."""
    base = dataset_info(_base_name(name))
    _, h, w = base.shape
    if h != w:
        raise ValueError(f"dataset {name!r}: rotation views need square images, {base.name} is {h}×{w}")
    return DatasetInfo(name, len(ROTATIONS), base.shape, base.splits, base.crop_padding, False, ROTATIONS, "",
                       f"it is built from {base.name}: {base.how_to_get}")


def rotation_dataset(ds: ArrayDataset, name: str | None = None) -> ArrayDataset:
    """The 4·N images of ``ds`` turned by 0°, 90°, 180° and 270° (see the module docstring), labelled 0..3."""
    _, h, w = ds.shape
    if h != w:
        raise ValueError(f"rotation_dataset: images must be square, got {h}×{w}"
                         f"{' in ' + repr(ds.name) if ds.name else ''}")
    x = np.concatenate([np.rot90(ds.x, k, axes=(2, 3)) for k in range(len(ROTATIONS))])
    y = np.repeat(np.arange(len(ROTATIONS), dtype=np.int64), len(ds))
    return ArrayDataset(np.ascontiguousarray(x), y, len(ROTATIONS), name=name or f"{PREFIX}{ds.name}",
                        classes=ROTATIONS)


def load_rotation(name: str, split: str = "train", root: str | Path | None = None,
                  download: bool = False) -> ArrayDataset:
    """Split ``split`` of ``rot:<dataset>``: the base split's rotation view."""
    base = _base_name(name)
    return rotation_dataset(load_dataset(base, split, root=root, download=download), name=name)
