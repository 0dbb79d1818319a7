"""Crafting throughput of every attack (images/s) on the default CNN, and the CPU P3/P4 schedule against the
reference's 500-iteration × 256-image schedule: time ratio and effect, measured in the same run.

Effect = how strongly the perturbed images steer the crafting model: for P1/P3 the fraction classified as
the target t(y), for P2/P4 the fraction classified correctly (the "hypocritical" direction).

Usage: python benchmarks/craft.py [--n 2000] [--eps 0.1] [--norm linf]
"""

from __future__ import annotations

import argparse
import time

import torch

from delusive.attacks import create_attack, target_map, universal
from delusive.attacks.defaults import REFERENCE, default_attack_params
from delusive.data import load_dataset
from delusive.defenses import Standard, TrainConfig, fit
from delusive.evaluation import predict
from delusive.experiments.poisoning import seeded_subset
from delusive.models import create_model
from delusive.threat import make_threat


def effect(model, x_poison, y, attack: str, k: int) -> float:
    pred = predict(model, torch.from_numpy(x_poison))
    if attack in ("P1", "P3"):
        return float((pred == target_map(y, k)).float().mean())
    return float((pred == y).float().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="images to poison")
    ap.add_argument("--norm", default="linf")
    ap.add_argument("--eps", default="0.1")
    args = ap.parse_args()
    train = load_dataset("fashion-mnist", "train")
    model = create_model("small-cnn", 10, 1, 28, seed=0)
    fit(model, seeded_subset(train, 20000, 0), Standard(), TrainConfig(epochs=2, seed=0))
    model.eval()
    data = seeded_subset(train, args.n, 1)
    _, y = data.tensors()
    threat = make_threat(args.norm, args.eps)
    print(f"{args.n} Fashion-MNIST images, {threat!r}, crafting model small-cnn (2 epochs on 20k), "
          f"{torch.get_num_threads()} threads")
    print(f"{'attack':<8}{'schedule':<40}{'images/s':>10}{'time s':>9}{'effect':>9}")
    times = {}
    for name in ("P1", "P2", "P3", "P4", "P5"):
        for label, params in (("cpu default", default_attack_params(name, "fashion-mnist")),
                              ("reference", dict(REFERENCE[name]))):
            if name == "P5" and label == "reference":
                continue
            atk = create_attack(name, **params)
            universal._MEMO.clear()  # P4 would otherwise reuse P3's class perturbations and cost nothing
            t0 = time.perf_counter()
            res = atk.craft(data, threat, model, seed=0)
            dt = time.perf_counter() - t0
            times[(name, label)] = dt
            eff = effect(model, res.x, y, name, 10) if name != "P5" else float("nan")
            sched = ", ".join(f"{k}={v}" for k, v in params.items()) or "-"
            print(f"{name:<8}{label + ': ' + sched:<40}{args.n / dt:>10.0f}{dt:>9.1f}{eff:>9.3f}")
    for name in ("P3", "P4"):
        print(f"{name}: cpu-default time / reference time = "
              f"{times[(name, 'cpu default')] / times[(name, 'reference')]:.3f}")


if __name__ == "__main__":
    main()
