"""Attack hyperparameters: the reference's values, and the lighter CPU defaults for 28×28 datasets.

The reference (REFERENCE.md) crafts CIFAR-10 on a GPU: P1/P2 100 PGD steps of ε/5 per image, P3/P4 500
iterations of 256 images per class. On a 2-core CPU that costs about an hour for Fashion-MNIST; the CPU
defaults below take a few minutes and reach a comparable effect (measured in benchmarks/craft.py and
docs/attacks.md). Which one a run gets depends on the size of its images, never on the dataset's name
(:func:`auto_schedule`); ``--schedule cpu|reference`` chooses explicitly (``--reference-schedule`` is
``--schedule reference``), and the artifact records the schedule it ran.
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
#: the schedules ``--schedule`` accepts; ``auto`` picks one from the size of the images
SCHEDULES = ("auto", "cpu", "reference")
#: ``auto`` takes the light schedule for images of at most this many values (C·H·W): 28×28 and 32×32 grey
#: images, the 56×28 MNIST-over-Fashion composites. Larger images (3×32×32 CIFAR-10/SVHN, 3×64×32 composites)
#: mean GPU work in practice, so they get the reference schedule. The dataset's name never enters the choice.
CPU_MAX_VALUES = 2048


def auto_schedule(shape: tuple[int, ...] | None) -> str:
    """``cpu`` or ``reference`` for images of ``shape`` (C, H, W); unknown shapes get ``reference``."""
    if not shape or any(int(s) < 1 for s in shape):
        return "reference"
    values = 1
    for s in shape:
        values *= int(s)
    return "cpu" if values <= CPU_MAX_VALUES else "reference"


def dataset_shape(dataset: str) -> tuple[int, int, int] | None:
    """(C, H, W) of ``dataset``'s images from the catalog; a ``folder:`` set is read (its size is in its files)."""
    from delusive.data import dataset_info, load_dataset

    try:
        shape = dataset_info(dataset).shape
        if min(shape) > 0:
            return shape
        return load_dataset(dataset, "train").shape
    except (ValueError, OSError):
        return None


def resolve_schedule(schedule: str, shape: tuple[int, ...] | None) -> str:
    """``schedule`` itself, or for ``auto`` the one :func:`auto_schedule` picks for ``shape``."""
    if schedule not in SCHEDULES:
        raise ValueError(f"--schedule: expected one of {', '.join(SCHEDULES)}, got {schedule!r}")
    return auto_schedule(shape) if schedule == "auto" else schedule


def default_attack_params(attack: str, dataset: str | None = None, reference: bool = False, *,
                          shape: tuple[int, ...] | None = None, schedule: str = "auto") -> dict[str, Any]:
    """The documented defaults of ``attack``: the light CPU schedule or the reference's. ``schedule`` ``auto``
    chooses by the image shape (``shape``, else looked up from ``dataset``; see :func:`auto_schedule`);
    ``reference=True`` is ``schedule="reference"``."""
    if reference:
        schedule = "reference"
    if schedule == "auto" and shape is None and dataset is not None:
        shape = dataset_shape(dataset)
    base = dict(REFERENCE.get(attack, {}))
    if resolve_schedule(schedule, shape) == "cpu":
        base.update(CPU_28PX.get(attack, {}))
    return base


def base_dataset(dataset: str) -> str:
    """The dataset a derived name is built on: ``rot:fashion-mnist`` → ``fashion-mnist``; a composite's class
    pair suffix is dropped (``mnist-fashion:2,4`` → ``mnist-fashion``)."""
    name = dataset.split(":", 1)[1] if dataset.startswith("rot:") else dataset
    return name if name.startswith("folder:") else name.split(":", 1)[0]
