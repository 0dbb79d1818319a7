"""Run a sweep: for every cell, get (or craft) its poison, then train and evaluate it through the one
pipeline (:mod:`delusive.experiments.pipeline`, the same code ``delusive train`` runs) and store a result
record. Finished cells are skipped; an interrupted cell resumes from its epoch checkpoint and an interrupted
poison from its crafting checkpoint."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from delusive.attacks import load_artifact, verify_artifact
from delusive.data import ArrayDataset, load_dataset
from delusive.defenses import TrainConfig
from delusive.experiments.crafting import get_crafting_model
from delusive.experiments.pipeline import RunOptions, split_validation, train_and_evaluate
from delusive.experiments.poisoning import (
    clean_pool,
    clean_training_set,
    make_poison,
    mix_poison,
    with_extra_clean,
)
from delusive.experiments.spec import Cell, Spec, build_objective, eval_plan, expand, train_config
from delusive.experiments.store import RunStore, git_commit
from delusive.threat import Masked, half_mask, make_threat
from delusive.utils import atomic_write_json, read_json, stable_json


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def ensure_poison(cell: Cell, spec: Spec, store: RunStore) -> tuple[ArrayDataset, dict[str, Any]]:
    """The training set of a cell: the clean split for ``clean``, else the (cached) verified artifact."""
    pc = cell.poison_config
    subset = {"size": spec.train_subset, "seed": cell.seed} if spec.train_subset else None
    clean = clean_training_set(cell.dataset, spec.data_root, subset)
    if cell.attack == "clean":
        return clean, {"attack": "clean", "payload_sha256": clean.sha256(), "craft_time_s": 0.0,
                       "crafting_train_time_s": 0.0, "generate_time_s": 0.0}
    d = store.artifact_dir(pc)
    if not (d / "manifest.json").exists():
        threat = make_threat(pc["budget"]["norm"], pc["budget"]["eps"])
        model = info = None
        if pc["crafting"] is not None:
            cfg = TrainConfig(**{**pc["crafting"]["train"], "milestones": tuple(pc["crafting"]["train"]["milestones"])})
            model, info = get_crafting_model(clean, pc["crafting"]["arch"], cfg, store.cache_dir,
                                             val_size=int(pc["crafting"].get("val_size", 0)), device=spec.device,
                                             deterministic=spec.deterministic)
        make_poison(cell.attack, cell.dataset, threat, d, data_root=spec.data_root, seed=cell.seed,
                    storage=pc["storage"], attack_params=pc["params"], train_subset=spec.train_subset,
                    model=model, model_info=info, device=spec.device, precision=pc.get("precision", "fp32"),
                    deterministic=spec.deterministic)
    art = load_artifact(d)
    report = verify_artifact(art, clean)
    if not report.ok:
        raise ValueError(f"{d}: cached artifact fails verification ({'; '.join(report.problems)}); delete it to "
                         "re-craft")
    timing = read_json(d / "timing.json") if (d / "timing.json").exists() else {}  # regular file, size-bounded
    timing = timing if isinstance(timing, dict) else {}
    meta = {"attack": cell.attack, "artifact": str(d.relative_to(store.root)),
            "payload_sha256": art.manifest["payload_sha256"], "norm_stats": art.manifest["norm_stats"],
            "crafting_model": art.manifest["crafting_model"], "craft_time_s": timing.get("craft_time_s"),
            "crafting_train_time_s": timing.get("crafting_train_time_s"),
            "generate_time_s": timing.get("generate_time_s", timing.get("craft_time_s"))}
    poisoned = art.dataset(cell.dataset, clean.classes)
    if cell.poison_fraction is not None:
        poisoned = mix_poison(clean, poisoned, cell.poison_fraction, cell.seed)
    return poisoned, meta


def cell_training_set(cell: Cell, spec: Spec, store: RunStore) -> tuple[ArrayDataset, dict[str, Any]]:
    """What a cell trains on: its (possibly partly) poisoned set, plus ``extra_clean`` clean examples from a
    pool disjoint from it (Figure 6)."""
    train, meta = ensure_poison(cell, spec, store)
    if cell.poison_fraction is not None and cell.attack == "clean":
        meta = {**meta, "poison_fraction": cell.poison_fraction}
    if cell.extra_clean:
        subset = {"size": spec.train_subset, "seed": cell.seed} if spec.train_subset else None
        pool = clean_pool(cell.dataset, spec.data_root, subset)
        train = with_extra_clean(train, pool, cell.extra_clean, cell.seed)
    return train, meta


__all__ = ["ensure_poison", "run_cell", "run_sweep", "split_validation"]


def run_cell(cell: Cell, spec: Spec, store: RunStore, test: ArrayDataset) -> dict[str, Any]:
    t0 = time.perf_counter()
    train, poison_meta = cell_training_set(cell, spec, store)
    d = cell.defense
    objective = build_objective(d)
    if d.region is not None and objective.threat is not None:  # Section 5.3: perturb only that block
        objective.threat = Masked(objective.threat, half_mask(train.shape, d.region))
    cfg = train_config(spec, cell.dataset, cell.seed)
    plan = eval_plan(spec)
    extra_tests = {split: load_dataset(cell.dataset, split, root=spec.data_root) for split in plan.splits}
    probe_data = None
    if plan.probe:  # rotation SSL: the downstream task is the base dataset's own labels
        base = cell.dataset.split(":", 1)[1] if cell.dataset.startswith("rot:") else cell.dataset
        probe_data = (load_dataset(base, "train", root=spec.data_root), load_dataset(base, "test", root=spec.data_root))
    cdir = store.cell_dir(cell.cell_id)
    atomic_write_json(cdir / "config.json", cell.config)
    m = train_and_evaluate(cell.model, train, test, objective, cfg, plan, cdir,
                           RunOptions(device=spec.device, compile=spec.compile, deterministic=spec.deterministic,
                                      checkpoint_every=spec.checkpoint_every,
                                      checkpoint_minutes=spec.checkpoint_minutes),
                           desc=f"{cell.attack}/{d.label}/s{cell.seed}",
                           model_meta={"dataset": cell.dataset, "cell_id": cell.cell_id},
                           extra_tests=extra_tests, probe_data=probe_data)
    hist = m["history"]
    best = next((r for r in hist if r["epoch"] == m["selected_epoch"]), hist[-1])
    return {
        "cell_id": cell.cell_id, "dataset": cell.dataset, "attack": cell.attack, "defense": d.label,
        "defense_name": d.name, "model": cell.model, "seed": cell.seed, "config": cell.config,
        "order": {"attack": spec.attacks.index(cell.attack), "defense": spec.defenses.index(d),
                  "dataset": spec.datasets.index(cell.dataset), "model": spec.models.index(cell.model)},
        "poison": poison_meta, "eval_threat": make_threat(plan.norm, plan.eps).describe(),
        # the headline numbers are the selected epoch's (selection on the held-out training split)
        "natural_accuracy": m["natural_accuracy"], "robust_accuracy": m.get("robust_accuracy"),
        "robust_attack": m.get("robust_attack"), "selected_epoch": m["selected_epoch"],
        "selection": m["selection"], "last_natural_accuracy": m["last_natural_accuracy"],
        "last_robust_accuracy": m["last_robust_accuracy"],
        "best_epoch": m["selected_epoch"], "best_natural_accuracy": best.get("test_natural_accuracy"),
        "val_size": m["val_size"], "train_size": m["train_size"],
        "train_time_s": m["train_time_s"], "train_eval_time_s": m["train_eval_time_s"],
        "transform_time_s": m.get("transform_time_s", 0.0),
        "wall_time_s": time.perf_counter() - t0, "history": hist, "device": m["device"],
        "precision": m["precision"], "deterministic": m["deterministic"], "versions": _versions(),
        "git_commit": git_commit(),
        "robust_subset": m.get("n_robust"),
        # what reports need to mark collapsed cells and print the evaluation spec (absent in older records)
        **{k: m[k] for k in ("collapsed", "collapse_epoch", "collapse_reason", "collapsed_epochs", "epochs",
                               "eval_spec", "n_test", "natural_n") if k in m},
        **({"defender_eps": d.defender_eps} if d.defender_eps is not None else {}),
        **({"region": d.region} if d.region is not None else {}),
        **({"extra_clean": cell.extra_clean} if cell.extra_clean is not None else {}),
        **({"poison_fraction": cell.poison_fraction} if cell.poison_fraction is not None else {}),
        **({"split_accuracy": m["split_accuracy"]} if "split_accuracy" in m else {}),
        **({"probe_accuracy": m["probe_accuracy"], "probe": m["probe"]} if "probe_accuracy" in m else {}),
    }


def _versions() -> dict[str, str]:
    import platform

    import delusive

    return {"delusive": delusive.__version__, "torch": torch.__version__, "python": platform.python_version()}


def run_sweep(spec: Spec, out: str | Path, max_cells: int | None = None, executor: Any = "local",
              ray_address: str | None = None) -> list[dict[str, Any]]:
    """Run every unfinished cell of ``spec`` into ``out`` with ``executor`` (``local``, ``ray`` or an executor
    object, :mod:`delusive.experiments.executors`); return all finished records. Crafting models and
    artifacts run once each before the cells that need them; cells failed on a cluster are named in the
    error, and rerunning runs only what is missing."""
    from delusive.experiments.executors import build_graph, make_executor

    ex = make_executor(executor, ray_address) if isinstance(executor, str) else executor
    store = RunStore(out)
    atomic_write_json(store.root / "spec.json", json.loads(stable_json(spec)))
    cells = expand(spec)
    ids = [c.cell_id for c in cells]
    atomic_write_json(store.root / "cells.json", ids)
    todo = [c for c in cells if not store.is_done(c.cell_id)]
    _log(f"sweep {spec.name}: {len(cells)} cells, {len(cells) - len(todo)} already finished, {len(todo)} to run"
         + ("" if ex.name == "local" else f" (executor {ex.name})"))
    failed = ex.run(build_graph(todo[:max_cells] if max_cells is not None else todo), spec, store)
    atomic_write_json(store.root / "cells.json", ids)
    if failed:
        raise SweepError(f"{len(failed)} of {len(todo)} cell(s) failed ({', '.join(failed)}); the finished cells "
                         f"are stored in {store.root}: rerun the same command to run only what is missing")
    return [r for r in store.records() if r["cell_id"] in set(ids)]


class SweepError(RuntimeError):
    """Some cells of a sweep failed on the executor; the rest are stored and a rerun resumes."""


def ensure_crafting_model(cell: Cell, spec: Spec, store: RunStore) -> dict[str, Any] | None:
    """Train (or find cached) the crafting model of ``cell``'s poison, exactly as :func:`ensure_poison` will
    ask for it, so an executor can make it once as its own task; None for attacks without one."""
    pc = cell.poison_config
    if cell.attack == "clean" or pc.get("crafting") is None:
        return None
    subset = {"size": spec.train_subset, "seed": cell.seed} if spec.train_subset else None
    clean = clean_training_set(cell.dataset, spec.data_root, subset)
    cfg = TrainConfig(**{**pc["crafting"]["train"], "milestones": tuple(pc["crafting"]["train"]["milestones"])})
    _, info = get_crafting_model(clean, pc["crafting"]["arch"], cfg, store.cache_dir,
                                 val_size=int(pc["crafting"].get("val_size", 0)), device=spec.device,
                                 deterministic=spec.deterministic)
    return info
