"""``standard``: standard training (the paper's ST), minimising the natural risk (Eq. 1)."""

from __future__ import annotations

from delusive.defenses.checks import _ce
from delusive.defenses.objective import OBJECTIVES, Objective, StepOutput
from delusive.threat import ThreatModel


@OBJECTIVES.register("standard")
class Standard(Objective):
    """Standard training (ST): cross-entropy on the training inputs as given."""

    name = "standard"
    needs_threat = False

    def __init__(self, threat: ThreatModel | None = None) -> None:
        super().__init__(threat)

    def loss(self, model, x, y, idx, generator):  # type: ignore[no-untyped-def]
        logits = model(x)
        return StepOutput(_ce(logits, y), logits)
