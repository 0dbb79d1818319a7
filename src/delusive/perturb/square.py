"""Square Attack of Andriushchenko, Croce, Flammarion and Hein, "Square Attack: a query-efficient black-box
adversarial attack via random search" (ECCV 2020): the score-based attack of AutoAttack's standard version.

Square needs no gradient, so it sees through gradient masking. It minimises the margin loss
``z_y − max_{k≠y} z_k`` by random search: each query changes the current perturbation inside a random square
window and is kept only if the margin drops (Algorithm 1). The window's side is ``√(p·h·w)`` pixels, where
the fraction ``p`` starts at ``p_init`` (0.8 in AutoAttack) and halves after 10, 50, 200, 500, 1000, 2000,
4000, 6000 and 8000 of 10,000 queries (the schedule is rescaled to the query budget).

ℓ∞ (Algorithm 2): the start is vertical stripes ``x + ε·s`` with a random sign per column and channel, and a
query sets the window to ``±ε``, one random sign per channel; a query that would not change the image flips
its signs. ℓ2 (Algorithm 3): the start tiles the image with "pseudo-Gaussian" blocks of random sign; a query
moves the perturbation's mass from a second random window into the first, as a new pseudo-Gaussian block plus
what the first window already held, so the perturbation always has norm ε before clipping to the box.

Windows are drawn per example (the reference implementation draws one position per batch). A masked threat
model is respected: every candidate is multiplied by the mask and projected onto the feasible set, so windows
outside the mask are wasted queries but never leave it. An example counts as broken once a queried point is
classified differently from its label; every queried point lies in B(x, ε) ∩ [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from delusive import runtime
from delusive.threat import L2Ball, LinfBall, Masked, ThreatModel

_TINY = 1e-12
_SCHEDULE = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


@dataclass
class SquareResult:
    """Per-example outcome of :func:`square`: ``x_adv`` is the first misclassified point found, else the point
    of lowest margin; ``misclassified`` says whether a queried point was misclassified; ``queries`` counts the
    forward passes spent on each example (the start included)."""

    x_adv: torch.Tensor
    misclassified: torch.Tensor
    queries: torch.Tensor


def p_selection(p_init: float, it: int, n_queries: int) -> float:
    """The window fraction at query ``it`` of ``n_queries``: ``p_init`` halved at each mark of the paper's
    10,000-query schedule, the schedule rescaled to ``n_queries``."""
    t = int(it / max(n_queries, 1) * 10000)
    return p_init / 2 ** sum(t > m for m in _SCHEDULE)


def margin_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``z_y − max_{k≠y} z_k`` in fp32 (negative: misclassified)."""
    z = logits.float()
    own = z.gather(1, y[:, None]).squeeze(1)
    return own - z.scatter(1, y[:, None], float("-inf")).amax(1)


def _base(threat: ThreatModel) -> tuple[ThreatModel, torch.Tensor | None]:
    if isinstance(threat, Masked):
        return threat.base, threat.mask
    return threat, None


def _signs(shape: tuple[int, ...], gen: torch.Generator | None, dev: torch.device) -> torch.Tensor:
    return torch.where(runtime.rand(shape, gen, dev) < 0.5, -1.0, 1.0)


