"""Shipped clean references: the signals of each catalog dataset's clean training split, measured once with
the default protocol (``InspectConfig()`` at the dataset's default budget) by

    delusive inspect DATASET --out DIR        # the clean split; read signals.*.value from DIR/report.json

and used when the suspect data claims to be that dataset (a dataset name, or an artifact whose manifest names
it) and the probe matches (same norm, ε and sample cap). docs/inspect.md lists them. A reference computed
here is a measurement of one clean set, not a guarantee for every subset of it; --reference overrides it.
"""

from __future__ import annotations

from typing import Any

#: dataset -> the probe it was measured with and the clean values of the signals
SHIPPED_REFERENCES: dict[str, dict[str, Any]] = {}


def shipped_reference(dataset: str | None, norm: str, eps: float, max_samples: int) -> dict[str, Any] | None:
    """The shipped clean reference of ``dataset`` for this probe, or None."""
    if not dataset:
        return None
    ref = SHIPPED_REFERENCES.get(dataset)
    if ref is None or ref["norm"] != norm or abs(ref["eps"] - eps) > 1e-9 or ref["max_samples"] != max_samples:
        return None
    return ref
