"""Evaluation of any model on any data: natural accuracy, robust accuracy under a named attack, and the
adversarial images themselves."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from delusive import runtime
from delusive.api.attacks import APGD, PGD, AutoAttack
from delusive.api.data import DataLike, as_dataset
from delusive.evaluation import per_class_accuracy, predict, stratified_subset


@dataclass
class Evaluation:
    """What :func:`evaluate` found. Accuracies are fractions in [0, 1]; ``adversarial`` holds the adversarial
    images of the ``robust_indices`` examples (in that order), on the CPU."""

    natural_accuracy: float
    robust_accuracy: float | None
    per_class_accuracy: list[float | None]
    adversarial: torch.Tensor | None = None
    robust_indices: torch.Tensor | None = None
    attack: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        robust = "" if self.robust_accuracy is None else (
            f", robust {100 * self.robust_accuracy:.2f}% ({self.attack.get('name')}, {self.attack.get('threat')}, "
            f"{len(self.robust_indices) if self.robust_indices is not None else 0} images)")
        return f"natural {100 * self.natural_accuracy:.2f}%{robust}"


_ATTACKS = {"pgd": PGD, "apgd-ce": APGD, "autoattack": AutoAttack}


def evaluate(model: nn.Module, data: DataLike, *, attack: str | None = "autoattack", eps: float | str = 8 / 255,
             norm: str = "linf", steps: int | None = None, n: int | None = 1000, seed: int = 0) -> Evaluation:
    """Natural accuracy on all of ``data`` and, unless ``attack`` is None, robust accuracy and adversarial
    images on a seeded, class-stratified subset of ``n`` examples (all when None) under ``attack``
    (``autoattack`` by default, ``apgd-ce`` or ``pgd``) within ``norm``/``eps``. An example counts as robust
    when the model still classifies its adversarial image correctly; for ``autoattack`` it must also survive the
    package's AutoAttack evaluation (``delusive eval --attack autoattack``: every component that evaluation
    runs). The model's mode is restored."""
    ds = as_dataset(data)
    x, y = ds.tensors()
    with runtime.eval_mode(model):
        preds = predict(model, x)
    natural = float((preds == y).float().mean())
    per_class = per_class_accuracy(preds, y, ds.num_classes)
    if attack is None:
        return Evaluation(natural, None, per_class)
    if attack not in _ATTACKS:
        raise ValueError(f"attack: expected one of {', '.join(_ATTACKS)} or None, got {attack!r}")
    idx = runtime.as_tensor(stratified_subset(y, n, seed))
    kwargs: dict[str, Any] = {"eps": eps, "norm": norm, "seed": seed}
    if steps is not None:
        kwargs["steps"] = int(steps)
    atk = _ATTACKS[attack](model, **kwargs)
    xs, ys = x[idx], y[idx]
    adv = torch.cat([atk(xs[i : i + 500], ys[i : i + 500]) for i in range(0, len(idx), 500)]) if len(idx) else xs
    with runtime.eval_mode(model):
        ok = predict(model, adv) == ys
    if attack == "autoattack" and len(idx):
        # the package's AutoAttack evaluation (the same call as `delusive eval --attack autoattack`, with every
        # component it runs) also has its say: an example is robust only if it survives both
        from delusive.evaluation.attacks import robust_correct

        gen = runtime.generator(seed, runtime.device_of(model))
        ok &= robust_correct(model, xs, ys, atk.threat, "autoattack", steps=getattr(atk, "steps", None),
                             generator=gen).to(ok.device)
    robust = float(ok.float().mean()) if len(idx) else 0.0
    info = {"name": attack, "threat": repr(atk.threat), "steps": getattr(atk, "steps", None), "seed": seed}
    return Evaluation(natural, robust, per_class, adv, idx, info)
