"""Is this training set poisoned? ``delusive inspect``: a detector that needs no clean copy of the data.

Signals (docs/inspect.md says what each measures and what it cannot see):

* ``shortcut`` (:mod:`delusive.inspect.probes`): how much of a linear probe's accuracy on the suspect data
  survives when the probe may not use features smaller than a budget ε — delusive poisons are exactly such
  small, label-correlated features (Tao et al. 2021, Sec. 3: adversarial training within ε defeats them);
* ``noise_floor`` (:mod:`delusive.inspect.signals`): the per-image fine-scale noise level (Donoho's MAD
  estimate on Haar detail coefficients), which additive ℓ∞ poisons raise far above natural images';
* ``reference_shift``: the shortcut contrast against a clean reference (``--reference`` or a shipped one);
* ``level_spike`` (:mod:`delusive.inspect.signals`): pixels piled on one grey level within ε of black or
  white — what clipping a ±ε perturbation does to saturated pixels, learnable (P1–P4) or not (L2C).

This package sits above ``evaluation`` in the layers; attacks and defenses never import it.
"""

from delusive.inspect.detector import InspectConfig, InspectResult, inspect_dataset
from delusive.inspect.references import SHIPPED_REFERENCES, shipped_reference
from delusive.inspect.report import write_report

__all__ = ["InspectConfig", "InspectResult", "SHIPPED_REFERENCES", "inspect_dataset", "shipped_reference",
           "write_report"]
