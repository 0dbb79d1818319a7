"""Checks, made before any work, that a model and a dataset fit each other and that an attack can run on them.

A model evaluated (or fine-tuned) on data of another shape fails deep inside torch with a message about
weight sizes or matrix products; a 10-class model scored on 3-class labels silently reports a number. Both
are user errors, answered here in one line that names both shapes, from the model's own record
(``model.json``: ``in_channels``, ``image_size``, ``num_classes``) and the loaded data, before a batch runs.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from delusive.data import ArrayDataset

# attacks whose loss needs more classes than a classifier has at least (2): APGD-T's targeted DLR loss uses
# the 3rd and 4th largest logits (Croce & Hein 2020, eq. 7), so it needs 4. AutoAttack drops APGD-T on
# fewer classes (evaluation.attacks), so it is not listed.
MIN_CLASSES = {"apgd-t": 4}


def check_eval_attack(attack: str | None, num_classes: int, option: str = "--eval-attack",
                      dataset: str | None = None) -> None:
    """Refuse, before training, an evaluation attack that cannot run on ``num_classes`` classes."""
    need = MIN_CLASSES.get(str(attack), 2)
    if num_classes < need:
        name = f"the dataset {dataset}" if dataset else "the dataset"
        raise ValueError(f"{option} {attack}: needs at least {need} classes (the targeted DLR loss), {name} "
                         f"has {num_classes}; use apgd-ce, apgd, fab-t, square or autoattack (which leave APGD-T "
                         "out below 4 classes)")


def _shape_text(c: object, hw: object) -> str:
    h, w = (hw, hw) if isinstance(hw, int) else tuple(hw) if isinstance(hw, list | tuple) else (hw, hw)  # type: ignore[misc]
    return f"{c}×{h}×{w}"


def check_model_fits_data(meta: Mapping[str, Any], data: ArrayDataset, model_path: str | Path,
                          data_what: str = "the dataset") -> None:
    """Refuse a model whose recorded input shape or class count differs from ``data``'s, naming both.

    ``meta`` is the model's ``model.json`` (as :func:`delusive.models.load_model` returns it); a model that
    is not a classifier (the L2C generator) is refused too, since it outputs images, not class scores.
    """
    from delusive.models import model_kind

    arch = meta.get("arch")
    try:
        kind = model_kind(str(arch))
    except ValueError:
        kind = "classifier"
    if kind != "classifier":
        raise ValueError(f"{model_path}: holds a {kind} ({arch}), not a classifier; evaluate a model trained by "
                         "delusive train")
    c, h, w = data.shape
    hw = meta.get("image_size")
    model_hw = (hw, hw) if isinstance(hw, int) else tuple(hw) if isinstance(hw, list | tuple) else None
    name = data.name or "the data"
    if meta.get("in_channels") != c or model_hw != (h, w):
        raise ValueError(f"{model_path}: the model takes {_shape_text(meta.get('in_channels'), hw)} images, "
                         f"{data_what} {name} has {c}×{h}×{w}; evaluate it on data of its own shape")
    if meta.get("num_classes") != data.num_classes:
        raise ValueError(f"{model_path}: the model has {meta.get('num_classes')} classes, {data_what} {name} has "
                         f"{data.num_classes}; evaluate it on data with the same classes")
    recorded = meta.get("class_names")  # model.json's class names (when the model records them)
    if isinstance(recorded, list) and data.classes is not None and list(data.classes) != [str(c) for c in recorded]:
        warnings.warn(f"{model_path}: the model's classes ({', '.join(map(str, recorded[:4]))}, …) are not "
                      f"{data_what} {name}'s ({', '.join(data.classes[:4])}, …): the same count, other labels",
                      stacklevel=2)
