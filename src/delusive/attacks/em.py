"""Error-minimizing noise, EM (Huang, Ma, Erfani, Bailey and Wang, ICLR 2021, "Unlearnable Examples: Making
Personal Data Unexploitable"; official code HanxunH/Unlearnable-Examples).

EM solves the bi-level *min-min* problem  min_θ E[ min_{‖δ‖≤ε} CE(f_θ(x + δ), y) ]  by alternation: a fresh
model f is trained for ``train_steps`` batches on the perturbed data, then every δ takes ``pgd_steps`` PGD
steps that *lower* f's loss (the one PGD engine, minimising toward the true label, starting from the current
δ), and the loop stops once f classifies the perturbed training set with accuracy above ``stop_accuracy``
(or after ``max_rounds`` rounds, recorded in the manifest). The noise makes the data "too easy": a model
trained on it learns the noise and not the images.

- ``EM`` (sample-wise): one δ_i per image, initialised uniformly in the ball (their ``random_noise``).
- ``EM-class`` (class-wise): one δ_k per class; each round the batch runs PGD from x + δ_y and δ_k moves by the
  mean change of the images of class k, then is projected (their ``universal_perturbation``).

The crafting model trains with SGD (lr 0.1, momentum 0.9, weight decay 5e-4) on un-augmented batches; PGD runs
it in eval mode (DESIGN.md, Pitfall 5). Huang et al. augment (crop + flip) while training f; we do not.
Crafting checkpoints the noise *and* the model (weights, BN buffers, momentum) at round boundaries, so a
killed run resumes to the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from delusive import runtime
from delusive.attacks.base import ATTACKS, Attack, CraftResult
from delusive.attacks.resume import CraftCheckpoint
from delusive.attacks.surrogate import Surrogate, accuracy, batch_order, check_classifier, mean_loss
from delusive.perturb import pgd
from delusive.threat import ThreatModel
from delusive.utils import config_hash, progress
from delusive.utils.seeding import derive_seed


def _positive(**values: float) -> None:
    for key, value in values.items():
        if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
            raise ValueError(f"{key}: must be a finite number > 0, got {value!r}")


class MinMinAttack(Attack):
    """The alternation shared by EM and REM: train ``train_steps`` batches, then update every δ, until the
    stopping rule holds. Subclasses say how the model trains and how δ moves."""

    needs_model = False
    sample_wise: bool = True

    def __init__(self, arch: str = "resnet18", train_steps: int = 10, pgd_steps: int = 20, rel_step_size: float = 0.1,
                 batch_size: int = 512, lr: float = 0.1, stop_accuracy: float = 0.99, max_rounds: int = 1000) -> None:
        self.arch = check_classifier(arch, "arch")
        for key, value in (("train_steps", train_steps), ("pgd_steps", pgd_steps), ("batch_size", batch_size),
                           ("max_rounds", max_rounds)):
            if isinstance(value, bool) or int(value) != value or int(value) < 1:
                raise ValueError(f"{key}: must be a whole number >= 1, got {value!r}")
        _positive(rel_step_size=rel_step_size, lr=lr)
        if not 0 < float(stop_accuracy) <= 1:
            raise ValueError(f"stop_accuracy: must be in (0, 1], got {stop_accuracy!r}")
        self.train_steps, self.pgd_steps, self.batch_size = int(train_steps), int(pgd_steps), int(batch_size)
        self.rel_step_size, self.lr, self.stop_accuracy = float(rel_step_size), float(lr), float(stop_accuracy)
        self.max_rounds = int(max_rounds)
        self.device: str | torch.device = "cpu"
        self.checkpoint_every_s: float | None = None
        self.on_round: Callable[[int], None] | None = None  # called after each finished round (tests stop runs)
        self.surrogate: Surrogate | None = None  # the crafting model after crafting (tests measure it)

    # --- what subclasses change ---------------------------------------------------------------------------
    def train_inputs(self, model: nn.Module, xp: torch.Tensor, y: torch.Tensor, threat: ThreatModel,
                     gen: torch.Generator) -> torch.Tensor:
        """The inputs f trains on this step (EM: the perturbed batch itself)."""
        return xp

    def noise_model(self, model: nn.Module, threat: ThreatModel) -> nn.Module:
        """The function whose loss δ minimises (EM: f itself)."""
        return model

    def stop_rule(self) -> bool:
        """Whether the accuracy threshold ends crafting (REM trains robustly and runs a fixed number of rounds)."""
        return True

    # --- the alternation ----------------------------------------------------------------------------------
    def _update(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, delta: torch.Tensor, threat: ThreatModel,
                seed: int, rnd: int, num_classes: int) -> torch.Tensor:
        """One sweep of PGD over the whole set: the new δ (sample-wise N×…, or class-wise K×…)."""
        fn = self.noise_model(model, threat)
        n = x.shape[0]
        new = delta.clone()
        moves = runtime.zeros(delta.shape, x.device) if not self.sample_wise else None
        counts = runtime.zeros(num_classes, x.device) if not self.sample_wise else None
        with runtime.eval_mode(model):
            for s in range(0, n, self.batch_size):
                xb, yb = x[s:s + self.batch_size], y[s:s + self.batch_size]
                start = torch.clamp(xb + (delta[s:s + self.batch_size] if self.sample_wise else delta[yb]), 0, 1)
                gen = runtime.generator(derive_seed(seed, self.name, "pgd", rnd, s), x.device)
                if hasattr(fn, "labels"):  # REM's inner max needs the batch's labels (and starts at random)
                    fn.labels, fn.generator = yb, gen
                res = pgd(fn, xb, yb, threat, steps=self.pgd_steps, rel_step_size=self.rel_step_size,
                          maximize=False, x_init=start, generator=gen, final_eval=False)
                if self.sample_wise:
                    new[s:s + self.batch_size] = res.x_adv - xb
                else:
                    assert moves is not None and counts is not None
                    moves.index_add_(0, yb, res.x_adv - start)
                    counts.index_add_(0, yb, runtime.ones(len(yb), x.device))
        if not self.sample_wise:
            assert moves is not None and counts is not None
            step = moves / counts.clamp_min(1).reshape(-1, *([1] * (moves.dim() - 1)))
            new = threat.project_delta(delta + step)
        return new

    def _perturbed(self, x: torch.Tensor, y: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x + (delta if self.sample_wise else delta[y]), 0.0, 1.0)

    def craft(self, train, threat, model, seed=0, work_dir=None):  # type: ignore[no-untyped-def]
        if threat.norm_name not in ("linf", "l2"):
            raise ValueError(f"attack {self.name}: needs an linf or l2 budget, got {threat.norm_name}")
        device = runtime.device_of(model) if model is not None else runtime.resolve_device(self.device)
        x_cpu, y_cpu = train.tensors()
        x, y = x_cpu.to(device), y_cpu.to(device)
        n, k = x.shape[0], train.num_classes
        bsz = min(self.batch_size, n)
        sur = Surrogate(self.arch, k, train.shape, derive_seed(seed, self.name, "model"), device, lr=self.lr)
        like = runtime.zeros((n if self.sample_wise else k, *train.shape), device)
        init_gen = runtime.generator(derive_seed(seed, self.name, "init"))  # CPU draws: same δ on every device
        delta = threat.sample_delta(like.cpu(), init_gen).to(device)
        if self.sample_wise:
            delta = threat.project(x + delta, x) - x
        ident = config_hash([self.name, self.params(), threat.describe(), train.sha256(), seed])
        ckpt = CraftCheckpoint(work_dir, ident, every_s=self.checkpoint_every_s)
        rnd, history = 0, []
        restored = ckpt.load()
        if restored is not None:
            arrays, state = restored
            delta = runtime.as_tensor(arrays["noise"], device)
            sur.unpack(arrays["model_f"], arrays["model_i"])
            rnd, history = int(state["round"]), list(state["history"])
        stopped = "max_rounds"
        bar = progress(total=self.max_rounds, initial=rnd, desc=f"craft {self.name}", unit="round")
        while rnd < self.max_rounds:
            if history and self.stop_rule() and history[-1]["accuracy"] > self.stop_accuracy:
                stopped = "accuracy"
                break
            for t in range(self.train_steps):
                idx = batch_order(n, bsz, lambda e: derive_seed(seed, self.name, "order", e), device,
                                  rnd * self.train_steps + t)
                gen = runtime.generator(derive_seed(seed, self.name, "train", rnd, t), device)
                xp = self._perturbed(x[idx], y[idx], delta if not self.sample_wise else delta[idx])
                with runtime.eval_mode(sur.model):
                    xt = self.train_inputs(sur.model, xp, y[idx], threat, gen)
                sur.step(xt, y[idx])
            delta = self._update(sur.model, x, y, delta, threat, seed, rnd, k)
            acc = accuracy(sur.model, self._perturbed(x, y, delta), y)
            rnd += 1
            history.append({"round": rnd, "accuracy": acc})
            bar.update(1)
            bar.set_postfix(acc=f"{acc:.3f}")
            if rnd < self.max_rounds and ckpt.due():
                fl, it = sur.pack()
                ckpt.save({"noise": delta.cpu().numpy(), "model_f": fl, "model_i": it}, round=rnd, history=history)
            if self.on_round is not None:
                self.on_round(rnd)
        else:
            if self.stop_rule() and history and history[-1]["accuracy"] > self.stop_accuracy:
                stopped = "accuracy"
        bar.close()
        ckpt.clear()
        self.surrogate = sur
        xp = self._perturbed(x, y, delta)
        extra: dict[str, Any] = {"crafting": {
            "rounds": rnd, "stopped_by": stopped if self.stop_rule() else "rounds",
            "final_train_accuracy": history[-1]["accuracy"] if history else None,
            "final_train_loss": mean_loss(sur.model, xp, y)}}
        class_deltas = None if self.sample_wise else delta.cpu().numpy().astype(np.float32)
        return CraftResult(xp.cpu().contiguous().numpy().astype(np.float32), class_deltas, extra=extra)


@ATTACKS.register("EM")
class EM(MinMinAttack):
    """Sample-wise error-minimizing noise (Huang et al. 2021): one δ_i per image."""

    name = "EM"


@ATTACKS.register("EM-class")
class EMClass(MinMinAttack):
    """Class-wise error-minimizing noise (Huang et al. 2021): one δ_k per class."""

    name = "EM-class"
    classwise = True
    sample_wise = False
