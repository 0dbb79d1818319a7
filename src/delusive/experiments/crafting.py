"""Crafting models for P1-P4: a standard-trained model on the clean training set, made by the one
train-and-evaluate pipeline and cached by the hash of its config, so every attack and every sweep cell shares
one model. With ``val_size`` > 0 the model is the epoch with the best natural accuracy on a held-out part of
the training set, as the reference keeps its best clean-validation checkpoint (49k/1k split)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from torch import nn

from delusive import runtime
from delusive.data import ArrayDataset
from delusive.defenses import Standard, TrainConfig
from delusive.models import load_model, model_file, model_hash
from delusive.utils import config_hash

CRAFTING_DEFAULTS: dict[str, Any] = {"epochs": 3}


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir``, else $DELUSIVE_CACHE, else ~/.cache/delusive."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("DELUSIVE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "delusive"


def crafting_config(seed: int = 0, epochs: int | None = None, **overrides: Any) -> TrainConfig:
    cfg = TrainConfig(seed=seed, epochs=epochs or CRAFTING_DEFAULTS["epochs"])
    return replace(cfg, **overrides) if overrides else cfg


def get_crafting_model(train: ArrayDataset, arch: str, cfg: TrainConfig, cache_dir: str | Path | None = None,
                       val_size: int = 0, device: str = "auto",
                       deterministic: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """Load the cached standard model for (train data, arch, cfg, val_size) or train and cache it on ``device``
    (``deterministic``: the exact CUDA switches, :class:`~delusive.experiments.pipeline.RunOptions`)."""
    from delusive.experiments.pipeline import EvalPlan, RunOptions, train_and_evaluate

    ident: dict[str, Any] = {"purpose": "crafting", "data": train.sha256(), "arch": arch, "train": cfg.to_dict()}
    if val_size:
        ident["val_size"] = int(val_size)
    key = config_hash(ident)
    d = cache_root(cache_dir) / "crafting" / key
    path = model_file(d)
    if path.exists() and path.with_suffix(".json").exists():
        model, meta = load_model(path)
        if (d / "metrics.json").exists():  # how long the cached model took to train (Table 1's cost)
            from delusive.utils import read_json

            recorded = read_json(d / "metrics.json")
            meta = {**meta, "train_time_s": recorded.get("train_time_s") if isinstance(recorded, dict) else None}
    else:
        plan = EvalPlan(val_size=int(val_size), select="val_natural" if val_size else "last")
        opts = RunOptions(device=device, deterministic=deterministic)
        rec = train_and_evaluate(arch, train, None, Standard(), cfg, plan, d, opts,
                                 desc="crafting model", model_meta={"train": cfg.to_dict(),
                                                                    "data_sha256": train.sha256()})
        model, meta = load_model(d)
        meta = {**meta, "train_time_s": rec["train_time_s"]}
    info = {"arch": arch, "sha256": model_hash(model), "cache_key": key, "train": cfg.to_dict(),
            "selected_epoch": meta.get("selected_epoch"), "val_size": int(val_size),
            "train_time_s": meta.get("train_time_s")}
    return model.to(runtime.resolve_device(device)), info


def describe_user_model(path: str | Path, data: ArrayDataset | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """A user's crafting model (``--crafting-model``) and its description; with ``data``, refused up front when
    its input shape or class count differs from the data's (naming both), instead of failing inside torch."""
    model, meta = load_model(path)
    if data is not None:
        from delusive.evaluation.fit import check_model_fits_data

        check_model_fits_data(meta, data, path, "--dataset")
    return model, {"arch": meta["arch"], "sha256": model_hash(model), "path": str(path)}
