"""The one-pixel shortcut, OPS (Wu, Chen, Xu, Wang and Lin, ICLR 2023, "One-Pixel Shortcut: on the Learning
Preference of Deep Neural Networks"; official code cychomatica/One-Pixel-Shotcut).

Every image of class k gets one pixel — all channels at position p_k — set to the colour c_k, a corner of the
colour cube ({0, 1}^C). (p_k, c_k) is found without a model, by exhaustive search over positions and the 2^C
colours of the score the authors maximise: the mean of |c − x_p| over the class's images and channels divided
by its standard deviation, i.e. a pixel that always deviates, and deviates consistently, from the class's clean
images. As in the authors' search, classes are processed in order and a (position, colour) pair already given
to an earlier class is not reused. Ties go to the lowest (position, colour) index; a zero spread with a non-zero
mean counts as the best possible score (a background pixel that is constant across the class).

The budget is ℓ0 = 1 pixel (``threat/l0.py``); the manifest records every class's position and colour and
``verify`` checks that each image differs from its clean image at most there, and there holds the colour.
"""

from __future__ import annotations

import numpy as np
import torch

from delusive import runtime
from delusive.attacks.artifact import register_verifier
from delusive.attacks.base import ATTACKS, Attack, CraftResult
from delusive.threat import L0Ball, ThreatModel


def pixel_search(x: torch.Tensor, y: torch.Tensor, num_classes: int) -> tuple[list[tuple[int, int]], list[list[float]]]:
    """The authors' search: per class, the (position, colour) with the largest mean/std of |colour − pixel|."""
    n, c, h, w = x.shape
    colours = _corner_colours(c)
    taken: set[tuple[int, int]] = set()
    positions: list[tuple[int, int]] = []
    chosen: list[list[float]] = []
    xd = x.double()
    for k in range(num_classes):
        xk = xd[y == k]  # n_k×C×H×W
        scores = np.full((h * w, len(colours)), -np.inf)
        if len(xk):
            for v, col in enumerate(colours):
                dev = (col.view(1, c, 1, 1) - xk).abs()  # n_k×C×H×W
                mean = dev.mean(dim=(0, 1)).reshape(-1)
                std = dev.std(dim=(0, 1), unbiased=False).reshape(-1)
                s = torch.where(std > 1e-12, mean / std.clamp_min(1e-12),
                                torch.where(mean > 0, torch.full_like(mean, float("inf")), torch.zeros_like(mean)))
                scores[:, v] = s.numpy()
        for p, v in taken:
            scores[p, v] = -np.inf
        flat = int(np.argmax(scores.reshape(-1)))  # first maximum: lowest position, then lowest colour
        p, v = divmod(flat, len(colours))
        taken.add((p, v))
        positions.append((p // w, p % w))
        chosen.append([float(t) for t in colours[v].tolist()])
    return positions, chosen


def _corner_colours(c: int) -> torch.Tensor:
    """The 2^C corners of the colour cube, channel 0 the most significant bit (black first, white last)."""
    codes = np.arange(2 ** c)[:, None] >> np.arange(c - 1, -1, -1)[None, :] & 1
    return torch.from_numpy(codes.astype(np.float64))


def apply_pixels(x: torch.Tensor, y: torch.Tensor, positions: list[tuple[int, int]],
                 colours: list[list[float]]) -> torch.Tensor:
    """x with pixel positions[y_i] of image i set to colours[y_i] (all channels)."""
    out = x.clone()
    rows = runtime.as_tensor([positions[int(k)][0] for k in y.tolist()], dtype=torch.long)
    cols = runtime.as_tensor([positions[int(k)][1] for k in y.tolist()], dtype=torch.long)
    cvals = runtime.as_tensor([colours[int(k)] for k in y.tolist()], dtype=out.dtype).reshape(len(y), -1)
    idx = runtime.arange(len(y))
    out[idx, :, rows, cols] = cvals
    return out


@ATTACKS.register("OPS")
class OPS(Attack):
    """One pixel per class at a searched position and colour (Wu et al. 2023); needs no model."""

    name = "OPS"
    needs_model = False
    classwise = True

    @staticmethod
    def fixed_threat() -> ThreatModel:
        return L0Ball(1, "1")

    def craft(self, train, threat, model, seed=0, work_dir=None):  # type: ignore[no-untyped-def]
        if not isinstance(threat, L0Ball) or threat.k < 1:
            raise ValueError(f"attack OPS: its budget is l0 = 1 pixel, got {threat.norm_name} eps={threat.eps_text}")
        x, y = train.tensors()
        positions, colours = pixel_search(x, y, train.num_classes)
        xp = apply_pixels(x, y, positions, colours)
        extra = {"ops": {"positions": [list(p) for p in positions], "colours": colours}}
        return CraftResult(xp.numpy().astype(np.float32), extra=extra)


def verify_ops(manifest: dict, images: np.ndarray, clean_x: np.ndarray, labels: np.ndarray) -> list[str]:
    """Each image differs from its clean image at most at its class's recorded position, which holds the
    class's colour there (a check beyond the ℓ0 count: the pixel is the recorded shortcut)."""
    ops = manifest.get("ops")
    k = int(manifest.get("num_classes", 0))
    if not isinstance(ops, dict) or not isinstance(ops.get("positions"), list) or len(ops["positions"]) != k \
            or not isinstance(ops.get("colours"), list) or len(ops["colours"]) != k:
        return ["OPS manifest lacks its per-class 'ops' positions and colours"]
    xp = images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)
    xc = clean_x.astype(np.float32) / 255.0 if clean_x.dtype == np.uint8 else clean_x.astype(np.float32)
    n, c, h, w = xp.shape
    try:
        pos = np.asarray(ops["positions"], dtype=np.int64).reshape(k, 2)
        col = np.asarray(ops["colours"], dtype=np.float32).reshape(k, c)
    except (ValueError, TypeError):
        return ["OPS manifest: 'ops' positions/colours have the wrong shape"]
    if (pos < 0).any() or (pos[:, 0] >= h).any() or (pos[:, 1] >= w).any():
        return ["OPS manifest: a recorded pixel position lies outside the image"]
    moved = (np.abs(xp - xc) > 1e-6).any(1)  # N×H×W
    expect = np.zeros_like(moved)
    expect[np.arange(n), pos[labels, 0], pos[labels, 1]] = True
    elsewhere = np.flatnonzero((moved & ~expect).reshape(n, -1).any(1))
    at = xp[np.arange(n), :, pos[labels, 0], pos[labels, 1]]
    wrong = np.flatnonzero(np.abs(at - col[labels]).max(1) > 1e-6)
    problems = []
    if elsewhere.size:
        problems.append(f"{elsewhere.size} image(s) change a pixel other than their class's one-pixel shortcut, "
                        f"e.g. indices {elsewhere[:10].tolist()}")
    if wrong.size:
        problems.append(f"{wrong.size} image(s) do not hold their class's colour at its pixel, "
                        f"e.g. indices {wrong[:10].tolist()}")
    return problems


register_verifier("OPS", verify_ops)
