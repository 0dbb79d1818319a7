"""Targeted Fast Adaptive Boundary attack (FAB-T) of Croce and Hein, "Minimally distorted adversarial examples
with a fast adaptive boundary attack" (ICML 2020); the targeted version is the one of AutoAttack's standard
ensemble (Croce and Hein, ICML 2020b).

FAB looks for the *smallest* perturbation that changes the decision. At the iterate x^(i) it linearises the
decision boundary between the label y and the target t, ``f_t − f_y``, into a hyperplane π and takes the
minimal-norm projection of both x^(i) and the clean x_orig onto π ∩ [0, 1]^d (δ^(i) and δ_orig). The step
(Eq. 10 of the paper) is a convex combination biased toward the original point,

    x^(i+1) = P_box((1 − α)(x^(i) + η δ^(i)) + α (x_orig + η δ_orig)),   α = min(‖δ^(i)‖/(‖δ^(i)‖ + ‖δ_orig‖), α_max),

with overshoot η = 1.05 and α_max = 0.1. Once x^(i+1) is misclassified it is remembered if it is the closest
so far, and the iterate moves back toward x_orig: x^(i+1) ← x_orig + β(x^(i+1) − x_orig), β = 0.9 (the
"backward step", which keeps the search near the boundary and shrinks the perturbation). The first run starts
at x_orig; further restarts start at a random point at distance min(ε, best)/2.

FAB-T runs once per target class: the ``n_target_classes`` (AutoAttack: 9) classes with the highest clean
logits other than the label, each on the examples no earlier target broke. For robust accuracy an example is
broken when FAB found a misclassified point within ε (FAB itself is not bounded by ε).

The projection onto a hyperplane ⟨w, δ⟩ = c inside the box l ≤ δ ≤ u is solved exactly for ℓ∞ and ℓ2: after
flipping w so that c ≥ 0, the minimiser is δ_i = sign(w_i)·min(a_i·r, t_i), with t_i the box's room along
sign(w_i), a_i = 1 for ℓ∞ and a_i = |w_i| for ℓ2; ⟨w, δ(r)⟩ is piecewise linear and increasing in r, so
sorting the breakpoints t_i/a_i gives r in closed form. A masked threat model zeroes the room outside the mask,
so every iterate perturbs only masked pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from delusive import runtime
from delusive.threat import L2Ball, LinfBall, Masked, ThreatModel

_TINY = 1e-12


@dataclass
class FABResult:
    """Per-example outcome of :func:`fab_targeted`: ``x_adv`` is the smallest misclassified point found within
    ε, else ``x``; ``misclassified`` says whether one was found; ``distance`` is its norm (inf: none found at
    any distance)."""

    x_adv: torch.Tensor
    misclassified: torch.Tensor
    distance: torch.Tensor


def project_hyperplane_box(p: torch.Tensor, w: torch.Tensor, c: torch.Tensor, norm: str,
                           room: torch.Tensor | None = None) -> torch.Tensor:
    """Minimal-``norm`` δ (``linf`` or ``l2``) with ⟨w, δ⟩ = c and 0 ≤ p + δ ≤ 1, per row of the N×D ``p``.

    ``room`` (N×D of 0/1, optional) marks the coordinates that may move. When no δ in the box reaches the
    hyperplane, the δ of the box that gets closest (all coordinates at their bound) is returned."""
    sign = torch.where(c < 0, -1.0, 1.0).to(w.dtype)
    w, c = w * sign[:, None], c * sign
    up = w > 0
    t = torch.where(up, 1 - p, p).clamp_min(0)  # room along sign(w)
    t = torch.where(w == 0, torch.zeros_like(t), t)
    if room is not None:
        t = t * room
    aw = w.abs()
    a = torch.ones_like(aw) if norm == "linf" else aw
    brk = torch.where(a > 0, t / a.clamp_min(_TINY), torch.full_like(t, float("inf")))
    brk, order = brk.sort(1)
    aw_s, t_s, a_s = aw.gather(1, order), t.gather(1, order), a.gather(1, order)
    sat = (aw_s * t_s).cumsum(1)  # mass of the first k saturated coordinates
    free = (aw_s * a_s).flip(1).cumsum(1).flip(1)  # slope of the still-free coordinates from position k on
    zero = runtime.zeros((p.shape[0], 1), p.device, p.dtype)
    sat_before = torch.cat([zero, sat[:, :-1]], 1)
    g_at_brk = sat_before + torch.where(torch.isinf(brk), zero, brk) * free  # ⟨w, δ(r)⟩ at each breakpoint
    # the first breakpoint where the hyperplane is reached; r lies on the segment before it
    reach = (g_at_brk >= c[:, None]) & ~torch.isinf(brk)
    k = torch.where(reach.any(1), reach.float().argmax(1), runtime.full(p.shape[0], p.shape[1], p.device,
                                                                          torch.long))
    kk = k.clamp(max=p.shape[1] - 1)[:, None]
    base = sat_before.gather(1, kk).squeeze(1)
    slope = free.gather(1, kk).squeeze(1)
    r = (c - base) / slope.clamp_min(_TINY)
    r = torch.where(k >= p.shape[1], torch.full_like(r, float("inf")), r.clamp_min(0))
    delta = torch.minimum(a * r[:, None], t)
    delta = torch.where(torch.isnan(delta), t, delta)
    return torch.sign(w) * delta


def _norm_name(threat: ThreatModel) -> tuple[str, torch.Tensor | None]:
    base = threat.base if isinstance(threat, Masked) else threat
    if not isinstance(base, LinfBall | L2Ball):
        raise ValueError(f"fab-t: supports linf and l2 threat models (or masked ones), got {threat!r}")
    return base.norm_name, (threat.mask if isinstance(threat, Masked) else None)


def _targets(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, n_target_classes: int) -> list[torch.Tensor]:
    with torch.no_grad():
        z = model(x).float()
    k = min(n_target_classes, z.shape[1] - 1)
    order = z.scatter(1, y[:, None], float("-inf")).argsort(1, descending=True)
    return [order[:, i] for i in range(k)]


def _boundary(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """f_t − f_y at x, its input gradient and the prediction at x."""
    xg = x.detach().requires_grad_(True)
    with torch.enable_grad():
        z = model(xg).float()
        diff = z.gather(1, t[:, None]).squeeze(1) - z.gather(1, y[:, None]).squeeze(1)
    grad = torch.autograd.grad(diff.sum(), xg)[0].detach()
    return diff.detach(), grad, z.detach().argmax(1)


def _single_run(model: torch.nn.Module, x0: torch.Tensor, y: torch.Tensor, t: torch.Tensor, threat: ThreatModel,
                norm: str, room: torch.Tensor | None, steps: int, start: torch.Tensor, alpha_max: float, eta: float,
                beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One FAB-T run toward target ``t`` from ``start``; returns (closest misclassified point, its norm; inf: none)."""
    n = x0.shape[0]
    flat0 = x0.flatten(1)
    best = runtime.full(n, float("inf"), x0.device)
    x_best = x0.clone()
    x_cur = start.clone()
    shape = (-1, *([1] * (x0.dim() - 1)))
    for _ in range(steps):
        diff, grad, _ = _boundary(model, x_cur, y, t)
        with torch.no_grad():
            w = grad.flatten(1).float()
            cur = x_cur.flatten(1).float()
            # hyperplane: diff + ⟨w, z − x_cur⟩ = 0; from point p the step δ must give ⟨w, δ⟩ = −diff − ⟨w, p − x_cur⟩
            c_cur = -diff
            c_orig = -diff - (w * (flat0 - cur)).sum(1)
            both = project_hyperplane_box(torch.cat([cur, flat0]), torch.cat([w, w]), torch.cat([c_cur, c_orig]),
                                          norm, None if room is None else torch.cat([room, room]))
            d_cur, d_orig = both[:n], both[n:]
            n_cur = (d_cur.abs().amax(1) if norm == "linf" else d_cur.norm(dim=1)).clamp_min(1e-8)
            n_orig = (d_orig.abs().amax(1) if norm == "linf" else d_orig.norm(dim=1)).clamp_min(1e-8)
            alpha = (n_cur / (n_cur + n_orig)).clamp(0, alpha_max)[:, None]
            nxt = ((1 - alpha) * (cur + eta * d_cur) + alpha * (flat0 + eta * d_orig)).clamp(0, 1)
            x_next = nxt.view_as(x0).to(x0.dtype)
            wrong = model(x_next).argmax(1) != y
            dist = threat.norm(x_next - x0)
            closer = wrong & (dist < best)
            x_best = torch.where(closer.view(shape), x_next, x_best)
            best = torch.where(closer, dist, best)
            # backward step: a misclassified iterate moves back toward the clean point
            x_cur = torch.where(wrong.view(shape), x0 + beta * (x_next - x0), x_next)
    return x_best, best


