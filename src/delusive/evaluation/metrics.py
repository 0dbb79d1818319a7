"""Natural accuracy on clean test data (the paper's headline metric), PGD robust accuracy, per-class accuracy.

Robust accuracy follows the reference's protocol by default: PGD-20, step 2.5ε/20, random start; an
example counts as robust only if every restart leaves it correctly classified.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from delusive.data import ArrayDataset
from delusive.perturb import pgd
from delusive.runtime import autocast, eval_mode, to_channels_last
from delusive.threat import ThreatModel
from delusive.utils import progress


def sanity_warnings(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Warnings about a model that is about to be evaluated: train mode, probability outputs."""
    notes = []
    if model.training:
        notes.append("model was in train mode; evaluating in eval mode (BN running statistics, no dropout)")
    with torch.no_grad(), eval_mode(model):
        out = model(to_channels_last(x[:16])).float()
    if bool((out >= 0).all()) and torch.allclose(out.sum(1), torch.ones(out.shape[0]), atol=1e-3):
        notes.append("model outputs look like probabilities (rows are non-negative and sum to 1); "
                     "losses and attacks expect logits")
    return notes


def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1000, precision: str = "fp32") -> torch.Tensor:
    """Predicted labels of ``x`` (model in eval mode)."""
    preds = []
    with torch.no_grad(), eval_mode(model), autocast(precision):
        for i in range(0, x.shape[0], batch_size):
            preds.append(model(to_channels_last(x[i : i + batch_size])).argmax(1))
    return torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)


def natural_accuracy(model: nn.Module, data: ArrayDataset, batch_size: int = 1000, precision: str = "fp32") -> float:
    x, y = data.tensors()
    return float((predict(model, x, batch_size, precision) == y).float().mean())


def per_class_accuracy(preds: torch.Tensor, y: torch.Tensor, num_classes: int) -> list[float | None]:
    out: list[float | None] = []
    for k in range(num_classes):
        m = y == k
        out.append(float((preds[m] == k).float().mean()) if bool(m.any()) else None)
    return out


def robust_predictions(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    steps: int = 20,
    rel_step_size: float = 2.5 / 20,
    restarts: int = 1,
    random_start: bool = True,
    batch_size: int = 500,
    seed: int = 0,
    precision: str = "fp32",
    desc: str = "robust eval",
) -> torch.Tensor:
    """Boolean per example: correctly classified at every PGD iterate of every restart (each iterate is a
    feasible point, so any misclassified iterate is a successful attack)."""
    gen = torch.Generator().manual_seed(seed)
    ok = []
    with eval_mode(model):
        for i in progress(range(0, x.shape[0], batch_size), desc=desc):
            xb, yb = to_channels_last(x[i : i + batch_size]), y[i : i + batch_size]
            alive = torch.ones(yb.shape[0], dtype=torch.bool)
            for _ in range(restarts):
                with autocast(precision):
                    res = pgd(model, xb, yb, threat, steps=steps, rel_step_size=rel_step_size,
                              random_start=random_start, generator=gen)
                alive &= res.first_misclassified < 0
            ok.append(alive)
    return torch.cat(ok) if ok else torch.zeros(0, dtype=torch.bool)


def evaluate(
    model: nn.Module,
    data: ArrayDataset,
    threat: ThreatModel | None = None,
    steps: int = 20,
    rel_step_size: float = 2.5 / 20,
    restarts: int = 1,
    robust_limit: int | None = None,
    batch_size: int = 500,
    seed: int = 0,
    precision: str = "fp32",
) -> dict[str, Any]:
    """Metrics dict: natural_accuracy, per_class_accuracy and, with a threat, robust_accuracy (fractions)."""
    x, y = data.tensors()
    for note in sanity_warnings(model, x):
        warnings.warn(note, stacklevel=2)
    preds = predict(model, x, 1000, precision)
    out: dict[str, Any] = {
        "natural_accuracy": float((preds == y).float().mean()),
        "per_class_accuracy": per_class_accuracy(preds, y, data.num_classes),
        "n_test": int(y.shape[0]),
    }
    if threat is not None:
        n = y.shape[0] if robust_limit is None else min(robust_limit, y.shape[0])
        ok = robust_predictions(model, x[:n], y[:n], threat, steps, rel_step_size, restarts,
                                batch_size=batch_size, seed=seed, precision=precision)
        out.update(robust_accuracy=float(ok.float().mean()), n_robust=int(n),
                   robust_attack={"threat": threat.describe(), "steps": steps, "rel_step_size": rel_step_size,
                                  "restarts": restarts})
    return out
