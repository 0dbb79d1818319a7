"""Training from your own code: an adversarial-training loss to drop into a hand-written loop, and ``fit``
for a whole run on any model and any data (a ``DataLoader`` included)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from delusive import runtime
from delusive.api.data import DataLike, as_dataset
from delusive.defenses import FitResult, Objective, TrainConfig, create_objective
from delusive.defenses import fit as _fit


def _objective(defense: str, norm: str | None, eps: float | str | None, params: dict[str, Any]) -> Objective:
    from delusive.defenses import OBJECTIVES

    needs = OBJECTIVES.get(defense).needs_threat
    if needs and eps is None:
        raise ValueError(f"defense {defense!r}: give its budget, e.g. eps=8/255 (and norm='linf' or 'l2')")
    return create_objective(defense, norm or "linf" if needs else None, eps if needs else None, **params)


class AdversarialLoss:
    """The training loss of a defense, as a callable for your own loop: ``loss = at_loss(model, x, y)``.

    ``defense`` is any registered objective (``pgd_at`` by default; ``trades``, ``fat``, ``gairat``,
    ``random_noise``, ``fast_at``, ``standard``, ...) with its own budget and hyperparameters
    (``steps=10, rel_step_size=0.25`` for PGD-AT). The random starts come from a generator seeded by ``seed``,
    so a run is repeatable; per-example state that some defenses keep is indexed by the position in the batch
    unless you pass ``idx`` (the examples' indices in the training set). The inner attack runs with the model
    in eval mode; the model's mode is restored, so call ``model.train()`` as usual. Objectives that follow
    training progress (curricula, ε warm-up) are told it with :meth:`set_epoch`.
    """

    def __init__(self, defense: str = "pgd_at", *, eps: float | str | None = None, norm: str | None = "linf",
                 seed: int = 0, **params: Any) -> None:
        self.objective = _objective(defense, norm, eps, params)
        self.seed = int(seed)
        self._gen: torch.Generator | None = None
        self.last_logits: torch.Tensor | None = None

    def set_epoch(self, epoch: int, epochs: int) -> None:
        """Tell the objective where training is (epoch counts from 0), as :func:`fit` does before each epoch."""
        self.objective.begin_epoch(int(epoch), int(epochs))
        set_progress = getattr(self.objective, "set_progress", None)  # the ε ramp of the AT recipe, where present
        if callable(set_progress):
            set_progress(int(epoch) / max(int(epochs), 1))

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 idx: torch.Tensor | None = None) -> torch.Tensor:
        dev = runtime.device_of(model)
        if self._gen is None:
            self._gen = runtime.generator(self.seed, dev)
        x, y = x.to(dev), y.to(dev)
        index = runtime.arange(y.shape[0], dev) if idx is None else idx.to(dev)
        was_training = model.training
        out = self.objective.loss(model, x, y, index, self._gen)
        model.train(was_training)
        self.last_logits = out.logits.detach()
        return out.loss

    def __repr__(self) -> str:
        return f"AdversarialLoss({self.objective.describe()})"


def fit(model: nn.Module, data: DataLike, defense: str = "standard", *, eps: float | str | None = None,
        norm: str | None = "linf", epochs: int = 5, batch_size: int | None = None, lr: float = 0.05,
        seed: int = 0, checkpoint_dir: str | None = None, config: TrainConfig | None = None,
        **defense_params: Any) -> FitResult:
    """Train ``model`` in place on ``data`` with ``defense`` (standard training by default) and return the
    :class:`~delusive.defenses.FitResult` (the model, per-epoch history, time).

    ``data``: an ``ArrayDataset``, ``(images, labels)`` tensors, a ``Dataset`` or a ``DataLoader`` (read once
    into memory; its batch size is used unless ``batch_size`` is given). Training runs on the device the model
    is on, with the package's loop: SGD with momentum, the piecewise learning-rate schedule, seeded shuffling,
    and checkpoints in ``checkpoint_dir`` (when given) that an interrupted run resumes from. ``config`` (a
    :class:`TrainConfig`) overrides epochs, batch size, lr and seed all at once.
    """
    train = as_dataset(data)
    if batch_size is None:
        batch_size = getattr(data, "batch_size", None) or TrainConfig.batch_size
    cfg = config or TrainConfig(epochs=int(epochs), batch_size=int(batch_size), lr=float(lr), seed=int(seed))
    objective = _objective(defense, norm, eps, defense_params)
    return _fit(model, train, objective, cfg, checkpoint_dir=checkpoint_dir)