def fab_targeted(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    *,
    steps: int = 100,
    n_target_classes: int = 9,
    restarts: int = 1,
    alpha_max: float = 0.1,
    eta: float = 1.05,
    beta: float = 0.9,
    generator: torch.Generator | None = None,
) -> FABResult:
    """Run FAB-T on ``model`` at ``(x, y)`` and report which examples have a misclassified point within
    ``threat`` (ℓ∞, ℓ2, or either masked).

    Targets: the ``n_target_classes`` (capped at K − 1) classes with the highest clean logits other than ``y``,
    one after the other, each on the examples not yet broken. Per target, ``restarts`` runs: the first from the
    clean point, later ones from a random point at distance min(ε, best so far)/2 (drawn from ``generator``).
    Examples misclassified without perturbation count as broken with distance 0. The model is used as given
    (callers choose eval mode and precision); gradients are taken with respect to the input only.
    """
    if steps < 0:
        raise ValueError(f"steps: must be >= 0, got {steps}")
    if restarts < 1:
        raise ValueError(f"restarts: must be >= 1, got {restarts}")
    if n_target_classes < 1:
        raise ValueError(f"n_target_classes: must be >= 1, got {n_target_classes}")
    norm, mask = _norm_name(threat)
    x = x.detach()
    n = x.shape[0]
    dev = x.device
    shape = (-1, *([1] * (x.dim() - 1)))
    room = None if mask is None else torch.broadcast_to(mask.to(dev, x.dtype), x.shape[1:]).reshape(1, -1)
    with runtime.frozen_parameters(model):
        with torch.no_grad():
            clean_wrong = model(x).argmax(1) != y
        dist = torch.where(clean_wrong, runtime.zeros(n, dev), runtime.full(n, float("inf"), dev))
        x_adv = x.clone()
        for tgt in _targets(model, x, y, n_target_classes):
            for r in range(restarts):
                idx = (dist > threat.eps).nonzero().squeeze(1)
                if idx.numel() == 0:
                    break
                x0 = x[idx]
                start = x0
                if r > 0:
                    radius = torch.minimum(dist[idx], runtime.full(idx.numel(), threat.eps, dev)) / 2
                    d = threat.sample_delta(x0, generator)
                    d = d / threat.norm(d).clamp_min(_TINY).view(shape)
                    start = (x0 + radius.view(shape) * d).clamp(0, 1)
                rm = None if room is None else room.expand(idx.numel(), -1)
                xb, db = _single_run(model, x0, y[idx], tgt[idx], threat, norm, rm, steps, start, alpha_max, eta,
                                     beta)
                closer = db < dist[idx]
                x_adv[idx] = torch.where(closer.view(shape), xb, x_adv[idx])
                dist[idx] = torch.where(closer, db, dist[idx])
    broken = dist <= threat.eps
    x_adv = torch.where(broken.view(shape), x_adv, x)
    return FABResult(x_adv, broken, dist)
