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

__all__ = [
    "CHECKPOINT",
    "OBJECTIVES",
    "PGDAT",
    "SCHEDULES",
    "FitResult",
    "Objective",
    "Standard",
    "StepOutput",
    "TrainConfig",
    "create_objective",
    "fit",
    "objective_names",
    "run_identity",
]
