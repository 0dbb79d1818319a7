"""Per-sample losses the PGD engine optimises (the ℓ of Eqs. 1-2 in the paper)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy, computed in fp32 even under autocast."""
    return F.cross_entropy(logits.float(), labels, reduction="none")


def margin(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample CW margin: best other logit minus the label's logit (> 0 means misclassified)."""
    z = logits.float()
    own = z.gather(1, labels[:, None]).squeeze(1)
    other = z.scatter(1, labels[:, None], float("-inf")).amax(1)
    return other - own


_DLR_TINY = 1e-12


def dlr(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample Difference of Logits Ratio (Croce & Hein, ICML 2020), to be maximised:

    ``-(z_y - max_{i≠y} z_i) / (z_π1 - z_π3)`` with ``z_π1 ≥ z_π2 ≥ …`` the sorted logits. Dividing by a
    logit difference makes the loss invariant to shifting and rescaling the logits, so a model cannot hide
    behind large or saturated logits; it needs at least 3 classes.
    """
    z = logits.float()
    if z.shape[1] < 3:
        raise ValueError(f"loss 'dlr': needs at least 3 classes, the model has {z.shape[1]}")
    top = z.topk(3, dim=1).values
    own = z.gather(1, labels[:, None]).squeeze(1)
    other = z.scatter(1, labels[:, None], float("-inf")).amax(1)
    return -(own - other) / (top[:, 0] - top[:, 2] + _DLR_TINY)


def dlr_targeted(logits: torch.Tensor, labels: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample targeted DLR of APGD-T (Croce & Hein, ICML 2020), to be maximised:

    ``-(z_y - z_t) / (z_π1 - (z_π3 + z_π4) / 2)``; it grows as the target logit overtakes the true one.
    Needs at least 4 classes.
    """
    z = logits.float()
    if z.shape[1] < 4:
        raise ValueError(f"loss 'dlr-targeted': needs at least 4 classes, the model has {z.shape[1]}")
    top = z.topk(4, dim=1).values
    own = z.gather(1, labels[:, None]).squeeze(1)
    tgt = z.gather(1, target[:, None]).squeeze(1)
    return -(own - tgt) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + _DLR_TINY)


LOSSES: dict[str, LossFn] = {"ce": cross_entropy, "margin": margin, "dlr": dlr}


def resolve_loss(loss: str | LossFn) -> LossFn:
    if callable(loss):
        return loss
    if loss not in LOSSES:
        raise ValueError(f"loss: expected one of {', '.join(LOSSES)} or a callable, got {loss!r}")
    return LOSSES[loss]
