"""Adversarial-training variants and the random-noise baseline of the paper's Table 2, as objectives of the
one training loop: ``trades``, ``fat``, ``gairat``, ``random_noise``, ``fast_at`` and ``free_at``.

Every inner maximisation runs on the one PGD engine (:func:`delusive.perturb.pgd`) with the model in eval
mode; every objective works for any threat model it is given (ℓ∞ and ℓ2). The keyword defaults are the
original papers' CIFAR-10 settings, with absolute step sizes turned into fractions of ε (the originals use
ε = 0.031 and a step of 0.007, so ``rel_step_size`` = 0.007 / 0.031 ≈ 0.2258); epoch-indexed curricula of
the originals (FAT's τ, GAIRAT's warm-up) are expressed as fractions of training so a short CPU run gets
the same shape as the original 120 epochs. ``docs/defenses.md`` lists each default with its source and
every place where this implementation differs from the original code.

``free_at`` (Shafahi et al. 2019) uses the loop's minibatch replay (:attr:`Objective.replays`) and
checkpointed objective state (the perturbation it carries across minibatches).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from delusive.defenses.objective import OBJECTIVES, Objective, StepOutput
from delusive.perturb import pgd
from delusive.runtime import eval_mode
from delusive.threat import ThreatModel

#: Step size of the TRADES, FAT and GAIRAT CIFAR-10 scripts (0.007 at ε = 0.031), as a fraction of ε.
ORIGINAL_REL_STEP = 0.007 / 0.031


def _check(name: str, ok: bool, option: str, allowed: str, value: Any) -> None:
    if not ok:
        raise ValueError(f"defense {name!r}: {option} must be {allowed}, got {value!r}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _check_pgd(name: str, steps: Any, rel_step_size: Any, min_steps: int = 0) -> None:
    _check(name, _is_int(steps) and steps >= min_steps, "steps", f"an integer >= {min_steps}", steps)
    _check(name, _is_number(rel_step_size) and rel_step_size > 0, "rel_step_size", "a finite number > 0",
           rel_step_size)


def _ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), y)


# --------------------------------------------------------------------------------------------------------
# TRADES
# --------------------------------------------------------------------------------------------------------


def _kl_to(clean_probs: torch.Tensor):  # type: ignore[no-untyped-def]
    """Per-sample KL(p_clean ‖ p(x')) as a PGD loss (labels are ignored)."""

    def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.kl_div(F.log_softmax(logits.float(), dim=1), clean_probs, reduction="none").sum(1)

    return loss


@OBJECTIVES.register("trades")
class TRADES(Objective):
    """TRADES (Zhang et al. 2019): ``CE(f(x), y) + β·KL(f(x) ‖ f(x'))`` with x' maximising that KL.

    Inner maximisation: ``steps`` PGD steps of ``rel_step_size``·ε on the per-sample KL divergence between
    the clean prediction and the prediction at x', from x + ``init_std``·N(0, I); the attack (clean
    reference included) runs in eval mode. Outer loss, in train mode: CE on the clean batch plus β times
    the batch-mean KL between the clean and the adversarial softmax, with gradients through both (as in the
    original ``trades_loss``). Defaults: β = 6, 10 steps of 0.007 at ε = 0.031, init 0.001·N(0, I) — the
    original's CIFAR-10 script. β = 0 is standard training's loss. The logits returned are the clean ones.
    """

    name = "trades"

    def __init__(self, threat: ThreatModel | None, beta: float = 6.0, steps: int = 10,
                 rel_step_size: float = ORIGINAL_REL_STEP, init_std: float = 0.001) -> None:
        super().__init__(threat)
        _check_pgd(self.name, steps, rel_step_size)
        _check(self.name, _is_number(beta) and beta >= 0, "beta", "a finite number >= 0", beta)
        _check(self.name, _is_number(init_std) and init_std >= 0, "init_std", "a finite number >= 0", init_std)
        self.beta, self.steps, self.rel_step_size = float(beta), int(steps), float(rel_step_size)
        self.init_std = float(init_std)

    def adversarial(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                    generator: torch.Generator) -> torch.Tensor:
        assert self.threat is not None
        with eval_mode(model):
            with torch.no_grad():
                clean_probs = F.softmax(model(x).float(), dim=1)
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
            res = pgd(model, x, y, self.threat, steps=self.steps, rel_step_size=self.rel_step_size,
                      loss=_kl_to(clean_probs), x_init=x + self.init_std * noise, generator=generator)
        return res.x_adv

    def loss(self, model, x, y, idx, generator):  # type: ignore[no-untyped-def]
        x_adv = self.adversarial(model, x, y, generator)
        logits = model(x)
        logits_adv = model(x_adv)
        natural = _ce(logits, y)
        robust = F.kl_div(F.log_softmax(logits_adv.float(), dim=1), F.softmax(logits.float(), dim=1),
                          reduction="batchmean")
        return StepOutput(natural + self.beta * robust, logits,
                          {"natural_loss": natural.item(), "robust_kl": robust.item()})


# --------------------------------------------------------------------------------------------------------
# FAT
# --------------------------------------------------------------------------------------------------------

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
            res = pgd(model, x, y, self.threat, steps=self.steps, rel_step_size=self.rel_step_size,
                      random_start=self.random_start, early_stop_tau=self.current_tau(), step_noise=self.omega,
                      generator=generator)
        logits = model(res.x_adv)
        return StepOutput(_ce(logits, y), logits, {"tau": float(self.current_tau()),
                                                   "mean_steps": res.steps_taken.float().mean().item()})


# --------------------------------------------------------------------------------------------------------
# GAIRAT
# --------------------------------------------------------------------------------------------------------

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

    def __init__(self, threat: ThreatModel | None, steps: int = 10, rel_step_size: float = ORIGINAL_REL_STEP,
                 random_start: bool = True, lam: float = -1.0, weight_fn: str = "tanh",
                 begin_fraction: float = 0.5) -> None:
        super().__init__(threat)
        _check_pgd(self.name, steps, rel_step_size, min_steps=1)
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
            res = pgd(model, x, y, self.threat, steps=self.steps, rel_step_size=self.rel_step_size,
                      random_start=self.random_start, generator=generator)
        logits = model(res.x_adv)
        stats = {"mean_kappa": res.num_correct.float().mean().item()}
        if not self.reweighting():
            return StepOutput(_ce(logits, y), logits, stats)
        w = gair_weights(res.num_correct, self.steps, self.lam, self.weight_fn)
        per_sample = F.cross_entropy(logits.float(), y, reduction="none")
        return StepOutput((per_sample * w).mean(), logits, {**stats, "max_weight": w.max().item()})


# --------------------------------------------------------------------------------------------------------
# Random noise
# --------------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------------
# Fast AT (FGSM with random start)
# --------------------------------------------------------------------------------------------------------


class CatastrophicOverfittingWarning(UserWarning):
    """Fast AT's PGD accuracy on a training minibatch fell sharply: single-step AT has likely overfit."""


@OBJECTIVES.register("fast_at")
class FastAT(Objective):
    """"Fast is better than free" (Wong et al. 2020): CE on one FGSM step from a random start.

    x' = Π(x₀ + α·dir(∇ CE)), x₀ uniform in the ball (``random_start``; False is the zero start of plain
    FGSM, which Wong et al. show overfits catastrophically), α = ``rel_step_size``·ε = 1.25ε, Π the
    projection onto the ball and [0, 1]. These are the original's safeguards kept in the objective.

    ``overfit_check`` is the original's ``--early-stop`` as a monitor: at the first batch of every epoch
    after the first it measures PGD-5 accuracy (step ε/4, random start, an example stops once misclassified:
    the original's check with 2/255 at 8/255) on that batch in eval mode with its own generator (training
    is unchanged) and, when it fell by more than 0.2 since the previous check, warns
    (:class:`CatastrophicOverfittingWarning`) and records the epoch in ``overfit_epoch``. The loop cannot
    stop or roll back from an objective, so stopping early and keeping the previous epoch's weights (as the
    original does) is left to the user. The monitor's state is checkpointed, so a resumed run warns as an
    uninterrupted one would.
    """

    name = "fast_at"

    def __init__(self, threat: ThreatModel | None, rel_step_size: float = 1.25, random_start: bool = True,
                 overfit_check: bool = False) -> None:
        super().__init__(threat)
        _check_pgd(self.name, 1, rel_step_size)  # FGSM: one step
        self.rel_step_size, self.random_start = float(rel_step_size), bool(random_start)
        self.overfit_check = bool(overfit_check)
        self.overfit_epoch: int | None = None
        self._check_pending = False
        self._prev_robust: float | None = None

    def begin_epoch(self, epoch: int, epochs: int) -> None:
        super().begin_epoch(epoch, epochs)
        self._check_pending = self.overfit_check and epoch > 0

    def loss(self, model, x, y, idx, generator):  # type: ignore[no-untyped-def]
        assert self.threat is not None
        stats: dict[str, float] = {}
        if self._check_pending:
            self._check_pending = False
            stats["pgd5_accuracy"] = self._monitor(model, x, y)
        with eval_mode(model):
            res = pgd(model, x, y, self.threat, steps=1, rel_step_size=self.rel_step_size,
                      random_start=self.random_start, generator=generator)
        logits = model(res.x_adv)
        return StepOutput(_ce(logits, y), logits, stats)

    def state_dict(self) -> dict[str, Any]:
        return {"prev_robust": self._prev_robust, "overfit_epoch": self.overfit_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._prev_robust = state.get("prev_robust")
        self.overfit_epoch = state.get("overfit_epoch")

    def _monitor(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
        assert self.threat is not None
        gen = torch.Generator(device=x.device).manual_seed(self.epoch)
        with eval_mode(model):
            res = pgd(model, x, y, self.threat, steps=5, rel_step_size=0.25, random_start=True, early_stop_tau=0,
                      generator=gen)
        acc = 1.0 - res.misclassified.float().mean().item()
        if self._prev_robust is not None and acc - self._prev_robust < -0.2 and self.overfit_epoch is None:
            self.overfit_epoch = self.epoch
            warnings.warn(f"fast_at: PGD-5 accuracy on a training batch fell from {self._prev_robust:.2f} after "
                          f"epoch {self.epoch - 1} to {acc:.2f} after epoch {self.epoch}: catastrophic "
                          f"overfitting (the original stops here and keeps the weights of epoch "
                          f"{self.epoch - 1}); consider fewer epochs or a smaller rel_step_size",
                          CatastrophicOverfittingWarning, stacklevel=3)
        self._prev_robust = acc
        return acc


@OBJECTIVES.register("free_at")
class FreeAT(Objective):
    """"Adversarial training for free!" (Shafahi et al. 2019): every minibatch is replayed ``replays`` (m)
    times; each replay's single backward pass gives both the weight gradient (the loop's optimiser step)
    and the input gradient, which moves a perturbation δ ← Π(δ + α·dir(∇_δ CE)) with α = ``rel_step_size``·ε
    (the original: α = ε, m = 8 on CIFAR-10, m = 4 on ImageNet). δ starts at zero and is carried over to the
    next replay *and the next minibatch* (the original's global noise buffer); the loss is CE on clip(x + δ).

    Differences from the other objectives, both inherent to the method: the input gradient comes from the
    training forward pass, so the "attack" runs in train mode; and one epoch takes m optimiser steps per
    batch. The original divides the epoch count by m to keep the total cost of natural training; here
    ``epochs`` counts passes over the data, so give ``epochs / m`` for the original's budget.
    """

    name = "free_at"

    def __init__(self, threat: ThreatModel | None, replays: int = 8, rel_step_size: float = 1.0) -> None:
        super().__init__(threat)
        _check(self.name, _is_int(replays) and replays >= 1, "replays", "an integer >= 1", replays)
        _check(self.name, _is_number(rel_step_size) and rel_step_size > 0, "rel_step_size", "a finite number > 0",
               rel_step_size)
        self.replays, self.rel_step_size = int(replays), float(rel_step_size)
        self._delta: torch.Tensor | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"delta": None if self._delta is None else self._delta.detach().clone().contiguous()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        d = state.get("delta")
        self._delta = None if d is None else d.clone()

    def _buffer(self, x: torch.Tensor) -> torch.Tensor:
        """The carried δ, sized for this batch (a larger batch gets zeros beyond the carried rows)."""
        buf = self._delta
        if buf is None or buf.shape[1:] != x.shape[1:] or buf.device != x.device:
            buf = torch.zeros_like(x, memory_format=torch.contiguous_format)
        if buf.shape[0] < x.shape[0]:
            buf = torch.cat([buf, buf.new_zeros((x.shape[0] - buf.shape[0], *buf.shape[1:]))])
        self._delta = buf
        return buf

    def loss(self, model, x, y, idx, generator):  # type: ignore[no-untyped-def]
        assert self.threat is not None
        threat, n = self.threat, x.shape[0]
        buf = self._buffer(x)
        delta = buf[:n].detach().clone().requires_grad_(True)
        alpha = self.rel_step_size * threat.eps

        def carry(grad: torch.Tensor) -> None:
            # runs inside the loop's backward pass: the same gradient that updates the weights moves δ
            with torch.no_grad():
                buf[:n] = threat.project_delta(delta.detach() + alpha * threat.direction(grad.float()))

        delta.register_hook(carry)
        logits = model(torch.clamp(x + delta, 0.0, 1.0))
        return StepOutput(_ce(logits, y), logits)
