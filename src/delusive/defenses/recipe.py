"""The one adversarial-training recipe every AT objective shares, and the collapse monitor of the loop.

Large-ε adversarial training from the first iteration, at the learning rates standard training uses, often
settles on the trivial solution: the model predicts one class, the training loss sits at ln K and never leaves
it (measured on Fashion-MNIST in docs/results.md; an independent plain-PyTorch PGD-AT loop sits on the same
plateau). The field's remedies are an ε ramp (Gowal et al. 2018, "On the effectiveness of interval bound
propagation"; Wong et al. 2020 ramp ε for fast AT on MNIST), a learning-rate warm-up (Goyal et al. 2017), a
smaller learning rate, or BatchNorm. The recipe is the first two, per iteration:

* ``eps_ramp`` (fraction of training): the defender's radius grows linearly from 0 to ε over that fraction,
  so the inner maximisation of Eq. (2) starts from the natural risk and reaches the full adversarial risk
  before the first learning-rate decay;
* ``lr_warmup`` (fraction of training): the learning rate grows linearly from ~0 to its schedule's value.

Both are fields of :class:`~delusive.defenses.TrainConfig`, so they are part of every run's identity. ``None``
means "the recipe's default for this objective": :data:`DEFAULT_EPS_RAMP` and :data:`DEFAULT_LR_WARMUP` for
adversarial objectives (``Objective.at_recipe``), 0 for the others (standard training is unchanged). The
defaults were chosen by the grid in docs/results.md (§20).

The collapse monitor (:func:`collapse_reason`) flags an epoch whose model is a constant or near-constant
predictor: mean training loss within 2% of ln K (after the first epoch, unless it is the only one), or one
class taking more than 90% of the end-of-epoch model's predictions on the first 512 training images (a model
whose weights jump around at a huge learning rate can have a loss above ln K and still predict one class).
The loop records it per epoch and warns once with the remedy; the pipeline records it in the metrics, so
reports never average a collapsed run silently.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from delusive.defenses.config import TrainConfig
    from delusive.defenses.objective import Objective

#: ε ramp of the recipe for adversarial objectives (fraction of training), chosen by measurement (§20)
DEFAULT_EPS_RAMP = 0.25
#: learning-rate warm-up of the recipe for adversarial objectives (fraction of training), chosen by measurement
DEFAULT_LR_WARMUP = 0.0
#: a training loss within this relative distance of ln K marks a constant predictor
LOSS_TOLERANCE = 0.02
#: one class taking more than this share of the model's predictions marks a near-constant predictor
SHARE_LIMIT = 0.9
#: a run flagged on more than this share of its epochs after the first failed, even if its last epoch was not
PLATEAU_MAJORITY = 0.5


class CollapseWarning(UserWarning):
    """Training has collapsed to a constant (or near-constant) predictor."""


def resolve_recipe(cfg: TrainConfig, objective: Objective) -> TrainConfig:
    """``cfg`` with the recipe's ``None`` fields replaced by their values for ``objective``."""
    adversarial = bool(getattr(objective, "at_recipe", False))
    eps_ramp = cfg.eps_ramp if cfg.eps_ramp is not None else (DEFAULT_EPS_RAMP if adversarial else 0.0)
    lr_warmup = cfg.lr_warmup if cfg.lr_warmup is not None else (DEFAULT_LR_WARMUP if adversarial else 0.0)
    if not adversarial:
        eps_ramp = 0.0  # no ball to ramp: keep standard training's identity free of a meaningless number
    if type(cfg.eps_ramp) is float and type(cfg.lr_warmup) is float and (eps_ramp, lr_warmup) == (
            cfg.eps_ramp, cfg.lr_warmup):
        return cfg
    return replace(cfg, eps_ramp=float(eps_ramp), lr_warmup=float(lr_warmup))


def first_selectable_epoch(cfg: TrainConfig) -> int:
    """The first epoch whose model may be selected as the run's result: one full epoch after the ε ramp and
    the learning-rate warm-up have ended (the last epoch always may). A model from inside or just after the
    ramp was trained at a smaller budget and for less time; being smoother, it can score the best robust
    validation accuracy while being undertrained — on Figure 5's 4-epoch runs with a ramp of 0.25, a third of
    the AT cells selected epoch 1 and lost up to 40 points of natural accuracy to it (docs/results.md)."""
    ramp = max(float(cfg.eps_ramp or 0.0), float(cfg.lr_warmup or 0.0))
    if ramp <= 0:
        return 1
    return max(1, min(cfg.epochs, math.ceil(ramp * cfg.epochs + 1 - 1e-9)))


def collapse_reason(train_loss: float, top_share: float, num_classes: int, check_loss: bool = True) -> str | None:
    """Why an epoch's model looks like a constant predictor, or None when it does not. ``check_loss`` False
    skips the loss test (the loop skips it for the first of several epochs, whose mean loss includes the
    plateau every run starts on)."""
    if num_classes < 2:
        return None
    chance_loss = math.log(num_classes)
    if check_loss and abs(train_loss - chance_loss) <= LOSS_TOLERANCE * chance_loss:
        return f"training loss {train_loss:.3f} is within 2% of ln {num_classes} = {chance_loss:.3f}"
    if top_share > SHARE_LIMIT:
        return f"one class takes {100 * top_share:.1f}% of the model's predictions on training images"
    return None


def plateau_reason(flagged_epochs: list[int], epochs: int) -> str | None:
    """Why a run failed although its reported epoch was not flagged, or None: it sat on the constant-predictor
    plateau for most of its epochs after the first (the first is every run's start), so its model is what
    one or two epochs at a decayed learning rate made of a collapsed one. Found in Figure 5 (docs/results.md
    §15): a PGD-AT seed flagged on epochs 1–3 left the 2% band only in its last epoch (loss 2.6% below ln 10)
    and reported 32.9% against its siblings' 71%; a 3-epoch UEraser run flagged on epochs 2–3 reported its
    first."""
    later = sorted({int(e) for e in flagged_epochs if int(e) >= 2})
    if epochs < 2 or len(later) <= PLATEAU_MAJORITY * (epochs - 1):
        return None
    return f"on the constant-predictor plateau for {len(later)} of its {epochs - 1} epochs after the first"


REMEDY = ("the model predicts (nearly) one class: the run has collapsed to the trivial solution; lower --lr, "
          "warm the learning rate up (--lr-warmup 0.1), use a model with BatchNorm (e.g. --model small-cnn-bn), "
          "or for adversarial training ramp eps up for longer (--eps-ramp 0.5)")
