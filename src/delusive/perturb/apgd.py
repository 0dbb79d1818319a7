"""Auto-PGD (APGD) of Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks" (ICML 2020), Algorithm 1: the attack of AutoAttack that needs no step size.

APGD starts with step size η = 2ε, moves with momentum α = 0.75 and halves η at checkpoints
w_j = ⌈p_j·N⌉ (p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)) when

1. fewer than a fraction ρ = 0.75 of the steps since the last checkpoint increased the objective, or
2. neither η nor the best objective value changed since the last checkpoint;

a halving restarts the iterates from the best point found so far. APGD-CE maximises cross-entropy; APGD-T
maximises the targeted DLR loss once per target class (the top classes of the clean logits other than the
label). Every iterate is a feasible point, so an example counts as misclassified when any iterate of any run
is classified differently from its label. ℓ∞, ℓ2 and masked threat models share the code through the threat's
``direction`` (sign, normalised gradient) and ``project``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import torch

from delusive import runtime
from delusive.perturb.losses import cross_entropy, dlr, dlr_targeted
from delusive.threat import ThreatModel

APGD_LOSSES = ("ce", "dlr", "dlr-targeted")

_P1 = Fraction(22, 100)
_DECAY = Fraction(3, 100)
_MIN_GAP = Fraction(6, 100)


@dataclass
class APGDResult:
    """Per-sample outcome of :func:`apgd` (tensors of length N except ``x_adv``).

    ``x_adv`` is, per sample, the first misclassified iterate found, or else the iterate of highest objective;
    ``loss`` is the highest objective value reached by the run that gave ``x_adv`` (targeted runs: over all
    targets); ``misclassified`` says whether any iterate of any run was classified differently from ``y``.
    """

    x_adv: torch.Tensor
    misclassified: torch.Tensor
    loss: torch.Tensor


@dataclass
class APGDIterate:
    """What a ``callback`` of :func:`apgd` sees after each iterate (for tests and diagnostics).

    ``k`` is the iterate index 0..steps (0: the start) and ``x`` the iterate x^(k) just evaluated: every point
    that can be returned is one of these. ``step_size`` is the per-sample η of the next step, after any halving
    at checkpoint k, and ``restarted`` marks the samples that halved there and so step next from their best
    point instead of x^(k). ``index`` gives the positions of these samples in the batch passed to :func:`apgd`
    (later restarts and targets attack only the samples not yet misclassified); ``run`` counts the runs
    (targets × restarts) so far.
    """

    run: int
    k: int
    x: torch.Tensor
    step_size: torch.Tensor
    restarted: torch.Tensor
    index: torch.Tensor


Callback = Callable[[APGDIterate], None]


def checkpoint_fractions() -> list[Fraction]:
    """The paper's p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06), while p_j ≤ 1 (exact)."""
    ps = [Fraction(0), _P1]
    while True:
        nxt = ps[-1] + max(ps[-1] - ps[-2] - _DECAY, _MIN_GAP)
        if nxt > 1:
            return ps
        ps.append(nxt)


def checkpoints(steps: int) -> list[int]:
    """The iterate indices w_j = ⌈p_j·steps⌉ at which APGD may halve its step size (sorted, distinct; w_0 = 0)."""
    if steps < 0:
        raise ValueError(f"steps: must be >= 0, got {steps}")
    return sorted({math.ceil(p * steps) for p in checkpoint_fractions()})


