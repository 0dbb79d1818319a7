"""Training: one loop with pluggable objectives (standard, pgd_at, and the AT variants)."""

from delusive.defenses.config import SCHEDULES, TrainConfig
from delusive.defenses.loop import CHECKPOINT, FitResult, fit, run_identity
from delusive.defenses.objective import (
    OBJECTIVES,
    PGDAT,
    Objective,
    Standard,
    StepOutput,
    create_objective,
    objective_names,
)
from delusive.defenses.variants import (
    FAT,
    GAIRAT,
    TRADES,
    CatastrophicOverfittingWarning,
    FastAT,
    FreeAT,
    RandomNoise,
    fat_tau,
    gair_weights,
)

__all__ = [
    "CHECKPOINT",
    "FAT",
    "GAIRAT",
    "OBJECTIVES",
    "PGDAT",
    "SCHEDULES",
    "TRADES",
    "CatastrophicOverfittingWarning",
    "FastAT",
    "FitResult",
    "FreeAT",
    "Objective",
    "RandomNoise",
    "Standard",
    "StepOutput",
    "TrainConfig",
    "create_objective",
    "fat_tau",
    "fit",
    "gair_weights",
    "objective_names",
    "run_identity",
]
