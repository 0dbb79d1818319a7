"""What makes P2, P4 and P5 weak on Fashion-MNIST? One table of the levers we tried (docs/results.md §2).

Every row crafts one attack on a seeded 10,000-image Fashion-MNIST training subset (ℓ∞ by default), trains a
fresh victim with standard training for 4 epochs (the demo's protocol, seed 1 so the victim never shares
its initialisation with the crafting model, seed 0) and prints the victim's clean test accuracy. The levers:
the crafting model's training (untrained / 1 epoch / the default 3 epochs), a longer crafting schedule, the
victim's architecture (the default small CNN, the same with BatchNorm, a one-hidden-layer MLP), longer
victim training, and a larger budget. Images stay float32 here (no uint8 storage), so numbers can differ
from the artifact pipeline by a few tenths of a point.

Usage: python scripts/probe_attack_strength.py [--rows all|quick] [--only TEXT] [--subset 10000]
Takes about 7 minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from delusive.attacks import create_attack
from delusive.attacks.defaults import default_attack_params
from delusive.data import ArrayDataset, load_dataset
from delusive.defenses import Standard, TrainConfig, fit
from delusive.evaluation import natural_accuracy
from delusive.experiments.poisoning import seeded_subset
from delusive.models import create_model
from delusive.threat import make_threat

# (label, attack, crafting-model epochs, attack params, victim, victim epochs, eps)
ROWS: list[tuple[str, str, int, dict[str, Any], str, int, float]] = [
    ("clean", "clean", 3, {}, "small-cnn", 4, 0.2),
    ("P2 (defaults)", "P2", 3, {}, "small-cnn", 4, 0.2),
    ("P2, crafting model 1 epoch", "P2", 1, {}, "small-cnn", 4, 0.2),
    ("P2, 40 steps", "P2", 3, {"steps": 40}, "small-cnn", 4, 0.2),
    ("P4 (defaults)", "P4", 3, {}, "small-cnn", 4, 0.2),
    ("P4, untrained crafting model", "P4", 0, {}, "small-cnn", 4, 0.2),
    ("P4, 500 iterations (reference)", "P4", 3, {"iterations": 500}, "small-cnn", 4, 0.2),
    ("P5 (defaults)", "P5", 0, {}, "small-cnn", 4, 0.2),
    ("P5, victim 15 epochs", "P5", 0, {}, "small-cnn", 15, 0.2),
    ("P5, victim CNN+BatchNorm", "P5", 0, {}, "bn-cnn", 4, 0.2),
    ("clean, victim CNN+BatchNorm", "clean", 0, {}, "bn-cnn", 4, 0.2),
    ("P5, victim MLP", "P5", 0, {}, "mlp", 4, 0.2),
    ("clean, victim MLP", "clean", 0, {}, "mlp", 4, 0.2),
    ("P5, eps 0.3", "P5", 0, {}, "small-cnn", 4, 0.3),
    ("P4, eps 0.3", "P4", 3, {}, "small-cnn", 4, 0.3),
]
QUICK = {"clean", "P2 (defaults)", "P4 (defaults)", "P5 (defaults)"}


def victim(kind: str, k: int) -> nn.Module:
    torch.manual_seed(1)
    if kind == "bn-cnn":
        return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(32 * 49, 128), nn.ReLU(), nn.Linear(128, k))
    if kind == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, k))
    return create_model(kind, k, 1, 28, seed=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", choices=("all", "quick"), default="all")
    ap.add_argument("--subset", type=int, default=10000)
    ap.add_argument("--only", default=None, help="run only the rows whose label contains this text")
    args = ap.parse_args()
    train = seeded_subset(load_dataset("fashion-mnist", "train"), args.subset, 0)
    test = load_dataset("fashion-mnist", "test")
    crafters: dict[int, nn.Module] = {}
    print("| setting | victim clean test acc. (%) | craft time (s) |\n|---|---|---|", flush=True)
    for label, attack, c_epochs, params, kind, v_epochs, eps in ROWS:
        if (args.rows == "quick" and label not in QUICK) or (args.only and args.only not in label):
            continue
        atk = create_attack(attack, **{**default_attack_params(attack, "fashion-mnist"), **params})
        model = None
        if atk.needs_model:
            if c_epochs not in crafters:
                m = create_model("small-cnn", train.num_classes, 1, 28, seed=0)
                if c_epochs:
                    fit(m, train, Standard(), TrainConfig(epochs=c_epochs, seed=0), desc="crafting model")
                crafters[c_epochs] = m.eval()
            model = crafters[c_epochs]
        t0 = time.perf_counter()
        x = atk.craft(train, make_threat("linf", eps), model, seed=0).x
        craft_s = time.perf_counter() - t0
        poisoned = ArrayDataset(np.asarray(x, dtype=np.float32), train.y, train.num_classes)
        net = victim(kind, train.num_classes)
        fit(net, poisoned, Standard(), TrainConfig(epochs=v_epochs, seed=1), desc=label)
        acc = 100 * natural_accuracy(net, test)
        print(f"| {label} (ℓ∞ {eps}) | {acc:.2f} | {craft_s:.0f} |", flush=True)


if __name__ == "__main__":
    main()