def _window_index(n: int, size: int, s: int, gen: torch.Generator | None, dev: torch.device
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per example, a random offset and the offset-relative index of every row (or column) of the image."""
    off = runtime.randint(0, size - s + 1, (n,), gen, dev)
    rel = runtime.arange(size, dev)[None, :] - off[:, None]
    return off, rel


def _window_mask(rel_h: torch.Tensor, rel_w: torch.Tensor, s: int) -> torch.Tensor:
    """N×1×H×W mask of the s×s windows given by offset-relative row and column indices."""
    in_h = (rel_h >= 0) & (rel_h < s)
    in_w = (rel_w >= 0) & (rel_w < s)
    return (in_h[:, :, None] & in_w[:, None, :]).unsqueeze(1).float()


def _place(patch: torch.Tensor, rel_h: torch.Tensor, rel_w: torch.Tensor, channels: int) -> torch.Tensor:
    """Put an N×C×s×s ``patch`` at each example's window (zeros elsewhere): N×C×H×W."""
    n, s = patch.shape[0], patch.shape[-1]
    ih, iw = rel_h.clamp(0, s - 1), rel_w.clamp(0, s - 1)
    ni = runtime.arange(n, patch.device)[:, None, None, None]
    ci = runtime.arange(channels, patch.device)[None, :, None, None]
    out = patch[ni, ci, ih[:, None, :, None], iw[:, None, None, :]]
    return out * _window_mask(rel_h, rel_w, s)


def _rectangles(rows: int, cols: int, dev: torch.device) -> torch.Tensor:
    """Concentric rectangles around the centre, ring k weighted Σ_{j≥k} 1/(j+1)² (the paper's M^(r,s)),
    normalised to unit ℓ2 norm."""
    ci, cj = rows // 2, cols // 2
    ring = torch.maximum((runtime.arange(rows, dev)[:, None] - ci).abs(),
                         (runtime.arange(cols, dev)[None, :] - cj).abs())
    levels = max(ci, cj) + 1
    w = 1.0 / (runtime.arange(levels, dev, torch.float32) + 1) ** 2
    tail = w.flip(0).cumsum(0).flip(0)  # tail[k] = Σ_{j≥k} w_j
    m = tail[ring]
    return m / m.pow(2).sum().sqrt().clamp_min(_TINY)


def pseudo_gaussian(s: int, dev: torch.device) -> torch.Tensor:
    """The s×s block η of the ℓ2 Square Attack: rectangles of opposite sign in the two halves, unit ℓ2 norm."""
    eta = torch.cat([_rectangles(s // 2, s, dev), -_rectangles(s - s // 2, s, dev)], 0) if s > 1 else \
        runtime.ones((1, 1), dev)
    return eta / eta.pow(2).sum().sqrt().clamp_min(_TINY)


def _blocks(n: int, c: int, s: int, gen: torch.Generator | None, dev: torch.device) -> torch.Tensor:
    """N×C×s×s pseudo-Gaussian blocks, each transposed at random and signed at random per channel."""
    eta = pseudo_gaussian(s, dev)
    flip = (runtime.rand(n, gen, dev) < 0.5).view(n, 1, 1, 1)
    block = torch.where(flip, eta.t()[None, None], eta[None, None])
    return block * _signs((n, c, 1, 1), gen, dev)


def _l2_normalize(delta: torch.Tensor, norm_of: ThreatModel) -> torch.Tensor:
    n = norm_of.norm(delta).clamp_min(_TINY)
    return delta / n.view(-1, *([1] * (delta.dim() - 1)))


def square(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    *,
    queries: int = 5000,
    p_init: float = 0.8,
    generator: torch.Generator | None = None,
) -> SquareResult:
    """Run the untargeted Square Attack (margin loss) on ``model`` at ``(x, y)`` within ``threat`` (ℓ∞, ℓ2, or
    either masked) with at most ``queries`` queries after the start, and return per-example results.

    Only the examples not yet misclassified are queried. All randomness comes from ``generator``. The model is
    used as given (callers choose eval mode and precision); no gradient is taken.
    """
    if queries < 0:
        raise ValueError(f"queries: must be >= 0, got {queries}")
    if not 0 < p_init <= 1:
        raise ValueError(f"p_init: must be in (0, 1], got {p_init}")
    base, mask = _base(threat)
    if not isinstance(base, LinfBall | L2Ball):
        raise ValueError(f"square: supports linf and l2 threat models (or masked ones), got {threat!r}")
    if x.dim() != 4:
        raise ValueError(f"square: expects N×C×H×W images, got shape {tuple(x.shape)}")
    x = x.detach()
    n, c, h, w = x.shape
    dev = x.device
    eps = threat.eps
    m = None if mask is None else mask.to(device=dev, dtype=x.dtype)
    with torch.no_grad():
        if isinstance(base, LinfBall):
            delta = eps * _signs((n, c, 1, w), generator, dev).expand(n, c, h, w)
            x_best = threat.project(x + delta, x)
        else:
            delta = runtime.zeros(x.shape, dev, x.dtype)
            s0 = max(min(h, w) // 5, 1)
            start_h, start_w = (h - 5 * s0) // 2, (w - 5 * s0) // 2
            for i in range(h // s0):
                for j in range(w // s0):
                    top, left = start_h + i * s0, start_w + j * s0
                    if top + s0 > h or left + s0 > w or top < 0 or left < 0:
                        continue
                    delta[:, :, top : top + s0, left : left + s0] += _blocks(n, c, s0, generator, dev)
            if m is not None:
                delta = delta * m
            x_best = threat.project(x + eps * _l2_normalize(delta, threat), x)
        logits = model(x_best)
        margin = margin_loss(logits, y)
        mis = logits.argmax(1) != y
        used = runtime.ones(n, dev, torch.long)

        for it in range(queries):
            idx = (~mis).nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            xc, xb = x[idx], x_best[idx]
            k = idx.numel()
            p = p_selection(p_init, it, queries)
            if isinstance(base, LinfBall):
                s = min(max(int(round(math.sqrt(p * h * w))), 1), h, w)
                _, rh = _window_index(k, h, s, generator, dev)
                _, rw = _window_index(k, w, s, generator, dev)
                win = _window_mask(rh, rw, s)
                sign = _signs((k, c, 1, 1), generator, dev)
                cand = threat.project(xb + win * (xc + eps * sign - xb), xc)
                same = ((cand - xb).abs().flatten(1).amax(1) < 1e-7).view(-1, 1, 1, 1)
                flipped = threat.project(xb + win * (xc - eps * sign - xb), xc)
                x_new = torch.where(same, flipped, cand)
            else:
                s = max(int(round(math.sqrt(p * h * w))), 3)
                s = min(s + 1 if s % 2 == 0 else s, h, w)
                delta = xb - xc
                _, rh1 = _window_index(k, h, s, generator, dev)
                _, rw1 = _window_index(k, w, s, generator, dev)
                _, rh2 = _window_index(k, h, s, generator, dev)
                _, rw2 = _window_index(k, w, s, generator, dev)
                w1, w2 = _window_mask(rh1, rw1, s), _window_mask(rh2, rw2, s)
                norm_img = delta.flatten(1).norm(dim=1)
                norm_win = (delta * torch.maximum(w1, w2)).flatten(1).norm(dim=1)
                old = delta * w1
                old = old / old.pow(2).sum((2, 3), keepdim=True).sqrt().add(_TINY)
                new = _place(_blocks(k, c, s, generator, dev), rh1, rw1, c) + old
                if m is not None:
                    new = new * m
                # per channel, the new window carries the mass of both windows plus what the budget has left
                target = ((eps**2 - norm_img**2).clamp_min(0) / c + norm_win**2).sqrt().view(-1, 1, 1, 1)
                new = new / new.pow(2).sum((2, 3), keepdim=True).sqrt().add(_TINY) * target
                delta = delta * (1 - w1) * (1 - w2) + new
                if m is not None:
                    delta = delta * m
                x_new = threat.project(xc + eps * _l2_normalize(delta, threat), xc)
            logits = model(x_new)
            mg = margin_loss(logits, y[idx])
            wrong = logits.argmax(1) != y[idx]
            better = (mg < margin[idx]) | wrong
            margin[idx] = torch.where(better, mg, margin[idx])
            x_best[idx] = torch.where(better.view(-1, 1, 1, 1), x_new, xb)
            mis[idx] = wrong
            used[idx] += 1
    return SquareResult(x_best, mis, used)
