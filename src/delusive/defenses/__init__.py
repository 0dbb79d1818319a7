"""Training: one loop with pluggable objectives (standard, pgd_at, and the AT variants).

One module per defense; importing this package imports each, which registers it in ``OBJECTIVES``."""

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
    "create_objective",
    "fat_tau",
    "fit",
    "gair_weights",
    "objective_names",
    "resolve_recipe",
    "run_identity",
]
