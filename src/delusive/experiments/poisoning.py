"""The poisoning pipeline: clean data → (cached crafting model) → attack → verified artifact on disk."""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from delusive import runtime
from delusive.attacks import (
    ATTACKS,
    PoisonArtifact,
    build_artifact,
    create_attack,
    load_artifact,
    save_artifact,
    verify_artifact,
)
from delusive.attacks.defaults import attack_budget, default_attack_params, fixed_budget, resolve_schedule
from delusive.attacks.resume import clear_craft_state
from delusive.data import ArrayDataset, holdout_split, load_dataset
from delusive.experiments.crafting import crafting_config, describe_user_model, get_crafting_model
from delusive.threat import ThreatModel, default_budget, make_threat
from delusive.utils import atomic_write_json


def subset_indices(n: int, size: int | None, seed: int) -> np.ndarray:
    """The sorted indices :func:`seeded_subset` keeps out of ``n`` (all of them when ``size`` is None or too large)."""
    if size is None or size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).permutation(n)[:size])


def seeded_subset(ds: ArrayDataset, size: int | None, seed: int) -> ArrayDataset:
    """A seeded random subset (sorted indices), or the whole set when ``size`` is None or too large."""
    if size is None or size >= len(ds):
        return ds
    return ds.subset(subset_indices(len(ds), size, seed))


def _same_dtype(a: ArrayDataset, b: ArrayDataset) -> tuple[np.ndarray, np.ndarray]:
    if a.x.dtype == b.x.dtype:
        return a.x, b.x
    return a.float_x(), b.float_x()


