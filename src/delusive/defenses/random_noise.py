"""``random_noise``: the RandNoise baseline of the paper's Table 2 (training on uniformly random points of the
ε-ball), which shows that the robustness against delusive attacks comes from the worst case, not from noise."""

from __future__ import annotations

from delusive.defenses.checks import _ce
from delusive.defenses.objective import OBJECTIVES, Objective, StepOutput
from delusive.threat import ThreatModel


@OBJECTIVES.register("random_noise")
class RandomNoise(Objective):
    """RandNoise of the paper's Table 2: CE at a random point of the ε-ball, x' = clip(x + δ, 0, 1) with δ
    uniform in the ball (per pixel in [−ε, ε] for ℓ∞; uniform in the ℓ2 ball), drawn afresh for every batch.
    ε = 0 is standard training."""

    name = "random_noise"

    def __init__(self, threat: ThreatModel | None) -> None:
        super().__init__(threat)

    def loss(self, model, x, y, idx, generator):  # type: ignore[no-untyped-def]
        assert self.threat is not None
        logits = model(self.threat.random_init(x, generator))
        return StepOutput(_ce(logits, y), logits)
