"""``gairat``: geometry-aware instance-reweighted AT (Zhang et al. 2021), one of the AT variants of the
paper's Table 2. The original's warm-up (epoch 60 of 120) is expressed as a fraction of training."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from delusive.defenses.checks import ORIGINAL_REL_STEP, _ce, _check, _check_pgd, _is_number
from delusive.defenses.objective import OBJECTIVES, Objective, StepOutput
from delusive.perturb import pgd
from delusive.runtime import eval_mode
from delusive.threat import ThreatModel

GAIR_WEIGHT_FNS = ("tanh", "sigmoid", "discrete", "constant")


def gair_weights(kappa: torch.Tensor, steps: int, lam: float = -1.0, fn: str = "tanh") -> torch.Tensor:
    """GAIRAT's per-example weights from geometry values κ ∈ {0..K}, normalised to sum to the batch size.

    ``tanh``: (1 + tanh(λ + 5·(1 − 2κ/K)))/2; ``sigmoid``: σ(λ + 5·(1 − 2κ/K)); ``discrete``:
    (K + 1 − κ)/(K + 1) — the original's three, each decreasing in κ: examples that stay correctly classified
    for fewer PGD steps (closer to the decision boundary) get more weight. ``constant``: all ones (what the
    original's λ_max = +∞ gives before its λ schedule starts; GAIRAT is then PGD-AT). The original centres
    at ⌊K/2⌋; this uses K/2, the same for the default even K (and defined for K = 1).
    """
    if fn not in GAIR_WEIGHT_FNS:
        raise ValueError(f"weight_fn: expected one of {', '.join(GAIR_WEIGHT_FNS)}, got {fn!r}")
    k = kappa.float()
    if fn == "constant":
        w = torch.ones_like(k)
    elif fn == "discrete":
        w = (steps + 1 - k) / (steps + 1)
    else:
        z = lam + 5.0 * (1.0 - 2.0 * k / steps)
        w = (torch.tanh(z) + 1) / 2 if fn == "tanh" else torch.sigmoid(z)
    return w * (w.numel() / w.sum())


@OBJECTIVES.register("gairat")
class GAIRAT(Objective):
    """Geometry-aware instance-reweighted AT (Zhang et al. 2021): PGD-AT whose per-example CE is weighted
    by how close the example sits to the decision boundary.

    PGD as in PGD-AT (K = ``steps`` steps of ``rel_step_size``·ε, uniform random start). The geometry value
    κ_i is the number of iterates 0..K−1 at which example i is still classified correctly (the engine's
    ``num_correct``, counted as in the original GA-PGD). Until ``begin_fraction`` of training the loss is
    the plain mean CE; from then on it is mean(w_i·CE_i) with w = :func:`gair_weights` (sum = batch size).
    Defaults are the original GAIRAT.py's: K = 10, step 0.007 at ε = 0.031, λ = −1, tanh, λ schedule
    "fixed", reweighting from epoch 60 of 120 (1-based), i.e. from the epoch e (0-based) with
    (e + 1)/epochs ≥ 0.5. ``weight_fn="constant"`` makes GAIRAT PGD-AT (same steps and start).
    """

    name = "gairat"
    at_recipe = True

    def __init__(self, threat: ThreatModel | None, steps: int = 10, rel_step_size: float = ORIGINAL_REL_STEP,
                 random_start: bool = True, lam: float = -1.0, weight_fn: str = "tanh",
                 begin_fraction: float = 0.5) -> None:
        super().__init__(threat)
        _check_pgd(self.name, steps, rel_step_size)
        _check(self.name, _is_number(lam), "lam", "a finite number", lam)
        _check(self.name, weight_fn in GAIR_WEIGHT_FNS, "weight_fn", f"one of {', '.join(GAIR_WEIGHT_FNS)}",
               weight_fn)
        _check(self.name, _is_number(begin_fraction) and 0 <= begin_fraction <= 1, "begin_fraction",
               "a fraction in [0, 1]", begin_fraction)
        self.steps, self.rel_step_size, self.random_start = int(steps), float(rel_step_size), bool(random_start)
        self.lam, self.weight_fn, self.begin_fraction = float(lam), weight_fn, float(begin_fraction)

    def reweighting(self) -> bool:
        """Whether the current epoch reweights (after the warm-up)."""
        return (self.epoch + 1) >= self.begin_fraction * self.epochs

    def loss(self, model, x, y, idx, generator):  # type: ignore[no-untyped-def]
        assert self.threat is not None
        with eval_mode(model):
            res = pgd(model, x, y, self.current_threat(), steps=self.steps, rel_step_size=self.rel_step_size,
                      random_start=self.random_start, generator=generator, final_eval=False)
        logits = model(res.x_adv)
        stats: dict[str, float | torch.Tensor] = {"mean_kappa": res.num_correct.float().mean()}
        if not self.reweighting():
            return StepOutput(_ce(logits, y), logits, stats)
        w = gair_weights(res.num_correct, self.steps, self.lam, self.weight_fn)
        per_sample = F.cross_entropy(logits.float(), y, reduction="none")
        return StepOutput((per_sample * w).mean(), logits, {**stats, "max_weight": w.max().detach()})