def mix_poison(clean: ArrayDataset, poisoned: ArrayDataset, fraction: float, seed: int) -> ArrayDataset:
    """The training set in which a seeded ``fraction`` of the examples carries the perturbation and the rest is
    clean (partial poisoning): 0 gives ``clean`` itself, 1 gives ``poisoned`` itself. Rows stay aligned."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"poison_fraction: must be in [0, 1], got {fraction}")
    if len(clean) != len(poisoned) or not np.array_equal(clean.y, poisoned.y):
        raise ValueError("poison_fraction: the poisoned set does not line up with its clean set")
    if fraction == 0:
        return clean
    if fraction == 1:
        return poisoned
    n = len(clean)
    chosen = np.random.default_rng([int(seed), 13]).permutation(n)[: int(round(fraction * n))]
    xc, xp = _same_dtype(clean, poisoned)
    x = xc.copy()
    x[chosen] = xp[chosen]
    return replace(clean, x=x)


def with_extra_clean(train: ArrayDataset, pool: ArrayDataset, count: int, seed: int) -> ArrayDataset:
    """``train`` followed by ``count`` clean examples drawn (seeded) from ``pool`` (Figure 6)."""
    if count == 0:
        return train
    if count > len(pool):
        raise ValueError(f"extra_clean: {count} examples asked for, but the clean pool holds only {len(pool)}")
    picked = pool.subset(np.sort(np.random.default_rng([int(seed), 17]).permutation(len(pool))[:count]))
    xa, xb = _same_dtype(train, picked)
    return replace(train, x=np.concatenate([xa, xb]), y=np.concatenate([train.y, picked.y]))


def clean_pool(dataset: str, data_root: str | None, subset: dict[str, int] | None) -> ArrayDataset:
    """Clean examples disjoint from the (poisoned) training subset: the ``extra`` split where the dataset has
    one (SVHN), else the training images the subset left out (held aside, never poisoned)."""
    try:
        return load_dataset(dataset, "extra", root=data_root)
    except (ValueError, FileNotFoundError):
        pass
    full = load_dataset(dataset, "train", root=data_root)
    if not subset:
        raise ValueError(f"extra_clean on {dataset}: the clean pool is the part of the training split left out of "
                         "train_subset; set train_subset (or use a dataset with an extra split)")
    keep = np.ones(len(full), dtype=bool)
    keep[subset_indices(len(full), int(subset["size"]), int(subset["seed"]))] = False
    return full.subset(np.flatnonzero(keep))


def clean_dataset_of(manifest: dict[str, Any]) -> str:
    """The clean dataset an artifact names, usable from any working directory: a ``folder:`` path as typed
    when it still exists from here, else the resolved path recorded at crafting time; if neither exists, a
    ``FileNotFoundError`` saying where the folder was and how to point at its new place."""
    dataset = str(manifest["dataset"])
    if not dataset.startswith("folder:") or Path(dataset.removeprefix("folder:")).is_dir():
        return dataset
    recorded = manifest.get("source_path")
    if isinstance(recorded, str) and Path(recorded).is_dir():
        return f"folder:{recorded}"
    where = f" (crafted from {recorded})" if isinstance(recorded, str) else ""
    raise FileNotFoundError(f"the artifact's clean folder {dataset.removeprefix('folder:')!r} is not here{where}; "
                            f"if it moved, pass --clean-dataset folder:NEW_PATH (its content hash is checked)")


def split_pair(dataset: str, data_root: str | None, holdout: dict[str, Any] | None
               ) -> tuple[ArrayDataset, ArrayDataset | None]:
    """(train, test) of ``dataset``: its own splits, or with ``holdout`` ({fraction, seed}) a seeded,
    class-stratified part of its training split held out as the test split (a folder with one split).
    The test part is None when the dataset has no test split and no holdout is asked for."""
    full = load_dataset(dataset, "train", root=data_root)
    if holdout:
        return holdout_split(full, float(holdout["fraction"]), int(holdout["seed"]))
    from delusive.data import dataset_info

    if "test" not in dataset_info(dataset).splits:
        return full, None
    return full, load_dataset(dataset, "test", root=data_root)


def clean_training_set(dataset: str, data_root: str | None, subset: dict[str, int] | None,
                       holdout: dict[str, Any] | None = None) -> ArrayDataset:
    """The clean training set an artifact was made from (``subset`` and ``holdout`` as in its manifest)."""
    ds = load_dataset(dataset, "train", root=data_root)
    if holdout:
        ds = holdout_split(ds, float(holdout["fraction"]), int(holdout["seed"]))[0]
    if subset:
        ds = seeded_subset(ds, int(subset["size"]), int(subset["seed"]))
    return ds


def resolve_attack_threat(attack: str, dataset: str, shape: tuple[int, ...], threat: ThreatModel | None) -> ThreatModel:
    """The budget to craft ``attack`` in: the fixed one of OPS/CUDA (a different one given is an error), else
    ``threat``, else the attack's own default (``attacks/defaults.attack_budget``), else the dataset's."""
    fixed = fixed_budget(attack)
    if fixed is not None:
        ft = make_threat(*fixed)
        if threat is not None and threat.describe() != ft.describe():
            raise ValueError(f"attack {attack}: its budget is fixed ({ft.norm_name} eps={ft.eps_text}); got "
                             f"{threat.norm_name} eps={threat.eps_text} (drop --norm/--eps)")
        return ft
    if threat is not None:
        return threat
    return make_threat(*(attack_budget(attack, dataset, shape) or default_budget(dataset)))


def make_poison(
    attack: str,
    dataset: str,
    threat: ThreatModel | None,
    out: str | Path,
    *,
    data_root: str | None = None,
    seed: int = 0,
    storage: str | None = "auto",
    attack_params: dict[str, Any] | None = None,
    reference_schedule: bool = False,
    train_subset: int | None = None,
    crafting_model: str | Path | None = None,
    crafting_arch: str = "small-cnn",
    crafting_epochs: int | None = None,
    cache_dir: str | Path | None = None,
    model: nn.Module | None = None,
    model_info: dict[str, Any] | None = None,
    device: str = "auto",
    schedule: str = "auto",
    holdout: dict[str, Any] | None = None,
    precision: str = "fp32",
    deterministic: bool = False,
) -> PoisonArtifact:
    """Craft ``attack`` on the clean training split of ``dataset`` and write a verified artifact to ``out``.
    Crafting runs on ``device`` (the crafting model is moved there); the artifact is the same file anywhere.
    ``schedule`` (auto, cpu, reference; ``reference_schedule`` is ``reference``) picks the attack's default
    hyperparameters, ``auto`` by the size of the images (:func:`delusive.attacks.defaults.auto_schedule`).
    ``precision`` is the autocast of the attack's forward passes (P1-P4, L2C; perturbations stay fp32; a part
    of the crafting identity when not fp32); ``deterministic`` sets the exact CUDA switches."""
    ATTACKS.get(attack)
    subset = {"size": int(train_subset), "seed": int(seed)} if train_subset else None
    train = clean_training_set(dataset, data_root, subset, holdout)
    chosen = resolve_schedule("reference" if reference_schedule else schedule, train.shape)
    params = default_attack_params(attack, schedule=chosen)
    params.update(attack_params or {})
    atk = create_attack(attack, **params)
    dev = runtime.resolve_device(device)
    runtime.set_deterministic(dev, deterministic)
    precision = runtime.resolve_precision(precision, dev)
    if hasattr(atk, "precision"):
        atk.precision = precision
    threat = resolve_attack_threat(attack, dataset, train.shape, threat)
    info: dict[str, Any] | None = None
    if atk.needs_model:
        if model is not None:
            info = model_info or {}
        elif crafting_model is not None:
            model, info = describe_user_model(crafting_model, train)
        else:
            model, info = get_crafting_model(train, crafting_arch, crafting_config(seed, crafting_epochs), cache_dir,
                                             device=device, deterministic=deterministic)
        model = model.to(runtime.resolve_device(device))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # an older artifact in ``out`` stops being valid the moment a new crafting run starts in it
    (out / "manifest.json").unlink(missing_ok=True)
    how = "auto: " if schedule == "auto" and not reference_schedule else ""
    print(f"crafting {attack} on {dataset} ({len(train)} images {'×'.join(map(str, train.shape))}) within "
          f"{threat.norm_name} eps={threat.eps_text}, {chosen} schedule ({how}{_schedule_text(atk.params())}) -> "
          f"{out}", file=sys.stderr)
    if not atk.needs_model and hasattr(atk, "device"):  # attacks that train their own networks (L2C)
        atk.device = runtime.resolve_device(device)
    t0 = time.perf_counter()
    result = atk.craft(train, threat, model, seed=seed, work_dir=out)
    craft_time = time.perf_counter() - t0
    # the manifest describes the crafting model, not how long this machine took to train it (bytes stay stable)
    described = None if info is None else {k: v for k, v in info.items() if k != "train_time_s"}
    art = build_artifact(train, result.x, threat, attack=attack, attack_params=atk.params(), dataset=dataset,
                         seed=seed, storage=storage, class_deltas=result.class_deltas, crafting_model=described,
                         extra={"subset": subset, "schedule": chosen, **({"holdout": holdout} if holdout else {}),
                                **_source(dataset, data_root, train), **result.extra,
                                **({"precision": precision} if precision != "fp32" else {})})
    save_artifact(art, out)
    # Table 1's two costs: training what the attack needs (crafting model / generator; 0 for P5) and generating
    timing = {"craft_time_s": craft_time, **result.timing, "precision": precision, "deterministic": deterministic,
              "device": str(dev)}
    timing["crafting_train_time_s"] = float(result.timing.get("train_generator_s",
                                                              (info or {}).get("train_time_s", 0.0) or 0.0))
    timing["generate_time_s"] = float(result.timing.get("generate_s", craft_time - result.timing.get(
        "train_generator_s", 0.0)))
    atomic_write_json(out / "timing.json", timing)
    # only now, with every file written, may the crafting checkpoint go: read the artifact back and verify it
    report = verify_artifact(load_artifact(out), train)
    if not report.ok:
        raise ValueError(f"{out}: the artifact just written fails verification ({'; '.join(report.problems)}); "
                         "the crafting checkpoint is kept: rerun the same command")
    clear_craft_state(out)
    return art


def _schedule_text(params: dict[str, Any]) -> str:
    keys = ("steps", "iterations", "trials", "classifier_epochs", "batch_size")
    return ", ".join(f"{k} {params[k]}" for k in keys if k in params) or "no iterative schedule"


def _source(dataset: str, data_root: str | None, train: ArrayDataset) -> dict[str, Any]:
    """Where the clean set came from, for ``verify`` from any working directory: a ``folder:`` dataset's
    resolved path and class names (the hash ``source_sha256`` is its identity; the path is only a hint)."""
    out: dict[str, Any] = {"class_names": list(train.classes) if train.classes else None}
    if dataset.startswith("folder:"):
        out["source_path"] = str(Path(dataset.removeprefix("folder:")).resolve())
    return out
