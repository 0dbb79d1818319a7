"""Robust correctness under a named test-time attack, always computed in fp32.

Names (docs/defenses.md, "Robust evaluation"):

- ``pgd``: the reference's protocol, PGD-K with step 2.5ε/K from a random start;
- ``apgd-ce``, ``apgd-t``: APGD with cross-entropy, and targeted APGD with the DLR loss (9 target classes),
  Croce & Hein (ICML 2020);
- ``fab-t``: targeted FAB (9 target classes), Croce & Hein (ICML 2020) — :mod:`delusive.perturb.fab`;
- ``square``: the Square Attack (5,000 queries), Andriushchenko et al. (ECCV 2020) — :mod:`delusive.perturb.square`;
- ``apgd``: APGD-CE, then APGD-T on what survives: AutoAttack's gradient part, for large CPU sweeps;
- ``autoattack``: AutoAttack's standard version, APGD-CE → APGD-T → FAB-T → Square, each on the survivors
  of the previous.

The targeted DLR loss needs the 3rd and 4th largest logits, so on 2- and 3-class problems the ensembles skip
APGD-T (and ``apgd-t`` alone refuses); FAB-T runs with K − 1 target classes. The attack and its final forward
pass run with autocast off, whatever precision training used: the reference APGD runs in fp32, and a bf16
forward pass rounds logits enough to change which examples count as robust.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from delusive import runtime
from delusive.perturb import apgd, pgd
from delusive.perturb.fab import fab_targeted
from delusive.perturb.square import square
from delusive.threat import ThreatModel
from delusive.utils import progress

ATTACK_NAMES = ("pgd", "apgd-ce", "apgd-t", "fab-t", "square", "apgd", "autoattack")
#: the components each name runs, in order, each on the survivors of the previous
COMPONENTS: dict[str, tuple[str, ...]] = {
    "pgd": ("pgd",), "apgd-ce": ("apgd-ce",), "apgd-t": ("apgd-t",), "fab-t": ("fab-t",), "square": ("square",),
    "apgd": ("apgd-ce", "apgd-t"), "autoattack": ("apgd-ce", "apgd-t", "fab-t", "square"),
}
_DEFAULT_STEPS = {"pgd": 20, "apgd-ce": 100, "apgd-t": 100, "fab-t": 100, "square": 100, "apgd": 100,
                  "autoattack": 100}
DEFAULT_QUERIES = 5000  # Square's budget in AutoAttack's standard version
_MIN_DLR_T_CLASSES = 4


def _check_attack(attack: str) -> None:
    if attack not in ATTACK_NAMES:
        raise ValueError(f"attack: expected one of {', '.join(ATTACK_NAMES)}, got {attack!r}")


def default_steps(attack: str) -> int:
    """Iterations an attack runs by default: PGD-20 (the reference's evaluation); APGD and FAB 100 (the papers').
    Square counts queries instead (:data:`DEFAULT_QUERIES`)."""
    _check_attack(attack)
    return _DEFAULT_STEPS[attack]


def attack_components(attack: str, num_classes: int) -> list[str]:
    """The components ``attack`` runs on a ``num_classes``-way model: APGD-T leaves the ensembles below 4
    classes, and ``apgd-t`` alone is refused there (its loss is undefined)."""
    _check_attack(attack)
    comps = list(COMPONENTS[attack])
    if num_classes < _MIN_DLR_T_CLASSES:
        if attack == "apgd-t":
            raise ValueError(f"attack apgd-t: the targeted DLR loss needs at least {_MIN_DLR_T_CLASSES} classes, "
                             f"the model has {num_classes}; use apgd-ce, apgd, fab-t, square or autoattack")
        comps = [c for c in comps if c != "apgd-t"]
    return comps


def fp32(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """Autocast switched off on ``device`` (an outer bf16 autocast included): attacks run in fp32."""
    if device.type in ("cpu", "cuda"):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


def robust_correct(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    attack: str = "pgd",
    *,
    steps: int | None = None,
    rel_step_size: float = 2.5 / 20,
    restarts: int = 1,
    generator: torch.Generator | None = None,
    batch_size: int = 500,
    precision: str = "fp32",
    n_target_classes: int = 9,
    queries: int | None = None,
    report: dict[str, Any] | None = None,
    desc: str = "robust eval",
) -> torch.Tensor:
    """Boolean per example (on ``x``'s device): still correctly classified under ``attack`` within ``threat``.

    An example misclassified without perturbation is not robust; any misclassified point an attack queried
    counts as a success (every such point is feasible). ``pgd``: ``steps`` (default 20) steps of
    ``rel_step_size``·ε from a random start, ``restarts`` times, on the whole batch. APGD and FAB-T: ``steps``
    (default 100) iterations and ``restarts`` runs per target (APGD-T, FAB-T: ``n_target_classes`` targets);
    APGD and FAB set their own step sizes. Square: ``queries`` (default 5,000) queries, ``restarts`` times.

    ``precision`` is the precision the model was *trained* in; it is accepted so callers can pass it through,
    and ignored: the attacks and the clean forward pass always run in fp32 (autocast off). ``generator``: the
    random stream, by default seed 0 on the CPU, so the same call gives the same answer on every device.
    ``report``, when given, receives ``components`` (those run, in order) and ``survivors`` (examples still
    robust after each component, summed over batches). The model runs in eval mode on its own device.
    """
    del precision  # robust evaluation is fp32 whatever the training precision (module docstring)
    _check_attack(attack)
    n_steps = default_steps(attack) if steps is None else int(steps)
    n_queries = DEFAULT_QUERIES if queries is None else int(queries)
    if n_steps < 0:
        raise ValueError(f"steps: must be >= 0, got {steps}")
    if n_queries < 0:
        raise ValueError(f"queries: must be >= 0, got {queries}")
    if restarts < 1:
        raise ValueError(f"restarts: must be >= 1, got {restarts}")
    if batch_size < 1:
        raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
    gen = runtime.generator(0) if generator is None else generator
    dev = runtime.device_of(model)
    ok = []
    comps: list[str] | None = None
    survivors: list[int] = []
    with runtime.eval_mode(model), fp32(dev):
        for i in progress(range(0, x.shape[0], batch_size), desc=desc):
            xb = runtime.to_channels_last(x[i : i + batch_size].to(dev).float())
            yb = y[i : i + batch_size].to(dev)
            with torch.no_grad():
                logits = model(xb)
            if comps is None:
                comps = attack_components(attack, logits.shape[1])
                survivors = [0] * len(comps)
            alive = logits.argmax(1) == yb
            for j, comp in enumerate(comps):
                idx = alive.nonzero().squeeze(1)
                if idx.numel() > 0 or comp == "pgd":
                    alive = _component(model, xb, yb, alive, threat, comp, n_steps, rel_step_size, restarts, gen,
                                       n_target_classes, n_queries)
                survivors[j] += int(alive.sum())
            ok.append(alive.to(x.device))
    if report is not None:
        report["components"] = list(comps or attack_components(attack, 10))
        report["survivors"] = survivors
    return torch.cat(ok) if ok else runtime.zeros(0, x.device, torch.bool)


def _component(model: nn.Module, x: torch.Tensor, y: torch.Tensor, alive: torch.Tensor, threat: ThreatModel,
               comp: str, steps: int, rel_step_size: float, restarts: int, gen: torch.Generator,
               n_target_classes: int, queries: int) -> torch.Tensor:
    """``alive`` after running one component on the examples still alive (``pgd``: on the whole batch, so its
    random draws are those of :func:`delusive.evaluation.robust_predictions`)."""
    alive = alive.clone()
    if comp == "pgd":
        for _ in range(restarts):
            res = pgd(model, x, y, threat, steps=steps, rel_step_size=rel_step_size, random_start=True,
                      generator=gen)
            alive &= res.first_misclassified < 0
        return alive
    idx = alive.nonzero().squeeze(1)
    if comp in ("apgd-ce", "apgd-t"):
        loss = "ce" if comp == "apgd-ce" else "dlr-targeted"
        res = apgd(model, x[idx], y[idx], threat, steps=steps, loss=loss, restarts=restarts,
                   n_target_classes=n_target_classes, generator=gen)
        alive[idx] = ~res.misclassified
    elif comp == "fab-t":
        fres = fab_targeted(model, x[idx], y[idx], threat, steps=steps, n_target_classes=n_target_classes,
                            restarts=restarts, generator=gen)
        alive[idx] = ~fres.misclassified
    elif comp == "square":
        for _ in range(restarts):
            sub = alive.nonzero().squeeze(1)
            if sub.numel() == 0:
                break
            sres = square(model, x[sub], y[sub], threat, queries=queries, generator=gen)
            alive[sub] = ~sres.misclassified
    else:  # pragma: no cover - COMPONENTS and this dispatch are kept in step
        raise AssertionError(comp)
    return alive
