"""Crafting models for P1-P4: a standard-trained model on the clean training set, made by the defenses'
trainer and cached by the hash of its config, so every attack and every sweep cell shares one model."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from torch import nn

from delusive.data import ArrayDataset
from delusive.defenses import Standard, TrainConfig, fit
from delusive.models import create_model, load_model, model_hash, save_model
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


def get_crafting_model(train: ArrayDataset, arch: str, cfg: TrainConfig,
                       cache_dir: str | Path | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Load the cached standard model for (train data, arch, cfg) or train and cache it."""
    key = config_hash({"purpose": "crafting", "data": train.sha256(), "arch": arch, "train": cfg.to_dict()})
    d = cache_root(cache_dir) / "crafting" / key
    path = d / "model.pt"
    if path.exists() and path.with_suffix(".json").exists():
        model, _ = load_model(path)
    else:
        c, h, _ = train.shape
        model = create_model(arch, train.num_classes, c, h, seed=cfg.seed)
        result = fit(model, train, Standard(), cfg, checkpoint_dir=d, desc="crafting model")
        save_model(model, path, {"arch": arch, "num_classes": train.num_classes, "in_channels": c,
                                 "image_size": h}, {"train": cfg.to_dict(), "data_sha256": train.sha256(),
                                                    "train_time_s": result.wall_time_s})
    info = {"arch": arch, "sha256": model_hash(model), "cache_key": key, "train": cfg.to_dict()}
    return model, info


def describe_user_model(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    model, meta = load_model(path)
    return model, {"arch": meta["arch"], "sha256": model_hash(model), "path": str(path)}
