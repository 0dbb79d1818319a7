"""Delusive attacks (Section 4 of the paper): P1-P5 and ``clean``, and the verified poison artifact."""

from delusive.attacks import l2c as _l2c  # noqa: F401  (registers L2C)
from delusive.attacks import per_sample as _per_sample  # noqa: F401  (registers P1, P2)
from delusive.attacks import simple as _simple  # noqa: F401  (registers clean, P5)
from delusive.attacks import universal as _universal  # noqa: F401  (registers P3, P4)
from delusive.attacks.artifact import (
    STORAGES,
    BudgetError,
    PoisonArtifact,
    VerifyReport,
    build_artifact,
    check_budget,
    load_artifact,
    quantise_toward_clean,
    save_artifact,
    verify_artifact,
)
from delusive.attacks.base import ATTACKS, Attack, CraftResult, attack_names, create_attack, target_map
from delusive.attacks.interop import export_png, import_poison, read_png_folder
from delusive.attacks.look import show_artifact

__all__ = [
    "ATTACKS",
    "STORAGES",
    "Attack",
    "BudgetError",
    "CraftResult",
    "PoisonArtifact",
    "VerifyReport",
    "attack_names",
    "build_artifact",
    "check_budget",
    "create_attack",
    "export_png",
    "import_poison",
    "load_artifact",
    "quantise_toward_clean",
    "read_png_folder",
    "save_artifact",
    "show_artifact",
    "target_map",
    "verify_artifact",
]
