"""Turn what a user holds — tensors, a torch ``Dataset`` or ``DataLoader``, an ``ArrayDataset`` — into the one
in-memory :class:`~delusive.data.ArrayDataset` every stage of the engine takes."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from delusive.data import ArrayDataset

DataLike = Any  # ArrayDataset | (images, labels) | torch.utils.data.Dataset | DataLoader


def as_dataset(data: DataLike, *, num_classes: int | None = None,
               classes: tuple[str, ...] | list[str] | None = None) -> ArrayDataset:
    """``data`` as an :class:`ArrayDataset` (images in [0, 1], N×C×H×W).

    Accepts an ``ArrayDataset`` (returned as is), a pair ``(images, labels)`` of tensors or arrays, or any
    iterable of ``(image, label)`` samples or ``(images, labels)`` batches: a ``Dataset`` or a ``DataLoader``
    (read once, in order; a shuffling loader gives a shuffled copy, which is fine for training). Class names
    default to the dataset's ``classes`` attribute where it has one (torchvision's do).
    """
    if isinstance(data, ArrayDataset):
        return data
    if isinstance(data, tuple | list) and len(data) == 2 and _is_array(data[0]):
        return ArrayDataset.from_tensors(data[0], data[1], num_classes, classes=classes)
    source = getattr(data, "dataset", data)  # a DataLoader's dataset carries the class names
    if classes is None and isinstance(getattr(source, "classes", None), list | tuple):
        classes = tuple(str(c) for c in source.classes)
    xs: list[torch.Tensor] = []
    ys: list[torch.Tensor] = []
    for item in data:
        if not (isinstance(item, tuple | list) and len(item) >= 2):
            raise TypeError(f"as_dataset: expected (image, label) samples or (images, labels) batches, got "
                            f"{type(item).__name__}")
        x, y = torch.as_tensor(item[0]), torch.as_tensor(item[1])
        batched = y.ndim == 1
        xs.append(x if batched else x.unsqueeze(0))
        ys.append(y if batched else y.reshape(1))
    if not xs:
        raise ValueError("as_dataset: the data is empty")
    return ArrayDataset.from_tensors(torch.cat(xs), torch.cat(ys), num_classes, classes=classes)


def _is_array(v: object) -> bool:
    return isinstance(v, torch.Tensor | np.ndarray)
