"""Crafting a delusive poison on your own data and, for P1–P4, your own model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from delusive import runtime
from delusive.api.data import DataLike, as_dataset
from delusive.attacks import PoisonArtifact, build_artifact, create_attack, save_artifact
from delusive.attacks.defaults import default_attack_params, resolve_schedule
from delusive.data import ArrayDataset
from delusive.threat import make_threat


def craft(attack: str, data: DataLike, *, model: nn.Module | None = None, eps: float | str = 8 / 255,
          norm: str = "linf", seed: int = 0, schedule: str = "auto", out: str | Path | None = None,
          crafting_epochs: int = 3, **params: Any) -> ArrayDataset | torch.Tensor:
    """The delusive copy of ``data`` made by ``attack`` (P1–P5, L2C, ...) within ``norm``/``eps``.

    ``data``: an ``ArrayDataset``, ``(images, labels)`` tensors, a ``Dataset`` or a ``DataLoader``; given
    tensors, the poisoned images come back as a float tensor (labels never change), otherwise as an
    ``ArrayDataset``. ``model``: the crafting model P1–P4 attack (your own classifier, used in eval mode on
    un-augmented images); without one, a small CNN is trained on ``data`` for ``crafting_epochs`` epochs.
    ``schedule`` (``auto``, ``cpu``, ``reference``) and ``params`` set the attack's hyperparameters, e.g.
    ``steps=10`` for P1. With ``out`` a verified artifact is also written there (``delusive verify`` reads it).
    """
    tensors = isinstance(data, tuple | list) and len(data) == 2 and isinstance(data[0], torch.Tensor)
    train = as_dataset(data)
    threat = make_threat(norm, eps)
    chosen = resolve_schedule(schedule, train.shape)
    atk = create_attack(attack, **{**default_attack_params(attack, schedule=chosen), **params})
    if atk.needs_model and model is None:
        from delusive.defenses import Standard, TrainConfig, fit
        from delusive.models import create_model

        c, h, w = train.shape
        model = create_model("small-cnn", train.num_classes, c, (h, w), seed=seed)
        fit(model, train, Standard(), TrainConfig(epochs=int(crafting_epochs), seed=seed))
    if model is None and hasattr(atk, "device"):  # attacks that train their own networks (L2C)
        atk.device = runtime.resolve_device("auto")
    result = atk.craft(train, threat, model, seed=seed, work_dir=out)
    art: PoisonArtifact = build_artifact(train, result.x, threat, attack=attack, attack_params=atk.params(),
                                         dataset=train.name or "tensors", seed=seed, storage="float32",
                                         class_deltas=result.class_deltas,
                                         extra={"schedule": chosen, "class_names": list(train.classes or []) or None})
    if out is not None:
        save_artifact(art, out)
    poisoned = art.dataset(train.name, train.classes)
    if tensors:
        return poisoned.tensors()[0].to(data[0].device)
    return poisoned
