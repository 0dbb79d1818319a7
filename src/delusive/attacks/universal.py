"""P3 and P4 of Section 4: one universal perturbation per class.

For every class k a δ_k is grown from zero: each iteration takes a fresh shuffled batch of training images
of *all* classes, relabels them k and takes a normalised (ℓ2) or sign (ℓ∞) step of ``rel_step_size``·ε
that lowers CE(f(clip(x + δ_k)), k), then projects δ_k onto the ball (REFERENCE.md: 500 iterations of batch
256). P3 gives class y the δ aimed at t(y) (a class-consistent adversarial feature); P4 gives class y its
own δ_y (a class-consistent helpful feature). All K perturbations are optimised together, one batch each.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from delusive import runtime
from delusive.attacks.base import ATTACKS, Attack, CraftResult, target_map
from delusive.attacks.resume import CraftCheckpoint
from delusive.attacks.simple import apply_class_deltas
from delusive.models import model_hash
from delusive.runtime import eval_mode, frozen_parameters, to_channels_last
from delusive.utils import config_hash, progress
from delusive.utils.seeding import derive_seed


def universal_class_deltas(model: torch.nn.Module, x_all: torch.Tensor, num_classes: int, threat,  # type: ignore[no-untyped-def]
                           iterations: int, batch_size: int, rel_step_size: float, seed: int,
                           ckpt: CraftCheckpoint | None = None, desc: str = "craft",
                           precision: str = "fp32") -> torch.Tensor:
    """The K class-universal perturbations δ_k that make any image look like class k to ``model`` (computed on
    the model's device; the batch draws come from a CPU generator, so every device sees the same batches).
    ``precision`` is the forward passes' autocast (the perturbations and their steps stay fp32)."""
    k_classes = num_classes
    dev = runtime.device_of(model)
    x_all = x_all.to(dev)
    deltas = runtime.zeros((k_classes, *x_all.shape[1:]), dev)
    start = 0
    if ckpt is not None and (restored := ckpt.load()) is not None:
        deltas = runtime.as_tensor(restored[0]["deltas"], dev)
        start = int(restored[1]["iteration"])
    alpha = rel_step_size * threat.eps
    n = x_all.shape[0]
    labels = runtime.arange(k_classes, dev).repeat_interleave(min(batch_size, n))
    bar = progress(total=iterations, initial=start, desc=desc, unit="it")
    with eval_mode(model), frozen_parameters(model):
        for it in range(start, iterations):
            g = runtime.generator(derive_seed(seed, "universal", it))
            idx = torch.stack([runtime.randperm(n, g)[:batch_size] for _ in range(k_classes)]).to(dev)
            deltas = universal_step(model, x_all, deltas, labels, idx, threat, alpha, precision)
            bar.update(1)
            if ckpt is not None and ckpt.due() and it + 1 < iterations:
                ckpt.save({"deltas": deltas.cpu().numpy()}, iteration=it + 1)
    bar.close()
    return deltas.detach().cpu()


def universal_step(model: torch.nn.Module, x_all: torch.Tensor, deltas: torch.Tensor, labels: torch.Tensor,
                   idx: torch.Tensor, threat, alpha: float, precision: str = "fp32") -> torch.Tensor:  # type: ignore[no-untyped-def]
    """One iteration: every δ_k steps (size ``alpha``) down CE(f(clip(x + δ_k)), k) on its batch ``x_all[idx[k]]``
    and is projected onto the ball. Runs on the device of its inputs with no host synchronisation."""
    xb = x_all[idx]  # K × B × C × H × W: a fresh batch for every class
    d = deltas.clone().requires_grad_(True)
    xp = torch.clamp(xb + d[:, None], 0.0, 1.0).flatten(0, 1)
    with runtime.autocast(precision, xp.device):
        logits = model(to_channels_last(xp))
    loss = F.cross_entropy(logits.float(), labels, reduction="sum")
    (grad,) = torch.autograd.grad(loss, d)
    with torch.no_grad():
        return threat.project_delta(deltas - alpha * threat.direction(grad))


_MEMO: dict[str, torch.Tensor] = {}  # P3 and P4 of one crafting run share the same K class perturbations


class _Universal(Attack):
    classwise = True

    def __init__(self, iterations: int = 500, batch_size: int = 256, rel_step_size: float = 0.2,
                 target_shift: int = 1) -> None:
        self.precision = "fp32"  # set on the instance (``--precision``): autocast of the crafting model's passes
        if iterations < 1:
            raise ValueError(f"iterations: must be >= 1, got {iterations}")
        if batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
        if rel_step_size <= 0:
            raise ValueError(f"rel_step_size: must be > 0, got {rel_step_size}")
        self.iterations, self.batch_size = int(iterations), int(batch_size)
        self.rel_step_size, self.target_shift = float(rel_step_size), int(target_shift)

    def assign(self, deltas: torch.Tensor) -> torch.Tensor:
        """Class y's perturbation, indexed by y."""
        raise NotImplementedError

    def craft(self, train, threat, model, seed=0, work_dir=None):  # type: ignore[no-untyped-def]
        if model is None:
            raise ValueError(f"attack {self.name}: needs a crafting model")
        x_all, _ = train.tensors()
        precision = runtime.resolve_precision(self.precision, runtime.device_of(model))
        parts: list[object] = ["universal", self.iterations, self.batch_size, self.rel_step_size,
                               threat.describe(), train.sha256(), model_hash(model), seed]
        ident = config_hash(parts if precision == "fp32" else [*parts, precision])
        # the memo also keys on the device: a CUDA run must compute its own result, not reuse the CPU's
        memo_key = config_hash([ident, str(runtime.device_of(model))])
        if memo_key in _MEMO:
            deltas = _MEMO[memo_key]
        else:
            ckpt = CraftCheckpoint(work_dir, ident)
            deltas = universal_class_deltas(model, x_all, train.num_classes, threat, self.iterations,
                                            self.batch_size, self.rel_step_size, seed, ckpt, f"craft {self.name}",
                                            precision)
            # the checkpoint stays until the artifact is written and verified (make_poison clears it)
            if len(_MEMO) >= 8:
                _MEMO.pop(next(iter(_MEMO)))
            _MEMO[memo_key] = deltas
        per_class = self.assign(deltas)
        return CraftResult(apply_class_deltas(train, per_class), per_class.numpy().astype(np.float32))


@ATTACKS.register("P3")
class P3(_Universal):
    """Universal adversarial perturbations: class y receives δ_{t(y)}."""

    name = "P3"

    def assign(self, deltas):  # type: ignore[no-untyped-def]
        k = deltas.shape[0]
        return deltas[target_map(runtime.arange(k), k, self.target_shift)]


@ATTACKS.register("P4")
class P4(_Universal):
    """Universal hypocritical perturbations: class y receives its own δ_y."""

    name = "P4"

    def assign(self, deltas):  # type: ignore[no-untyped-def]
        return deltas
