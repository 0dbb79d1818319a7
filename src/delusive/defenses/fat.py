"""``fat``: friendly adversarial training (Zhang et al. 2020, "Attacks which do not kill training make
adversarial learning stronger"), one of the AT variants of the paper's Table 2, on the one PGD engine's early
stopping. The original's τ curriculum over 120 epochs is expressed as fractions of training, so a short CPU
run gets the same shape."""

from __future__ import annotations

from delusive.defenses.checks import ORIGINAL_REL_STEP, _ce, _check, _check_pgd, _is_int, _is_number
from delusive.defenses.objective import OBJECTIVES, Objective, StepOutput
from delusive.perturb import pgd
from delusive.runtime import eval_mode
from delusive.threat import ThreatModel

#: FAT's dynamic τ (original FAT.py, 120 epochs): τ = 0 for epochs 1-50, 1 for 51-90, 2 for 91-120, i.e.
#: τ = 0 while epoch/epochs < 50/120, 1 while < 90/120, 2 after (0-based epoch, exact at 120 epochs).
FAT_TAU_MILESTONES = (50 / 120, 90 / 120)


def fat_tau(epoch: int, epochs: int, tau: int | str = "dynamic") -> int:
    """τ of FAT for 0-based ``epoch`` of ``epochs``: ``tau`` itself when an integer, else the original's
    dynamic schedule scaled to fractions of training (:data:`FAT_TAU_MILESTONES`)."""
    if tau != "dynamic":
        return int(tau)
    progress = epoch / max(epochs, 1)
    return sum(progress >= m for m in FAT_TAU_MILESTONES)


@OBJECTIVES.register("fat")
class FAT(Objective):
    """Friendly adversarial training (Zhang et al. 2020): CE on "friendly" adversarial examples from
    early-stopped PGD-K-τ.

    Each example runs at most K = ``steps`` PGD steps of ``rel_step_size``·ε (uniform random start in the
    ball when ``random_start``, plus ``omega``·N(0, I) noise on every step) and stops once it has been
    misclassified with no budget left: τ extra steps are allowed after the first misclassification. ``tau``
    is an integer or ``"dynamic"``: the original schedule 0 → 1 → 2 at 50/120 and 90/120 of training.
    Defaults are the original FAT.py's: K = 10, step 0.007 at ε = 0.031, dynamic τ, ω = 0.001, uniform random
    start. With τ ≥ K nothing stops early, and with ω = 0 FAT is PGD-AT with the same steps and start.
    """

    name = "fat"
    at_recipe = True

    def __init__(self, threat: ThreatModel | None, steps: int = 10, rel_step_size: float = ORIGINAL_REL_STEP,
                 tau: int | str = "dynamic", omega: float = 0.001, random_start: bool = True) -> None:
        super().__init__(threat)
        _check_pgd(self.name, steps, rel_step_size)
        _check(self.name, tau == "dynamic" or (_is_int(tau) and tau >= 0), "tau", "an integer >= 0 or 'dynamic'",
               tau)
        _check(self.name, _is_number(omega) and omega >= 0, "omega", "a finite number >= 0", omega)
        self.steps, self.rel_step_size, self.tau = int(steps), float(rel_step_size), tau
        self.omega, self.random_start = float(omega), bool(random_start)

    def current_tau(self) -> int:
        return fat_tau(self.epoch, self.epochs, self.tau)

    def loss(self, model, x, y, idx, generator):  # type: ignore[no-untyped-def]
        assert self.threat is not None
        with eval_mode(model):
            res = pgd(model, x, y, self.current_threat(), steps=self.steps, rel_step_size=self.rel_step_size,
                      random_start=self.random_start, early_stop_tau=self.current_tau(), step_noise=self.omega,
                      generator=generator, final_eval=False)
        logits = model(res.x_adv)
        return StepOutput(_ce(logits, y), logits, {"tau": float(self.current_tau()),
                                                   "mean_steps": res.steps_taken.float().mean()})
