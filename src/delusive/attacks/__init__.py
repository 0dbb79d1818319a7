"""Delusive attacks (Section 4 of the paper): P1-P5, L2C and ``clean``; the field's poisons EM, EM-class, REM, TAP,
SEP, AR, LSP, OPS and CUDA (docs/attacks.md); and the verified poison artifact."""

from delusive.attacks import ar as _ar  # noqa: F401  (registers AR)
from delusive.attacks import conv_unlearnable as _conv_unlearnable  # noqa: F401  (registers CUDA)
from delusive.attacks import em as _em  # noqa: F401  (registers EM, EM-class)
from delusive.attacks import l2c as _l2c  # noqa: F401  (registers L2C)
from delusive.attacks import lsp as _lsp  # noqa: F401  (registers LSP)
from delusive.attacks import ops as _ops  # noqa: F401  (registers OPS)
from delusive.attacks import per_sample as _per_sample  # noqa: F401  (registers P1, P2)
from delusive.attacks import rem as _rem  # noqa: F401  (registers REM)
from delusive.attacks import sep as _sep  # noqa: F401  (registers SEP)
from delusive.attacks import simple as _simple  # noqa: F401  (registers clean, P5)
from delusive.attacks import tap as _tap  # noqa: F401  (registers TAP)
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
