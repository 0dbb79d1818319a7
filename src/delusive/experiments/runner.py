"""Run a sweep: for every cell, get (or craft) its poison, train with its defense, evaluate on clean test
data and store a result record. Finished cells are skipped; an interrupted cell resumes from its epoch
checkpoint and an interrupted poison from its crafting checkpoint."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from delusive.attacks import load_artifact, verify_artifact
from delusive.data import ArrayDataset, load_dataset
from delusive.defenses import TrainConfig, create_objective, fit
from delusive.evaluation import natural_accuracy, robust_predictions
from delusive.experiments.crafting import get_crafting_model
from delusive.experiments.poisoning import clean_training_set, make_poison
from delusive.experiments.spec import Cell, Spec, eval_config, expand, train_config
from delusive.experiments.store import RunStore, git_commit
from delusive.models import create_model, save_model
from delusive.threat import make_threat
from delusive.utils import atomic_write_json, stable_json


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def ensure_poison(cell: Cell, spec: Spec, store: RunStore) -> tuple[ArrayDataset, dict[str, Any]]:
    """The training set of a cell: the clean split for ``clean``, else the (cached) verified artifact."""
    pc = cell.poison_config
    subset = {"size": spec.train_subset, "seed": cell.seed} if spec.train_subset else None
    clean = clean_training_set(cell.dataset, spec.data_root, subset)
    if cell.attack == "clean":
        return clean, {"attack": "clean", "payload_sha256": clean.sha256(), "craft_time_s": 0.0}
    d = store.artifact_dir(pc)
    if not (d / "manifest.json").exists():
        threat = make_threat(pc["budget"]["norm"], pc["budget"]["eps"])
        model = info = None
        if pc["crafting"] is not None:
            cfg = TrainConfig(**{**pc["crafting"]["train"], "milestones": tuple(pc["crafting"]["train"]["milestones"])})
            model, info = get_crafting_model(clean, pc["crafting"]["arch"], cfg, store.cache_dir)
        make_poison(cell.attack, cell.dataset, threat, d, data_root=spec.data_root, seed=cell.seed,
                    storage=pc["storage"], attack_params=pc["params"], train_subset=spec.train_subset,
                    model=model, model_info=info)
    art = load_artifact(d)
    report = verify_artifact(d, clean)
    if not report.ok:
        raise ValueError(f"{d}: cached artifact fails verification ({'; '.join(report.problems)}); delete it to "
                         "re-craft")
    timing = d / "timing.json"
    craft_time = float(json.loads(timing.read_text())["craft_time_s"]) if timing.exists() else None
    meta = {"attack": cell.attack, "artifact": str(d.relative_to(store.root)),
            "payload_sha256": art.manifest["payload_sha256"], "norm_stats": art.manifest["norm_stats"],
            "crafting_model": art.manifest["crafting_model"], "craft_time_s": craft_time}
    return art.dataset(cell.dataset, clean.classes), meta


def split_validation(train: ArrayDataset, size: int, seed: int) -> tuple[ArrayDataset, ArrayDataset | None]:
    """Hold out ``size`` seeded training images (un-augmented) for choosing the best epoch: the defender
    has only the possibly poisoned training set, never the clean test set, to select on."""
    if size <= 0 or size >= len(train):
        return train, None
    perm = np.random.default_rng([seed, 7]).permutation(len(train))
    return train.subset(np.sort(perm[size:])), train.subset(np.sort(perm[:size]))


def run_cell(cell: Cell, spec: Spec, store: RunStore, test: ArrayDataset) -> dict[str, Any]:
    t0 = time.perf_counter()
    train, poison_meta = ensure_poison(cell, spec, store)
    d = cell.defense
    objective = create_objective(d.name, d.norm, d.eps, **d.params)
    cfg = train_config(spec, cell.dataset, cell.seed)
    ev = eval_config(spec)
    threat = make_threat(ev["norm"], ev["eps"])
    train, val = split_validation(train, int(ev["val_size"]), cell.seed)
    x_test, y_test = test.tensors()
    n_rob = min(int(ev["robust_subset"]), len(test))

    def per_epoch(model: torch.nn.Module, epoch: int) -> dict[str, float]:
        ok = robust_predictions(model, x_test[:n_rob], y_test[:n_rob], threat, ev["steps"], ev["rel_step_size"],
                                ev["restarts"], seed=cell.seed)
        row = {"test_natural_accuracy": natural_accuracy(model, test),
               "test_robust_accuracy": float(ok.float().mean())}
        if val is not None:
            row["val_natural_accuracy"] = natural_accuracy(model, val)
        return row

    c, h, _ = train.shape
    model = create_model(cell.model, train.num_classes, c, h, seed=cell.seed)
    cdir = store.cell_dir(cell.cell_id)
    atomic_write_json(cdir / "config.json", cell.config)
    result = fit(model, train, objective, cfg, checkpoint_dir=cdir,
                 eval_fn=per_epoch, desc=f"{cell.attack}/{d.label}/s{cell.seed}")
    save_model(model, cdir / "model.pt", {"arch": cell.model, "num_classes": train.num_classes, "in_channels": c,
                                          "image_size": h}, {"dataset": cell.dataset, "cell_id": cell.cell_id})
    hist = result.history
    best = max(hist, key=lambda r: r.get("val_natural_accuracy", r["epoch"]))
    return {
        "cell_id": cell.cell_id, "dataset": cell.dataset, "attack": cell.attack, "defense": d.label,
        "defense_name": d.name, "model": cell.model, "seed": cell.seed, "config": cell.config,
        "order": {"attack": spec.attacks.index(cell.attack), "defense": spec.defenses.index(d),
                  "dataset": spec.datasets.index(cell.dataset), "model": spec.models.index(cell.model)},
        "poison": poison_meta, "eval_threat": threat.describe(),
        "natural_accuracy": hist[-1]["test_natural_accuracy"], "robust_accuracy": hist[-1]["test_robust_accuracy"],
        "best_epoch": best["epoch"], "best_natural_accuracy": best["test_natural_accuracy"],
        "best_robust_accuracy": best["test_robust_accuracy"], "selection": "val_natural_accuracy" if val else "last",
        "val_size": 0 if val is None else len(val), "train_size": len(train),
        # training time excludes the per-epoch test evaluation, so defenses compare on what they cost
        "train_time_s": sum(float(h["epoch_time_s"]) for h in hist),
        "train_eval_time_s": result.wall_time_s, "wall_time_s": time.perf_counter() - t0, "history": hist,
        "versions": _versions(), "git_commit": git_commit(), "robust_subset": n_rob,
    }


def _versions() -> dict[str, str]:
    import platform

    import delusive

    return {"delusive": delusive.__version__, "torch": torch.__version__, "python": platform.python_version()}


def run_sweep(spec: Spec, out: str | Path, max_cells: int | None = None) -> list[dict[str, Any]]:
    """Run every unfinished cell of ``spec`` into ``out``; return all finished records."""
    store = RunStore(out)
    atomic_write_json(store.root / "spec.json", json.loads(stable_json(spec)))
    cells = expand(spec)
    atomic_write_json(store.root / "cells.json", [c.cell_id for c in cells])
    todo = [c for c in cells if not store.is_done(c.cell_id)]
    _log(f"sweep {spec.name}: {len(cells)} cells, {len(cells) - len(todo)} already finished, {len(todo)} to run")
    tests: dict[str, ArrayDataset] = {}
    for i, cell in enumerate(todo[:max_cells] if max_cells is not None else todo, 1):
        if cell.dataset not in tests:
            tests[cell.dataset] = load_dataset(cell.dataset, "test", root=spec.data_root)
        _log(f"[{i}/{len(todo)}] {cell.dataset} {cell.attack} {cell.defense.label} {cell.model} seed {cell.seed}")
        record = run_cell(cell, spec, store, tests[cell.dataset])
        store.write_result(cell.cell_id, record)
        _log(f"    natural {record['natural_accuracy']:.4f} robust {record['robust_accuracy']:.4f} "
             f"({record['wall_time_s']:.0f}s)")
    ids = [c.cell_id for c in cells]
    atomic_write_json(store.root / "cells.json", ids)
    return [r for r in store.records() if r["cell_id"] in set(ids)]
