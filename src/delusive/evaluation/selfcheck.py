"""AutoAttack's self-checks (Croce & Hein 2020's ``checks``): signs that a robust accuracy cannot be trusted.

Three conditions make gradient-based attacks, and so the number, unreliable:

- the predictions are constant: the model is a constant predictor (a collapsed adversarial training), so its
  "robust accuracy" is the share of one class and no attack can lower it;
- the input gradients are zero for most examples: gradient masking (saturated softmax, non-differentiable
  pre-processing); PGD and APGD stall, and only Square (score-based) is meaningful;
- two forward passes of the same input differ: a randomized defense; each attack sees another model, so
  Square and expectation over transformation (EOT) matter and results vary between runs.

Each check returns one line (or None); :func:`self_check_warnings` collects them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from delusive import runtime
from delusive.evaluation.attacks import fp32

_ZERO_GRAD_SHARE = 0.5
_RANDOM_TOL = 1e-5


def constant_predictions(preds: torch.Tensor) -> str | None:
    """A warning when every prediction is the same class (needs at least 2 predictions)."""
    if preds.numel() < 2 or bool((preds != preds[0]).any()):
        return None
    return (f"self-check: the model predicts class {int(preds[0])} for all {preds.numel()} test images (a constant "
            "predictor, e.g. a collapsed adversarial training); its robust accuracy is that class's share, "
            "not robustness")


def zero_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> str | None:
    """A warning when the cross-entropy's input gradient is exactly zero for most examples."""
    dev = runtime.device_of(model)
    xg = runtime.to_channels_last(x.to(dev).float()).detach().requires_grad_(True)
    with runtime.eval_mode(model), runtime.frozen_parameters(model), fp32(dev), torch.enable_grad():
        loss = F.cross_entropy(model(xg).float(), y.to(dev), reduction="sum")
        grad = torch.autograd.grad(loss, xg)[0]
    zero = grad.flatten(1).abs().sum(1) == 0
    share = float(zero.float().mean()) if zero.numel() else 0.0
    if share <= _ZERO_GRAD_SHARE:
        return None
    return (f"self-check: the input gradient is zero for {int(zero.sum())} of {zero.numel()} examples (gradient "
            "masking?); gradient-based attacks (pgd, apgd, fab-t) are unreliable here, use square or autoattack")


def randomized(model: nn.Module, x: torch.Tensor) -> str | None:
    """A warning when two forward passes of the same input, in eval mode, give different outputs."""
    dev = runtime.device_of(model)
    xb = runtime.to_channels_last(x.to(dev).float())
    with torch.no_grad(), runtime.eval_mode(model), fp32(dev):
        a, b = model(xb).float(), model(xb).float()
    scale = 1.0 + float(a.abs().max()) if a.numel() else 1.0
    if a.shape == b.shape and float((a - b).abs().max() if a.numel() else 0.0) <= _RANDOM_TOL * scale:
        return None
    return ("self-check: two forward passes of the same input differ (a randomized model or defense); the "
            "attacks see a different model on every query, so use square (and EOT) and expect run-to-run spread")


def self_check_warnings(model: nn.Module, x: torch.Tensor, y: torch.Tensor, preds: torch.Tensor,
                        n_probe: int = 64) -> list[str]:
    """The self-check lines for a model about to be attacked: ``preds`` are its clean predictions on all test
    images; the gradient and randomness checks use the first ``n_probe`` of ``x``."""
    notes = [constant_predictions(preds), zero_gradients(model, x[:n_probe], y[:n_probe]),
             randomized(model, x[:n_probe])]
    return [n for n in notes if n is not None]
