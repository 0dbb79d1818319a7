"""Linear probe: how useful a trained network's representation is for a downstream task (paper Sec. 5.2).

The paper judges rotation-pretrained networks (Gidaris et al. 2018) by a downstream classifier "trained on
the clean data using logistic regression" over the frozen representation. Here:

* **features** — the input of the model's *last* ``nn.Linear`` (last in ``model.modules()`` order, i.e. the
  head), captured by a forward hook with the model in eval mode and no augmentation. For the package's nets
  that is SmallCNN's 128-unit hidden layer (after its ReLU) and the global-average-pooled features of VGG,
  ResNet and DenseNet. The result names the layer.
* **classifier** — multinomial logistic regression on features standardised with the training features'
  mean and standard deviation (a constant feature keeps scale 1), minimising

      L(W, b) = (1/N) Σ_i CE(W·z_i + b, y_i) + (l2/2)·‖W‖²_F      (bias not penalised),

  which is scikit-learn's ``LogisticRegression(C=1/(N·l2))`` (multinomial, with intercept). The objective is
  strictly convex in W for ``l2 > 0``; the bias is fixed only up to a common shift, which changes no
  prediction. It is minimised full-batch by L-BFGS (strong-Wolfe line search) from zero, so the fit is
  deterministic (no random draw, hence no seed), in float64 (float32 on MPS), on the model's device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from delusive import runtime
from delusive.data import ArrayDataset
from delusive.runtime import eval_mode, to_channels_last

__all__ = ["LogisticProbe", "fit_logistic", "last_linear", "linear_probe", "penultimate_features"]

DEFAULT_L2 = 1e-4


def last_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    """(qualified name, module) of the last ``nn.Linear`` in ``model.modules()`` order: the classifier head."""
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise ValueError(f"linear probe: {type(model).__name__} has no nn.Linear layer whose input to take as "
                         f"features")
    return found[-1]


def penultimate_features(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Float32 N×D inputs of the model's last ``nn.Linear`` for images ``x``, in eval mode, on the model's device."""
    _, head = last_linear(model)
    dev = runtime.device_of(model)
    captured: list[torch.Tensor] = []

    def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        captured.append(inputs[0].detach().flatten(1).float())

    handle = head.register_forward_pre_hook(hook)
    try:
        with torch.no_grad(), eval_mode(model):
            for i in range(0, x.shape[0], batch_size):
                model(to_channels_last(x[i : i + batch_size].to(dev)))
    finally:
        handle.remove()
    if not captured:
        return runtime.zeros((0, head.in_features), device=dev)
    return torch.cat(captured)


def _dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


@dataclass(frozen=True)
class LogisticProbe:
    """A fitted probe: standardisation (``mean``, ``scale``), weights D×K, bias K, and how the fit ended."""

    mean: torch.Tensor
    scale: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor
    l2: float
    iterations: int
    grad_max: float

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        z = (features.to(self.mean.device, self.mean.dtype) - self.mean) / self.scale
        return z @ self.weight + self.bias

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        return self.logits(features).argmax(1)


def fit_logistic(features: torch.Tensor, labels: torch.Tensor, num_classes: int, l2: float = DEFAULT_L2,
                 max_iter: int = 500, tol: float = 1e-7) -> LogisticProbe:
    """Fit the regularised multinomial logistic regression of the module docstring on ``features`` (N×D).

    Stops when the largest gradient entry is at most ``tol`` or after ``max_iter`` L-BFGS iterations; the
    probe records both numbers (``iterations``, ``grad_max``) so a fit that did not converge is visible.
    """
    if features.dim() != 2 or labels.shape != (features.shape[0],):
        raise ValueError(f"linear probe: expected N×D features and N labels, got {tuple(features.shape)} and "
                         f"{tuple(labels.shape)}")
    if features.shape[0] == 0:
        raise ValueError("linear probe: no training features")
    if not l2 > 0:
        raise ValueError(f"l2: must be > 0 (it keeps the problem strictly convex), got {l2}")
    dev = features.device
    dt = _dtype(dev)
    f = features.to(dt)
    y = labels.to(dev, torch.long)
    mean = f.mean(0)
    std = f.std(0, unbiased=False)
    scale = torch.where(std > 0, std, torch.ones_like(std))
    z = (f - mean) / scale
    weight = runtime.zeros((f.shape[1], num_classes), device=dev, dtype=dt).requires_grad_(True)
    bias = runtime.zeros(num_classes, device=dev, dtype=dt).requires_grad_(True)
    opt = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, max_eval=2 * max_iter, tolerance_grad=tol,
                            tolerance_change=0.0, history_size=20, line_search_fn="strong_wolfe")

    def objective() -> torch.Tensor:
        return F.cross_entropy(z @ weight + bias, y) + 0.5 * l2 * (weight * weight).sum()

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    opt.step(closure)
    iterations = int(opt.state[weight].get("n_iter", 0))
    gw, gb = torch.autograd.grad(objective(), [weight, bias])
    grad_max = float(torch.cat([gw.flatten(), gb]).abs().max())
    return LogisticProbe(mean, scale, weight.detach(), bias.detach(), float(l2), iterations, grad_max)


def linear_probe(model: nn.Module, train: ArrayDataset, test: ArrayDataset, l2: float = DEFAULT_L2,
                 max_iter: int = 500, batch_size: int = 1000) -> dict[str, Any]:
    """Fit a probe on the frozen features of clean ``train`` and report its accuracy on clean ``test``.

    Returns ``test_accuracy`` (the downstream metric of Sec. 5.2), ``train_accuracy``, the feature ``layer``
    (name of the last ``nn.Linear``, whose input is the feature) and ``feature_dim``, ``l2``, and the fit's
    ``iterations`` and ``grad_max``.
    """
    if train.num_classes != test.num_classes:
        raise ValueError(f"linear probe: train has {train.num_classes} classes, test {test.num_classes}")
    layer, head = last_linear(model)
    x_tr, y_tr = train.tensors()
    x_te, y_te = test.tensors()
    f_tr = penultimate_features(model, x_tr, batch_size)
    f_te = penultimate_features(model, x_te, batch_size)
    probe = fit_logistic(f_tr, y_tr, train.num_classes, l2=l2, max_iter=max_iter)
    dev = f_tr.device
    train_acc = int((probe.predict(f_tr) == y_tr.to(dev)).sum()) / len(train)
    test_acc = int((probe.predict(f_te) == y_te.to(dev)).sum()) / len(test) if len(test) else float("nan")
    return {"test_accuracy": test_acc, "train_accuracy": train_acc, "layer": layer or type(model).__name__,
            "feature_dim": int(head.in_features), "l2": float(l2), "iterations": probe.iterations,
            "grad_max": probe.grad_max, "n_train": len(train), "n_test": len(test)}
