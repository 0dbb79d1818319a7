"""A classifier that an attack trains itself while it crafts (EM, REM and SEP train a model on the data they
perturb; attacks never import the defenses' training loop, so this is the small loop they share).

Plain SGD with momentum and weight decay (Huang et al. 2021 and Fu et al. 2022 train their crafting model with
SGD lr 0.1, momentum 0.9, weight decay 5e-4), un-augmented batches drawn from a seeded permutation, so a run is
reproducible on every device. The whole state (weights, BatchNorm buffers, momentum) packs into one float32
and one int64 array for :class:`~delusive.attacks.resume.CraftCheckpoint`, so a killed run resumes bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from delusive import runtime
from delusive.attacks.resume import pack_tensors, unpack_tensors
from delusive.models import create_model, model_kind, model_names


def check_classifier(arch: str, option: str = "arch") -> str:
    """``arch`` if it names a registered classifier, else a ValueError naming the option and the choices."""
    try:
        kind = model_kind(arch)
    except ValueError as e:
        raise ValueError(f"{option}: {e}") from None
    if kind != "classifier":
        raise ValueError(f"{option}: {arch!r} is a {kind}, not a classifier ({', '.join(model_names('classifier'))})")
    return str(arch)

#: the remedy named when a crafting checkpoint holds another model's state
_DELETE_HINT = "delete the crafting checkpoint (craft_state.json) to start afresh"


class Surrogate:
    """A freshly initialised ``arch`` with its SGD optimiser on ``device``."""

    def __init__(self, arch: str, num_classes: int, shape: tuple[int, int, int], seed: int, device: torch.device,
                 lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 5e-4) -> None:
        c, h, w = shape
        self.model = runtime.prepare_model(create_model(arch, num_classes, c, (h, w), seed=seed), device)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
        for p in self.model.parameters():  # a zero buffer is what SGD's first step would make of it (buf = grad)
            self.opt.state[p]["momentum_buffer"] = torch.zeros_like(p)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """One SGD step on CE(f(x), y) in train mode; returns the loss."""
        self.model.train()
        loss = F.cross_entropy(self.model(runtime.to_channels_last(x)).float(), y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return float(loss.detach())

    def tensors(self) -> list[torch.Tensor]:
        ts = list(self.model.state_dict().values())
        ts += [self.opt.state[p]["momentum_buffer"] for p in self.model.parameters()]
        return ts

    def pack(self) -> tuple[np.ndarray, np.ndarray]:
        return pack_tensors(self.tensors())

    def unpack(self, fl: np.ndarray, it: np.ndarray) -> None:
        unpack_tensors(self.tensors(), fl, it, "crafting checkpoint", _DELETE_HINT)


def batch_order(n: int, batch_size: int, seed_of: Callable[[int], int], device: torch.device,
                index: int) -> torch.Tensor:
    """The ``index``-th batch of indices of an endless seeded shuffle: epoch e = index // per_epoch is the
    permutation seeded by ``seed_of(e)`` (drawn on the CPU, so every device sees the same batches)."""
    per_epoch = -(-n // batch_size)
    epoch, b = divmod(index, per_epoch)
    perm = runtime.randperm(n, runtime.generator(seed_of(epoch)))
    return perm[b * batch_size:(b + 1) * batch_size].to(device)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = 1024) -> float:
    """Accuracy of ``model`` (eval mode) on (x, y), in fixed chunks."""
    if len(x) == 0:
        return 0.0
    correct = 0
    with runtime.eval_mode(model):
        for s in range(0, len(x), chunk):
            correct += int((model(runtime.to_channels_last(x[s:s + chunk])).argmax(1) == y[s:s + chunk]).sum())
    return correct / len(x)


@torch.no_grad()
def mean_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = 1024) -> float:
    """Mean CE of ``model`` (eval mode) on (x, y)."""
    total = 0.0
    with runtime.eval_mode(model):
        for s in range(0, len(x), chunk):
            total += float(F.cross_entropy(model(runtime.to_channels_last(x[s:s + chunk])).float(),
                                           y[s:s + chunk], reduction="sum"))
    return total / max(len(x), 1)
