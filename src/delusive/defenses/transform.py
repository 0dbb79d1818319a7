"""Training-set transforms: defenses that rewrite the (possibly poisoned) training set ONCE, before training.

A transform maps an :class:`~delusive.data.ArrayDataset` to a new one with the same labels; the pipeline
(:func:`delusive.experiments.pipeline.train_and_evaluate`) applies the transforms of a defense to the whole
training set before it holds out the validation split, so the defender selects its epoch on data it has
transformed the same way; the clean test set is never transformed (as ISS and the orthogonal projection are
evaluated: training-time defenses). A transform's name and params are part of the run's identity (they are
listed under ``"transforms"`` in the objective's :meth:`~delusive.defenses.Objective.describe`), and so is
the transformed data's hash.

One module per transform (``jpeg.py``, ``grayscale.py``, ``bit_depth.py``, ``ortho_proj.py``); each registers
itself in :data:`TRANSFORMS`. How a transform is combined with a training objective (``jpeg+pgd_at``) is in
:mod:`delusive.defenses.compose`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from delusive.data import ArrayDataset
from delusive.registry import Registry, check_params, hyperparameters

_SKIP = ("self",)


class TrainingTransform:
    """A deterministic (given ``seed``) map of a training set; params are ``__init__`` keyword defaults."""

    name: ClassVar[str] = ""

    def apply(self, data: ArrayDataset, seed: int = 0) -> ArrayDataset:
        """The transformed training set (same labels, classes and name)."""
        self.check(data.shape)
        x = self.transform_images(data, seed)
        return ArrayDataset(x, data.y, data.num_classes, data.name, data.classes)

    def check(self, shape: tuple[int, int, int]) -> None:
        """Refuse data this transform cannot apply to (a ValueError naming the defense and the shape)."""

    def transform_images(self, data: ArrayDataset, seed: int) -> np.ndarray:
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in hyperparameters(type(self), _SKIP)}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "params": self.params()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{self.name}({args})"


TRANSFORMS: Registry[type[TrainingTransform]] = Registry("training-set transform")


def transform_names() -> list[str]:
    return TRANSFORMS.names()


def create_transform(name: str, **params: Any) -> TrainingTransform:
    """Build transform ``name``; unknown params are an error naming the allowed ones."""
    cls = TRANSFORMS.get(name)
    check_params("defense", name, cls, params, _SKIP)
    return cls(**params)


def as_uint8(data: ArrayDataset) -> np.ndarray:
    """The images as uint8 N×C×H×W: uint8 storage as is, float32 rounded to the nearest 1/255 step."""
    if data.x.dtype == np.uint8:
        return data.x
    return np.clip(np.rint(data.x * 255.0), 0, 255).astype(np.uint8)
