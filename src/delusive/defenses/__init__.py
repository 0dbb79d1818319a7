"""Training: one loop with pluggable objectives (standard, pgd_at, the AT variants, UEraser, mixup, cutmix,
cutout) and training-set transforms applied once before training (jpeg, grayscale, bit_depth, ortho_proj).

One module per defense; importing this package imports each, which registers it in ``OBJECTIVES`` or
``TRANSFORMS``; :mod:`delusive.defenses.compose` combines them (``jpeg+pgd_at``)."""

from delusive.defenses import bit_depth, cutmix, cutout, grayscale, jpeg, mixup, ortho_proj, ueraser  # noqa: F401
from delusive.defenses.compose import (
    apply_transforms,
    check_transforms,
    create_defense,
    defense_names,
    is_defense_name,
    split_defense,
    with_objective,
)
from delusive.defenses.config import SCHEDULES, TrainConfig
from delusive.defenses.fast_at import CatastrophicOverfittingWarning, FastAT
from delusive.defenses.fat import FAT, fat_tau
from delusive.defenses.free_at import FreeAT
from delusive.defenses.gairat import GAIRAT, gair_weights
from delusive.defenses.loop import CHECKPOINT, FitResult, fit, run_identity
from delusive.defenses.objective import (
    OBJECTIVES,
    Objective,
    StepOutput,
    create_objective,
    objective_names,
)
from delusive.defenses.pgd_at import PGDAT
from delusive.defenses.random_noise import RandomNoise
from delusive.defenses.recipe import DEFAULT_EPS_RAMP, DEFAULT_LR_WARMUP, CollapseWarning, resolve_recipe
from delusive.defenses.standard import Standard
from delusive.defenses.trades import TRADES
from delusive.defenses.transform import TRANSFORMS, TrainingTransform, create_transform, transform_names

__all__ = [
    "CHECKPOINT",
    "DEFAULT_EPS_RAMP",
    "DEFAULT_LR_WARMUP",
    "FAT",
    "GAIRAT",
    "OBJECTIVES",
    "PGDAT",
    "SCHEDULES",
    "TRADES",
    "TRANSFORMS",
    "CatastrophicOverfittingWarning",
    "CollapseWarning",
    "FastAT",
    "FitResult",
    "FreeAT",
    "Objective",
    "RandomNoise",
    "Standard",
    "StepOutput",
    "TrainConfig",
    "TrainingTransform",
    "apply_transforms",
    "check_transforms",
    "create_defense",
    "create_transform",
    "defense_names",
    "create_objective",
    "fat_tau",
    "fit",
    "gair_weights",
    "is_defense_name",
    "objective_names",
    "resolve_recipe",
    "run_identity",
    "split_defense",
    "transform_names",
    "with_objective",
]
