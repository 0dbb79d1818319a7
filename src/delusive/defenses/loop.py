"""The one training loop: any objective, SGD, epoch checkpoints that resume to identical results.

Determinism: the loader's order and augmentation and the objective's random starts in epoch e come from
generators seeded by (seed, e); the global RNG state is stored in each checkpoint. A run killed and started
again with the same arguments therefore replays exactly the epochs it had not finished.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from delusive.data import ArrayDataset, TensorLoader
from delusive.defenses.config import TrainConfig
from delusive.defenses.objective import Objective
from delusive.models import load_checkpoint, save_checkpoint
from delusive.runtime import autocast, to_channels_last
from delusive.utils import config_hash, progress
from delusive.utils.seeding import derive_seed

EvalFn = Callable[[nn.Module, int], dict[str, float]]
CHECKPOINT = "checkpoint.pt"


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
    x_all, y_all = train.tensors()
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
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        objective.load_state_dict(state.get("objective", {}))
        torch.set_rng_state(state["rng"])
        history = list(state["history"])
        start = int(state["epoch"]) + 1
    steps_per_epoch = len(loader)
    t0 = time.perf_counter()
    prior_time = sum(h.get("epoch_time_s", 0.0) for h in history)
    for epoch in range(start, cfg.epochs):
        objective.begin_epoch(epoch, cfg.epochs)
        gen = torch.Generator().manual_seed(derive_seed(cfg.seed, "objective", epoch))
        model.train()
        te = time.perf_counter()
        tot_loss = tot_correct = tot_n = 0.0
        stat_sums: dict[str, float] = {}
        stat_ns: dict[str, float] = {}
        bar = progress(loader.epoch_with_indices(epoch), total=steps_per_epoch,
                       desc=f"{desc} {epoch + 1}/{cfg.epochs}")
        for i, (xb, yb, idx) in enumerate(bar):
            lr = cfg.lr_at((epoch + i / steps_per_epoch) / cfg.epochs)
            for g in opt.param_groups:
                g["lr"] = lr
            xb = to_channels_last(xb)
            for _ in range(objective.replays):
                with autocast(cfg.precision):
                    out = objective.loss(model, xb, yb, idx, gen)
                if not torch.isfinite(out.loss):
                    raise FloatingPointError(f"{desc}: loss became {out.loss.item()} at epoch {epoch + 1}, "
                                             f"batch {i + 1}; lower --lr")
                opt.zero_grad(set_to_none=True)
                out.loss.backward()
                opt.step()
                n = yb.shape[0]
                tot_loss += out.loss.item() * n
                tot_correct += (out.logits.detach().argmax(1) == yb).sum().item()
                tot_n += n
                for k, v in out.stats.items():
                    stat_sums[k] = stat_sums.get(k, 0.0) + float(v) * n
                    stat_ns[k] = stat_ns.get(k, 0.0) + n
            bar.set_postfix(loss=f"{tot_loss / tot_n:.3f}", acc=f"{tot_correct / tot_n:.3f}", refresh=False)
        bar.close()
        row: dict[str, Any] = {"epoch": epoch + 1, "train_loss": tot_loss / max(tot_n, 1),
                               "train_accuracy": tot_correct / max(tot_n, 1), "lr": lr,
                               "epoch_time_s": time.perf_counter() - te}
        row.update({f"objective_{k}": v / stat_ns[k] for k, v in stat_sums.items()})
        if eval_fn is not None:
            row.update(eval_fn(model, epoch + 1))
        history.append(row)
        if ckpt_path is not None:
            save_checkpoint(ckpt_path, {"identity": ident, "epoch": epoch, "model": model.state_dict(),
                                        "optimizer": opt.state_dict(), "rng": torch.get_rng_state(),
                                        "objective": objective.state_dict(),
                                        "history": history, "schedule": {"epoch": epoch + 1,
                                                                         "steps_per_epoch": steps_per_epoch}})
    model.eval()
    if start >= cfg.epochs and start > 0:
        warnings.warn(f"{desc}: checkpoint already holds all {cfg.epochs} epochs; nothing to train", stacklevel=2)
    return FitResult(model, history, prior_time + time.perf_counter() - t0, start)


def _num_outputs(model: nn.Module, train: ArrayDataset) -> int:
    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return last[-1].out_features if last else train.num_classes
