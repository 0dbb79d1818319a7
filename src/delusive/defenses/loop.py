"""The one training loop: any objective, SGD, epoch checkpoints that resume to identical results.

Determinism: the loader's order and augmentation and the objective's random starts in epoch e come from
generators seeded by (seed, e); the global RNG state is stored in each checkpoint. A run killed and started
again with the same arguments therefore replays exactly the epochs it had not finished.

Device: the loop trains on the device the model's parameters are on; the split is moved there once, and
checkpoints are written with every tensor on the CPU, so a run can resume (or be evaluated) on another device.
Loss and accuracy are summed on the device and read once per logging interval, not once per batch (a
host-device synchronisation per batch costs GPU throughput).

Data parallel (``torchrun --nproc-per-node N``, docs/scale.md): every rank draws the same seeded epoch order
and augmentation, takes its contiguous part of each global batch (disjoint across ranks), runs the objective
(and its PGD) on that part only, weights its loss by its share of the batch and sums the gradients over the
ranks, so each step applies the global batch's mean gradient, as one process would (the same weights up to
fp32 summation order; BatchNorm statistics are per rank, rank 0's are kept). Rank 0 writes the checkpoint; all
ranks resume from it.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from delusive import runtime
from delusive.data import ArrayDataset, TensorLoader
from delusive.defenses.config import TrainConfig
from delusive.defenses.objective import Objective
from delusive.defenses.recipe import REMEDY, CollapseWarning, collapse_reason, resolve_recipe
from delusive.models import load_checkpoint, save_checkpoint
from delusive.runtime import autocast, to_channels_last
from delusive.utils import config_hash, progress
from delusive.utils.seeding import derive_seed

EvalFn = Callable[[nn.Module, int], dict[str, float]]
CHECKPOINT = "checkpoint.pt"
_SYNC_EVERY = 20  # batches between reads of the running loss (NaN check, progress bar)
_PROBE = 512  # training images the collapse monitor classifies at the end of every epoch


@dataclass
class FitResult:
    model: nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)
    wall_time_s: float = 0.0
    resumed_from_epoch: int = 0


def run_identity(objective: Objective, cfg: TrainConfig, train: ArrayDataset, model: nn.Module) -> str:
    """Hash of everything that determines the trained weights: config, objective, data, architecture."""
    return config_hash({"train": cfg.to_dict(), "objective": objective.describe(), "data": train.sha256(),
                        "arch": getattr(_module(model), "arch", type(_module(model)).__name__)})


def fit(
    model: nn.Module,
    train: ArrayDataset,
    objective: Objective,
    cfg: TrainConfig,
    checkpoint_dir: str | Path | None = None,
    eval_fn: EvalFn | None = None,
    desc: str = "train",
    checkpoint_every: int = 1,
    checkpoint_minutes: float | None = None,
) -> FitResult:
    """Train ``model`` in place on ``train`` with ``objective``; resume from ``checkpoint_dir`` if it holds
    a checkpoint of the same run (a checkpoint of a different run is an error, never silently reused).

    Adversarial objectives follow the AT recipe of ``cfg`` (per-iteration ε ramp, lr warm-up; ``None`` fields
    take the recipe's defaults, :func:`delusive.defenses.recipe.resolve_recipe`). Every epoch's row records
    whether the model looked like a constant predictor (``collapsed``, ``top_class_share``); the first such
    epoch warns once (:class:`~delusive.defenses.recipe.CollapseWarning`) with the remedy.

    A checkpoint is written after every ``checkpoint_every``-th epoch, after any epoch that ends at least
    ``checkpoint_minutes`` after the previous checkpoint (when given), and always after the last epoch; a
    resume replays the epochs after the checkpoint exactly (their draws are seeded by the epoch)."""
    if checkpoint_every < 1:
        raise ValueError(f"checkpoint_every: must be an integer >= 1, got {checkpoint_every}")
    if checkpoint_minutes is not None and not checkpoint_minutes > 0:
        raise ValueError(f"checkpoint_minutes: must be > 0, got {checkpoint_minutes}")
    num_classes = _num_outputs(model, train)
    if int(train.y.max(initial=0)) >= num_classes:
        raise ValueError(f"labels reach {int(train.y.max())} but the model has {num_classes} outputs")
    cfg = resolve_recipe(cfg, objective)
    dev = runtime.device_of(model)
    distributed = runtime.init_distributed(dev)
    x_all, y_all = train.tensors()
    x_all, y_all = x_all.to(dev), y_all.to(dev)
    probe_idx = probe_indices(x_all.shape[0], dev)  # the collapse monitor's sample, spread over the whole set
    loader = TensorLoader(x_all, y_all, cfg.batch_size, shuffle=True, seed=cfg.seed,
                          crop_padding=cfg.crop_padding, hflip=cfg.hflip)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    ident = run_identity(objective, cfg, train, model)
    history: list[dict[str, Any]] = []
    start = 0
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT if checkpoint_dir is not None else None
    if ckpt_path is not None and ckpt_path.exists():
        state = load_checkpoint(ckpt_path)
        if state.get("identity") != ident:
            raise ValueError(f"{ckpt_path}: checkpoint belongs to a different run (identity {state.get('identity')}"
                             f" != {ident}); use another output directory or delete it")
        # copies the CPU tensors onto the model's device; a torch.compile wrapper loads into the module it wraps
        _module(model).load_state_dict(_plain_keys(state["model"]))
        opt.load_state_dict(state["optimizer"])
        objective.load_state_dict(state.get("objective", {}))
        torch.set_rng_state(state["rng"])
        history = list(state["history"])
        start = int(state["epoch"]) + 1
    runtime.broadcast_module(model)  # every rank starts from rank 0's weights
    steps_per_epoch = len(loader)
    total_steps = steps_per_epoch * cfg.epochs
    warned = any(h.get("collapsed") for h in history)
    t0 = last_save = time.perf_counter()
    prior_time = sum(h.get("epoch_time_s", 0.0) for h in history)
    for epoch in range(start, cfg.epochs):
        objective.begin_epoch(epoch, cfg.epochs)
        rank_label = () if runtime.rank() == 0 else ("rank", runtime.rank())  # rank 0 draws as one process
        gen = runtime.generator(derive_seed(cfg.seed, "objective", epoch, *rank_label), dev)
        model.train()
        te = time.perf_counter()
        tot_loss = runtime.zeros((), dev)
        tot_correct = runtime.zeros((), dev, torch.long)
        tot_n = 0
        stat_sums: dict[str, Any] = {}
        stat_ns: dict[str, float] = {}
        bar = progress(loader.epoch_with_indices(epoch), total=steps_per_epoch,
                       desc=f"{desc} {epoch + 1}/{cfg.epochs}")
        lr = cfg.lr
        for i, (xb, yb, idx) in enumerate(bar):
            progress_now = (epoch + i / steps_per_epoch) / cfg.epochs
            lr = cfg.lr_at(progress_now, 1.0 / total_steps)
            for g in opt.param_groups:
                g["lr"] = lr
            objective.set_eps_scale(cfg.eps_scale_at(progress_now))
            n_global = yb.shape[0]
            if distributed:
                sl = runtime.shard_slice(n_global)
                xb, yb, idx = xb[sl], yb[sl], idx[sl]
            xb = to_channels_last(xb)
            if yb.shape[0] == 0:  # DDP: this rank's part of a last batch smaller than the world is empty
                _empty_shard_steps(model, opt, objective.replays)
            for _ in range(objective.replays if yb.shape[0] else 0):
                with autocast(cfg.precision, dev):
                    out = objective.loss(model, xb, yb, idx, gen)
                opt.zero_grad(set_to_none=True)
                (out.loss * (yb.shape[0] / n_global) if distributed else out.loss).backward()
                runtime.all_reduce_gradients(model)
                opt.step()
                n = yb.shape[0]
                tot_loss += out.loss.detach().float() * n
                tot_correct += (out.logits.detach().argmax(1) == yb).sum()
                tot_n += n
                for k, v in out.stats.items():  # a tensor stat stays on the device until the epoch ends
                    v = _accumulable(v)
                    stat_sums[k] = stat_sums.get(k, 0.0) + v * n
                    stat_ns[k] = stat_ns.get(k, 0.0) + n
            if (i + 1) % _SYNC_EVERY == 0 or i + 1 == steps_per_epoch:
                totals = _reduced(tot_loss, tot_correct, tot_n, distributed)  # one synchronisation per interval
                mean_loss = totals[0] / totals[2]
                if not math.isfinite(mean_loss):
                    raise FloatingPointError(f"{desc}: loss became {mean_loss} at epoch {epoch + 1} (by batch "
                                             f"{i + 1}); lower --lr")
                bar.set_postfix(loss=f"{mean_loss:.3f}", acc=f"{totals[1] / totals[2]:.3f}", refresh=False)
        bar.close()
        loss_sum, correct_sum, n_sum = _reduced(tot_loss, tot_correct, tot_n, distributed)
        top_share = _top_class_share(model, x_all[probe_idx], num_classes, cfg.precision)
        reason = collapse_reason(loss_sum / max(n_sum, 1), top_share, num_classes,
                                 check_loss=epoch > 0 or cfg.epochs == 1)
        if reason is not None and not warned and runtime.is_main():
            warned = True
            warnings.warn(f"{desc}: epoch {epoch + 1}: {reason}; {REMEDY}", CollapseWarning, stacklevel=2)
        stat_sums = _host_values(stat_sums)  # one read of every statistic per epoch
        if distributed:  # every rank's totals and objective statistics, and rank 0's BatchNorm statistics
            keys = sorted(stat_sums)
            sums = runtime.all_reduce_sum(runtime.as_tensor([[stat_sums[k], stat_ns[k]] for k in keys] or [[0.0, 0.0]],
                                                            dev, torch.float64))
            stat_sums = {k: float(sums[j, 0]) for j, k in enumerate(keys)}
            stat_ns = {k: float(sums[j, 1]) for j, k in enumerate(keys)}
            runtime.broadcast_module(model)
        row: dict[str, Any] = {"epoch": epoch + 1, "train_loss": loss_sum / max(n_sum, 1),
                               "train_accuracy": correct_sum / max(n_sum, 1), "lr": lr,
                               "epoch_time_s": time.perf_counter() - te,
                               "collapsed": reason is not None, "top_class_share": top_share}
        if reason is not None:
            row["collapse_reason"] = reason
        row.update({f"objective_{k}": v / stat_ns[k] for k, v in stat_sums.items()})
        if eval_fn is not None:
            row.update(eval_fn(model, epoch + 1))
        history.append(row)
        due = (epoch + 1) % checkpoint_every == 0 or epoch + 1 == cfg.epochs or (
            checkpoint_minutes is not None and time.perf_counter() - last_save >= 60 * checkpoint_minutes)
        if ckpt_path is not None and due and runtime.is_main():
            last_save = time.perf_counter()
            save_checkpoint(ckpt_path, runtime.to_cpu({
                                        "identity": ident, "epoch": epoch, "model": _module(model).state_dict(),
                                        "optimizer": opt.state_dict(), "rng": torch.get_rng_state(),
                                        "objective": objective.state_dict(),
                                        "history": history, "schedule": {"epoch": epoch + 1,
                                                                         "steps_per_epoch": steps_per_epoch}}))
        runtime.barrier()  # no rank runs ahead of the checkpoint a resume would start from
    model.eval()
    if start >= cfg.epochs and start > 0:
        warnings.warn(f"{desc}: checkpoint already holds all {cfg.epochs} epochs; nothing to train", stacklevel=2)
    return FitResult(model, history, prior_time + time.perf_counter() - t0, start)


def probe_indices(n: int, device: torch.device | str) -> torch.Tensor:
    """Up to ``_PROBE`` evenly spaced positions of an ``n``-image training set: the collapse monitor's sample.
    Evenly spaced, not the first images: a set stored in label order (an image folder read class by class,
    a rotation view stored rotation by rotation) has one class in its first 512 images, where a model that
    is right predicts one class too."""
    k = min(n, _PROBE)
    return (runtime.arange(k, device, torch.long) * n) // max(k, 1)


def _top_class_share(model: nn.Module, x: torch.Tensor, num_classes: int, precision: str) -> float:
    """Share of the most predicted class among the end-of-epoch model's predictions on a spread sample of the
    training images (un-augmented, eval mode): near 1 for a constant predictor, whatever the loss says."""
    if x.shape[0] == 0:
        return 0.0
    with runtime.eval_mode(model), torch.no_grad(), autocast(precision, x.device):
        pred = model(to_channels_last(x)).argmax(1)
    counts = runtime.zeros(num_classes, x.device, torch.long).scatter_add_(0, pred, torch.ones_like(pred))
    return float(counts.max()) / x.shape[0]  # one read per epoch


def _module(model: nn.Module) -> nn.Module:
    """The module a ``torch.compile`` wrapper wraps (the model itself otherwise): checkpoints hold its keys, so
    a run trained with ``--compile`` resumes without it and the other way round."""
    return getattr(model, "_orig_mod", model)


def _plain_keys(state: dict[str, Any]) -> dict[str, Any]:
    """A state dict without the ``_orig_mod.`` prefix that checkpoints of compiled models had before."""
    prefix = "_orig_mod."
    return {k.removeprefix(prefix): v for k, v in state.items()}


def _empty_shard_steps(model: nn.Module, opt: torch.optim.Optimizer, replays: int) -> None:
    """A DDP rank with no example in this batch: it contributes zero loss weight (a zero gradient) to the
    ranks' sum and takes the same optimiser steps, so every rank keeps the same weights (a mean over zero
    examples would be NaN)."""
    for _ in range(replays):
        opt.zero_grad(set_to_none=True)
        runtime.all_reduce_gradients(model)  # fills zero gradients, then sums the other ranks' into them
        opt.step()


def _accumulable(v: torch.Tensor | float) -> torch.Tensor | float:
    """A statistic ready to be summed: a float, or a detached float64 tensor on its device (float32 on MPS,
    which has no float64), so sums match those of Python floats."""
    if not isinstance(v, torch.Tensor):
        return float(v)
    return v.detach().float() if v.device.type == "mps" else v.detach().double()


def _host_values(sums: dict[str, Any]) -> dict[str, float]:
    """Per-key sums as Python floats, with the device-held ones read in one transfer."""
    keys = [k for k, v in sums.items() if isinstance(v, torch.Tensor)]
    out = {k: float(v) for k, v in sums.items() if not isinstance(v, torch.Tensor)}
    if keys:
        out.update(zip(keys, torch.stack([sums[k] for k in keys]).tolist(), strict=True))
    return out


def _num_outputs(model: nn.Module, train: ArrayDataset) -> int:
    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return last[-1].out_features if last else train.num_classes


def _reduced(loss: torch.Tensor, correct: torch.Tensor, n: int, distributed: bool) -> tuple[float, float, float]:
    """(loss sum, correct count, examples) of this epoch so far, summed over the ranks when distributed."""
    if not distributed:
        return loss.item(), float(correct.item()), float(n)
    t = runtime.all_reduce_sum(torch.stack([loss.double(), correct.double(), runtime.full((), n, loss.device,
                                                                                           torch.float64)]))
    a, b, c = t.tolist()
    return a, b, c
