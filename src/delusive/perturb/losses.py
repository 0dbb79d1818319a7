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


LOSSES: dict[str, LossFn] = {"ce": cross_entropy, "margin": margin}


def resolve_loss(loss: str | LossFn) -> LossFn:
    if callable(loss):
        return loss
    if loss not in LOSSES:
        raise ValueError(f"loss: expected one of {', '.join(LOSSES)} or a callable, got {loss!r}")
    return LOSSES[loss]
