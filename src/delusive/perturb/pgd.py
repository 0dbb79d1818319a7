"""Projected gradient descent/ascent over a threat model: the single engine of the package.

Maximising a loss gives adversarial examples (PGD-AT's inner problem, Eq. 2; robust evaluation);
minimising it toward a target gives P1 (target t(y)) and P2 (target y) of Section 4. The engine also
returns per-sample facts that AT variants need: the final loss, the first iterate at which each example was
misclassified (FAT's early stop, Zhang et al. 2020) and the number of iterates it stayed correct (GAIRAT's
geometry value κ, Zhang et al. 2021).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from delusive import runtime
from delusive.perturb.losses import LossFn, resolve_loss
from delusive.threat import ThreatModel


@dataclass
class PGDResult:
    """Per-sample outcome of :func:`pgd` (tensors of length N except ``x_adv``)."""

    x_adv: torch.Tensor
    loss: torch.Tensor
    first_misclassified: torch.Tensor  # iterate index 0..steps at which argmax != y_true first held; -1: never
    num_correct: torch.Tensor  # iterates 0..steps-1 (those a step was taken from) classified correctly: κ
    steps_taken: torch.Tensor  # gradient steps actually applied to each example (< steps when early-stopped)
    misclassified: torch.Tensor  # bool: argmax at x_adv differs from y_true (all False when nothing is tracked)


def pgd(
    model: torch.nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    threat: ThreatModel,
    *,
    steps: int,
    step_size: float | None = None,
    rel_step_size: float = 0.2,
    loss: str | LossFn = "ce",
    maximize: bool = True,
    random_start: bool = False,
    restarts: int = 1,
    y_true: torch.Tensor | None = None,
    early_stop_tau: int | None = None,
    generator: torch.Generator | None = None,
    x_init: torch.Tensor | None = None,
    step_noise: float = 0.0,
    final_eval: bool = True,
    keep: str = "last",
) -> PGDResult:
    """Run PGD on ``loss(model(x'), labels)`` over B(x, ε) ∩ [0,1].

    ``maximize=True`` ascends (untargeted attack); ``maximize=False`` descends (targeted toward ``labels``).
    The step is ``step_size`` or ``rel_step_size·ε`` along the threat's steepest direction, followed by
    projection; the last iterate is kept. ``restarts`` runs start each from the clean input (with a fresh
    random start when ``random_start``) and keep, per sample, the run that misclassified ``y_true`` (when
    maximising) or else has the better final loss. ``early_stop_tau`` freezes an example once it has been
    misclassified at more than ``tau`` iterates (FAT's PGD-K-τ); ``x_init`` replaces the random start
    (TRADES starts from a small Gaussian), so with it more than one restart is refused unless ``step_noise``
    makes the runs differ. ``step_noise`` adds ``step_noise·N(0, I)`` (drawn from
    ``generator``) to every step before projection: FAT's ω, which helps escape local maxima. The model's
    mode is the caller's choice (attacks use eval mode); gradients are taken with respect to the input only.

    ``final_eval`` runs one more forward pass at the last iterate, for callers that need its loss or whether
    it is misclassified (robust evaluation, restarts). ``keep="fooled"`` returns, for an example some iterate
    misclassified, the first such iterate instead of the last (``misclassified`` then says whether any iterate
    was): what a caller who takes ``x_adv`` as "the adversarial images" expects, since with a fixed step the last
    iterate can be classified correctly again (on a gradient-masking model, most are; docs/results.md §2).
    Training objectives that only need ``x_adv`` turn ``final_eval`` off
    and save a forward pass per batch; ``loss`` and ``misclassified`` then describe the last iterate a step was
    taken from. With ``early_stop_tau`` only the examples still running are forwarded and backpropagated
    (frozen ones cannot change), so FAT costs less than PGD-AT with the same K; on an accelerator that selection
    would read the device every step, so there every example is forwarded and the frozen ones are masked.
    """
    if steps < 0:
        raise ValueError(f"steps: must be >= 0, got {steps}")
    if restarts < 1:
        raise ValueError(f"restarts: must be >= 1, got {restarts}")
    if x_init is not None and restarts > 1 and step_noise == 0:
        raise ValueError(f"restarts={restarts} with x_init: every restart would begin at x_init and repeat the "
                         "same deterministic run; use restarts=1, or random starts instead of x_init")
    if early_stop_tau is not None and early_stop_tau < 0:
        raise ValueError(f"early_stop_tau: must be >= 0 or None, got {early_stop_tau}")
    if restarts > 1 and not final_eval:
        raise ValueError("restarts > 1 needs final_eval=True: restarts are compared on their final loss")
    if not step_noise >= 0:
        raise ValueError(f"step_noise: must be >= 0, got {step_noise}")
    if keep not in ("last", "fooled"):
        raise ValueError(f"keep: must be 'last' or 'fooled', got {keep!r}")
    if keep == "fooled" and (early_stop_tau is not None or not final_eval or (y_true is None and not maximize)):
        raise ValueError("keep='fooled' needs final_eval, no early_stop_tau and an untargeted (or y_true) attack")
    loss_fn = resolve_loss(loss)
    alpha = float(step_size) if step_size is not None else rel_step_size * threat.eps
    x = x.detach()
    track = y_true if y_true is not None else (labels if maximize else None)

    best: PGDResult | None = None
    for _ in range(restarts):
        run = _single_run(model, x, labels, threat, steps, alpha, loss_fn, maximize, random_start, track,
                          early_stop_tau, generator, x_init, float(step_noise), final_eval, keep == "fooled")
        best = run if best is None else _keep_better(best, run, maximize, track is not None and maximize)
    assert best is not None
    return best


def _single_run(
    model: torch.nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    threat: ThreatModel,
    steps: int,
    alpha: float,
    loss_fn: LossFn,
    maximize: bool,
    random_start: bool,
    track: torch.Tensor | None,
    tau: int | None,
    generator: torch.Generator | None,
    x_init: torch.Tensor | None,
    step_noise: float = 0.0,
    final_eval: bool = True,
    keep_fooled: bool = False,
) -> PGDResult:
    n, dev = x.shape[0], x.device
    if x_init is not None:
        x_adv = threat.project(x_init.detach(), x)
    elif random_start:
        x_adv = threat.random_init(x, generator)
    else:
        x_adv = x.clone()
    x_adv = x_adv.detach()
    first_mis = runtime.full(n, -1, dev, torch.long)
    num_correct = runtime.zeros(n, dev, torch.long)
    taken = runtime.zeros(n, dev, torch.long)
    mis_count = runtime.zeros(n, dev, torch.long)
    active = runtime.ones(n, dev, torch.bool)
    last_loss = runtime.zeros(n, dev)
    last_wrong = runtime.zeros(n, dev, torch.bool)
    sign = 1.0 if maximize else -1.0
    compact = tau is not None and dev.type == "cpu"
    x_fool = x_adv
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        for t in range(steps + 1):
            need_grad = t < steps
            if not need_grad and not final_eval:
                break
            # FAT on the CPU: forward only the examples still running (eval-mode models treat examples
            # independently). Finding them reads the device, so elsewhere every example is forwarded and the
            # frozen ones are masked (the same iterates, with no host synchronisation per step).
            rows = (None if not compact or not need_grad or bool(active.all())
                    else active.nonzero().squeeze(1))
            if rows is not None and rows.numel() == 0:
                break
            xa = x_adv if rows is None else x_adv[rows]
            lab = labels if rows is None else labels[rows]
            xa.requires_grad_(need_grad)
            with torch.set_grad_enabled(need_grad):
                logits = model(xa)
                per_sample = loss_fn(logits, lab)
            loss_now = per_sample.detach().float()
            last_loss = loss_now if rows is None else last_loss.index_copy(0, rows, loss_now)
            if track is not None:
                tr = track if rows is None else track[rows]
                wrong_rows = logits.detach().argmax(1) != tr
                wrong = wrong_rows if rows is None else last_wrong.index_copy(0, rows, wrong_rows)
                last_wrong = wrong
                if keep_fooled:  # the first fooling iterate, kept (rows is None: no early stop in this mode)
                    newly = ((first_mis < 0) & wrong).view(-1, *([1] * (x.dim() - 1)))
                    x_fool = torch.where(newly, xa.detach(), x_fool)
                first_mis = torch.where((first_mis < 0) & wrong, torch.full_like(first_mis, t), first_mis)
                if need_grad:
                    num_correct += (~wrong).long()
                if tau is not None:
                    # FAT: an example misclassified with no budget left stops here; otherwise spend budget.
                    stop_now = wrong & active & (mis_count >= tau)
                    mis_count += (wrong & active).long()
                    active &= ~stop_now
            if not need_grad:
                break
            (grad,) = torch.autograd.grad(per_sample.sum(), xa)
            with torch.no_grad():
                noise = None
                if step_noise > 0:  # drawn for the whole batch, so the stream does not depend on who runs
                    noise = step_noise * runtime.randn(x.shape, generator, dev, x.dtype)
                if rows is None:
                    step = sign * alpha * threat.direction(grad)
                    if noise is not None:
                        step = step + noise
                    stepped = threat.project(x_adv + step, x)
                    if tau is None:  # nothing is ever frozen: skip the per-sample select on the hot path
                        x_adv = stepped
                    else:
                        mask = active.view(-1, *([1] * (x.dim() - 1)))
                        x_adv = torch.where(mask, stepped, x_adv)
                else:
                    step = sign * alpha * threat.direction(grad)
                    if noise is not None:
                        step = step + noise[rows]
                    stepped = threat.project(x_adv[rows] + step, x[rows])
                    keep = active[rows].view(-1, *([1] * (x.dim() - 1)))
                    x_adv = x_adv.index_copy(0, rows, torch.where(keep, stepped, x_adv[rows]))
                taken += active.long()
    finally:
        for p in params:
            p.requires_grad_(True)
    if keep_fooled:
        fooled = first_mis >= 0
        x_adv = torch.where(fooled.view(-1, *([1] * (x.dim() - 1))), x_fool, x_adv)
        last_wrong = fooled
    return PGDResult(x_adv.detach(), last_loss, first_mis, num_correct, taken, last_wrong)


def _keep_better(a: PGDResult, b: PGDResult, maximize: bool, prefer_misclassified: bool) -> PGDResult:
    """Per-sample choice between two restarts."""
    better = b.loss > a.loss if maximize else b.loss < a.loss
    if prefer_misclassified:
        a_wrong, b_wrong = a.misclassified, b.misclassified
        better = torch.where(a_wrong != b_wrong, b_wrong, better)
    m = better.view(-1, *([1] * (a.x_adv.dim() - 1)))
    return PGDResult(
        torch.where(m, b.x_adv, a.x_adv),
        torch.where(better, b.loss, a.loss),
        torch.where(better, b.first_misclassified, a.first_misclassified),
        torch.where(better, b.num_correct, a.num_correct),
        torch.where(better, b.steps_taken, a.steps_taken),
        torch.where(better, b.misclassified, a.misclassified),
    )
