"""The poisoning pipeline: clean data → (cached crafting model) → attack → verified artifact on disk."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from delusive.attacks import ATTACKS, PoisonArtifact, build_artifact, create_attack, save_artifact
from delusive.attacks.defaults import default_attack_params
from delusive.data import ArrayDataset, load_dataset
from delusive.experiments.crafting import crafting_config, describe_user_model, get_crafting_model
from delusive.threat import ThreatModel
from delusive.utils import atomic_write_json


def seeded_subset(ds: ArrayDataset, size: int | None, seed: int) -> ArrayDataset:
    """A seeded random subset (sorted indices), or the whole set when ``size`` is None or too large."""
    if size is None or size >= len(ds):
        return ds
    return ds.subset(np.sort(np.random.default_rng(seed).permutation(len(ds))[:size]))


def clean_training_set(dataset: str, data_root: str | None, subset: dict[str, int] | None) -> ArrayDataset:
    """The clean training set an artifact was made from (``subset`` as recorded in its manifest)."""
    ds = load_dataset(dataset, "train", root=data_root)
    if subset:
        ds = seeded_subset(ds, int(subset["size"]), int(subset["seed"]))
    return ds


def make_poison(
    attack: str,
    dataset: str,
    threat: ThreatModel,
    out: str | Path,
    *,
    data_root: str | None = None,
    seed: int = 0,
    storage: str = "uint8",
    attack_params: dict[str, Any] | None = None,
    reference_schedule: bool = False,
    train_subset: int | None = None,
    crafting_model: str | Path | None = None,
    crafting_arch: str = "small-cnn",
    crafting_epochs: int | None = None,
    cache_dir: str | Path | None = None,
    model: nn.Module | None = None,
    model_info: dict[str, Any] | None = None,
) -> PoisonArtifact:
    """Craft ``attack`` on the clean training split of ``dataset`` and write a verified artifact to ``out``."""
    ATTACKS.get(attack)
    params = default_attack_params(attack, dataset, reference_schedule)
    params.update(attack_params or {})
    atk = create_attack(attack, **params)
    subset = {"size": int(train_subset), "seed": int(seed)} if train_subset else None
    train = clean_training_set(dataset, data_root, subset)
    info: dict[str, Any] | None = None
    if atk.needs_model:
        if model is not None:
            info = model_info or {}
        elif crafting_model is not None:
            model, info = describe_user_model(crafting_model)
        else:
            model, info = get_crafting_model(train, crafting_arch, crafting_config(seed, crafting_epochs), cache_dir)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # an older artifact in ``out`` stops being valid the moment a new crafting run starts in it
    (out / "manifest.json").unlink(missing_ok=True)
    print(f"crafting {attack} on {dataset} ({len(train)} images, {threat!r}) -> {out}", file=sys.stderr)
    t0 = time.perf_counter()
    result = atk.craft(train, threat, model, seed=seed, work_dir=out)
    craft_time = time.perf_counter() - t0
    art = build_artifact(train, result.x, threat, attack=attack, attack_params=atk.params(), dataset=dataset,
                         seed=seed, storage=storage, class_deltas=result.class_deltas, crafting_model=info,
                         extra={"subset": subset})
    save_artifact(art, out)
    atomic_write_json(out / "timing.json", {"craft_time_s": craft_time})
    return art