def apgd(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    *,
    steps: int = 100,
    loss: str = "ce",
    target: torch.Tensor | None = None,
    n_target_classes: int = 9,
    restarts: int = 1,
    rho: float = 0.75,
    alpha: float = 0.75,
    initial_step: float = 2.0,
    random_start: bool = True,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> APGDResult:
    """Run APGD on ``model`` at ``(x, y)`` within ``threat`` (B(x, ε) ∩ [0,1]) and return per-sample results.

    ``loss``: ``ce`` (APGD-CE), ``dlr`` (APGD-DLR) or ``dlr-targeted`` (APGD-T). For ``dlr-targeted`` the
    targets are ``target`` (one class per sample) when given, else the ``n_target_classes`` (capped at K − 1)
    classes with the highest clean logits other than ``y``, one run per target. Each of ``restarts`` runs per
    target begins at a fresh random point of the ball (``random_start``; drawn from ``generator``) and attacks
    only the samples no earlier run has misclassified, as AutoAttack does. ``initial_step`` is η/ε at the
    start (the paper's 2), ``alpha`` the momentum weight and ``rho`` the threshold of condition 1; the defaults
    are the paper's. The model is used as given (callers choose eval mode); gradients are taken with respect to
    the input only.
    """
    if steps < 0:
        raise ValueError(f"steps: must be >= 0, got {steps}")
    if restarts < 1:
        raise ValueError(f"restarts: must be >= 1, got {restarts}")
    if loss not in APGD_LOSSES:
        raise ValueError(f"loss: expected one of {', '.join(APGD_LOSSES)}, got {loss!r}")
    if not 0 <= rho <= 1:
        raise ValueError(f"rho: must be in [0, 1], got {rho}")
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha: must be in (0, 1], got {alpha}")
    if not initial_step > 0:
        raise ValueError(f"initial_step: must be > 0, got {initial_step}")
    if target is not None and loss != "dlr-targeted":
        raise ValueError(f"target: only used with loss='dlr-targeted', got loss={loss!r}")
    x = x.detach()
    n = x.shape[0]
    dev = x.device

    with runtime.frozen_parameters(model):
        targets: list[torch.Tensor | None] = [None]
        if loss == "dlr-targeted":
            targets = _targets(model, x, y, target, n_target_classes)

        mis = runtime.zeros(n, device=dev, dtype=torch.bool)
        x_adv = x.clone()
        best_loss = runtime.full(n, float("-inf"), device=dev)
        run_id = 0
        for tgt in targets:
            for _ in range(restarts):
                idx = (~mis).nonzero().squeeze(1)
                if idx.numel() == 0:
                    break
                objective = _objective(loss, y[idx], None if tgt is None else tgt[idx])
                x_found, wrong, x_best, f_best = _single_run(
                    model, x[idx], y[idx], threat, objective, steps, rho, alpha, initial_step * threat.eps,
                    random_start, generator, callback, run_id, idx)
                run_id += 1
                better = wrong | (f_best > best_loss[idx])
                chosen = torch.where(_per_sample(wrong, x_found), x_found, x_best)
                x_adv[idx] = torch.where(_per_sample(better, chosen), chosen, x_adv[idx])
                best_loss[idx] = torch.where(better, f_best, best_loss[idx])
                mis[idx] = wrong
    return APGDResult(x_adv, mis, best_loss)


def _per_sample(flags: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return flags.view(-1, *([1] * (like.dim() - 1)))


def _targets(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None,
             n_target_classes: int) -> list[torch.Tensor | None]:
    """APGD-T's target classes: the given ones, or the top classes of the clean logits other than the label."""
    if target is not None:
        if target.shape != y.shape:
            raise ValueError(f"target: expected shape {tuple(y.shape)} like y, got {tuple(target.shape)}")
        return [target.to(y.device)]
    if n_target_classes < 1:
        raise ValueError(f"n_target_classes: must be >= 1, got {n_target_classes}")
    with torch.no_grad():
        z = model(x).float()
    k = min(n_target_classes, z.shape[1] - 1)
    order = z.scatter(1, y[:, None], float("-inf")).argsort(1, descending=True)
    return [order[:, i] for i in range(k)]


def _objective(loss: str, y: torch.Tensor, target: torch.Tensor | None) -> Callable[[torch.Tensor], torch.Tensor]:
    if loss == "ce":
        return lambda logits: cross_entropy(logits, y)
    if loss == "dlr":
        return lambda logits: dlr(logits, y)
    assert target is not None
    return lambda logits: dlr_targeted(logits, y, target)


def _evaluate(model: torch.nn.Module, x_k: torch.Tensor, y: torch.Tensor,
              objective: Callable[[torch.Tensor], torch.Tensor], need_grad: bool,
              ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Objective (fp32), its input gradient (when asked) and whether the iterate is misclassified."""
    x_k = x_k.detach().requires_grad_(need_grad)
    with torch.set_grad_enabled(need_grad):
        logits = model(x_k)
        f = objective(logits)
    grad = torch.autograd.grad(f.sum(), x_k)[0].detach() if need_grad else None
    return f.detach().float(), grad, logits.detach().argmax(1) != y


def _single_run(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    objective: Callable[[torch.Tensor], torch.Tensor],
    steps: int,
    rho: float,
    alpha: float,
    eta0: float,
    random_start: bool,
    generator: torch.Generator | None,
    callback: Callback | None,
    run_id: int,
    index: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One APGD run (Algorithm 1). Returns (first misclassified iterate, misclassified at any iterate,
    best iterate, best objective)."""
    n = x.shape[0]
    x_cur = threat.random_init(x, generator) if random_start else x.clone()
    f_cur, g_cur, wrong = _evaluate(model, x_cur, y, objective, steps > 0)
    mis = wrong.clone()
    x_found = x_cur.clone()
    x_best, f_best = x_cur.clone(), f_cur.clone()
    g_best = g_cur.clone() if g_cur is not None else None
    x_prev = x_cur
    eta = runtime.full(n, eta0, device=x.device, dtype=x.dtype)
    if callback is not None:
        callback(APGDIterate(run_id, 0, x_cur, eta.clone(), runtime.zeros(n, x.device, torch.bool), index))

    marks = set(checkpoints(steps)[1:])
    last_mark = 0
    successes = runtime.zeros(n, device=x.device, dtype=torch.long)
    f_best_at_mark = f_best.clone()
    halved_at_mark = runtime.zeros(n, device=x.device, dtype=torch.bool)
    for k in range(steps):
        assert g_cur is not None
        with torch.no_grad():
            z = threat.project(x_cur + _per_sample(eta, x) * threat.direction(g_cur), x)
            # momentum: x^(k+1) = P(x^(k) + α(z^(k+1) − x^(k)) + (1 − α)(x^(k) − x^(k−1))); the first step has none
            a = 1.0 if k == 0 else alpha
            x_next = threat.project(x_cur + a * (z - x_cur) + (1 - a) * (x_cur - x_prev), x)
        need_grad = k + 1 < steps
        f_next, g_next, wrong = _evaluate(model, x_next, y, objective, need_grad)
        with torch.no_grad():
            successes += (f_next > f_cur).long()
            fresh = wrong & ~mis
            x_found = torch.where(_per_sample(fresh, x), x_next, x_found)
            mis |= wrong
            up = f_next > f_best
            x_best = torch.where(_per_sample(up, x), x_next, x_best)
            f_best = torch.where(up, f_next, f_best)
            if g_next is not None and g_best is not None:
                g_best = torch.where(_per_sample(up, x), g_next, g_best)
            x_prev, x_cur, f_cur, g_cur = x_cur, x_next, f_next, g_next
            halve = runtime.zeros(n, x.device, torch.bool)
            if k + 1 in marks:
                w = k + 1
                cond1 = successes.double() < rho * (w - last_mark)
                cond2 = ~halved_at_mark & (f_best <= f_best_at_mark)
                halve = cond1 | cond2
                eta = torch.where(halve, eta / 2, eta)
                x_cur = torch.where(_per_sample(halve, x), x_best, x_cur)
                f_cur = torch.where(halve, f_best, f_cur)
                if g_cur is not None and g_best is not None:
                    g_cur = torch.where(_per_sample(halve, x), g_best, g_cur)
                halved_at_mark = halve
                f_best_at_mark = f_best.clone()
                successes.zero_()
                last_mark = w
        if callback is not None:
            callback(APGDIterate(run_id, k + 1, x_next, eta.clone(), halve, index))
    return x_found, mis, x_best, f_best
