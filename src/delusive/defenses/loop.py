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
from delusive.models import load_checkpoint, save_checkpoint
from delusive.runtime import autocast, to_channels_last
from delusive.utils import config_hash, progress
from delusive.utils.seeding import derive_seed

EvalFn = Callable[[nn.Module, int], dict[str, float]]
CHECKPOINT = "checkpoint.pt"
_SYNC_EVERY = 20  # batches between reads of the running loss (NaN check, progress bar)


@dataclass
class FitResult:
    model: nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)
    wall_time_s: float = 0.0
    resumed_from_epoch: int = 0


def run_identity(objective: Objective, cfg: TrainConfig, train: ArrayDataset, model: nn.Module) -> str:
    """Hash of everything that determines the trained weights: config, objective, data, architecture."""
    return config_hash({"train": cfg.to_dict(), "objective": objective.describe(), "data": train.sha256(),
                        "arch": getattr(model, "arch", type(model).__name__)})


def fit(
    model: nn.Module,
    train: ArrayDataset,
    objective: Objective,
    cfg: TrainConfig,
    checkpoint_dir: str | Path | None = None,
    eval_fn: EvalFn | None = None,
    desc: str = "train",
) -> FitResult:
    """Train ``model`` in place on ``train`` with ``objective``; resume from ``checkpoint_dir`` if it holds
    a checkpoint of the same run (a checkpoint of a different run is an error, never silently reused)."""
    if int(train.y.max(initial=0)) >= _num_outputs(model, train):
        raise ValueError(f"labels reach {int(train.y.max())} but the model has {_num_outputs(model, train)} outputs")
    dev = runtime.device_of(model)
    distributed = runtime.init_distributed(dev)
    x_all, y_all = train.tensors()
    x_all, y_all = x_all.to(dev), y_all.to(dev)
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
        model.load_state_dict(state["model"])  # copies the CPU tensors onto the model's device
        opt.load_state_dict(state["optimizer"])
        objective.load_state_dict(state.get("objective", {}))
        torch.set_rng_state(state["rng"])
        history = list(state["history"])
        start = int(state["epoch"]) + 1
    runtime.broadcast_module(model)  # every rank starts from rank 0's weights
    steps_per_epoch = len(loader)
    t0 = time.perf_counter()
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
        stat_sums: dict[str, float] = {}
        stat_ns: dict[str, float] = {}
        bar = progress(loader.epoch_with_indices(epoch), total=steps_per_epoch,
                       desc=f"{desc} {epoch + 1}/{cfg.epochs}")
        lr = cfg.lr
        for i, (xb, yb, idx) in enumerate(bar):
            lr = cfg.lr_at((epoch + i / steps_per_epoch) / cfg.epochs)
            for g in opt.param_groups:
                g["lr"] = lr
            n_global = yb.shape[0]
            if distributed:
                sl = runtime.shard_slice(n_global)
                xb, yb, idx = xb[sl], yb[sl], idx[sl]
            xb = to_channels_last(xb)
            for _ in range(objective.replays):
                if yb.shape[0] == 0:  # a batch smaller than the world leaves this rank nothing: no loss (the mean
                    opt.zero_grad(set_to_none=True)  # of nothing is NaN), but it joins the gradient sum and step
                    runtime.all_reduce_gradients(model)
                    opt.step()
                    continue
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
                for k, v in out.stats.items():
                    stat_sums[k] = stat_sums.get(k, 0.0) + float(v) * n
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
        if distributed:  # every rank's totals and objective statistics, and rank 0's BatchNorm statistics
            keys = sorted(stat_sums)
            sums = runtime.all_reduce_sum(runtime.as_tensor([[stat_sums[k], stat_ns[k]] for k in keys] or [[0.0, 0.0]],
                                                            dev, torch.float64))
            stat_sums = {k: float(sums[j, 0]) for j, k in enumerate(keys)}
            stat_ns = {k: float(sums[j, 1]) for j, k in enumerate(keys)}
            runtime.broadcast_module(model)
        row: dict[str, Any] = {"epoch": epoch + 1, "train_loss": loss_sum / max(n_sum, 1),
                               "train_accuracy": correct_sum / max(n_sum, 1), "lr": lr,
                               "epoch_time_s": time.perf_counter() - te}
        row.update({f"objective_{k}": v / stat_ns[k] for k, v in stat_sums.items()})
        if eval_fn is not None:
            row.update(eval_fn(model, epoch + 1))
        history.append(row)
        if ckpt_path is not None and runtime.is_main():
            save_checkpoint(ckpt_path, runtime.to_cpu({
                                        "identity": ident, "epoch": epoch, "model": model.state_dict(),
                                        "optimizer": opt.state_dict(), "rng": torch.get_rng_state(),
                                        "objective": objective.state_dict(),
                                        "history": history, "schedule": {"epoch": epoch + 1,
                                                                         "steps_per_epoch": steps_per_epoch}}))
        runtime.barrier()  # no rank runs ahead of the checkpoint a resume would start from
    model.eval()
    if start >= cfg.epochs and start > 0:
        warnings.warn(f"{desc}: checkpoint already holds all {cfg.epochs} epochs; nothing to train", stacklevel=2)
    return FitResult(model, history, prior_time + time.perf_counter() - t0, start)


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
