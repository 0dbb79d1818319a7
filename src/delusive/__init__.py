"""delusive: delusive (clean-label availability) poisoning attacks and the adversarial-training defense.

Implements and extends Tao et al., "Better Safe Than Sorry: Preventing Delusive Adversaries with
Adversarial Training" (NeurIPS 2021). The public Python API is the names in ``__all__`` (docs/api.md shows
each in a runnable example); everything else is private by convention and may change. The names are imported
on first use, so ``import delusive`` (and the command line's start-up) stays fast.

    >>> import delusive
    >>> x_adv = delusive.PGD(model, eps=8/255)(images, labels)            # doctest: +SKIP
    >>> poisoned = delusive.craft("P1", (images, labels), model=model)    # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name → module that defines it (imported on first access)
_EXPORTS: dict[str, str] = {
    "craft": "delusive.api.crafting",
    "PGD": "delusive.api.attacks",
    "APGD": "delusive.api.attacks",
    "AutoAttack": "delusive.api.attacks",
    "AdversarialLoss": "delusive.api.training",
    "fit": "delusive.api.training",
    "evaluate": "delusive.api.evaluation",
    "Evaluation": "delusive.api.evaluation",
    "as_dataset": "delusive.api.data",
    "ArrayDataset": "delusive.data",
    "load_dataset": "delusive.data",
    "create_model": "delusive.models",
    "load_model": "delusive.models",
    "save_model": "delusive.models",
    "make_threat": "delusive.threat",
    "load_artifact": "delusive.attacks",
    "verify_artifact": "delusive.attacks",
    "TrainConfig": "delusive.defenses",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'delusive' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
