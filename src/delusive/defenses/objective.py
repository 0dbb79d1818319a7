"""The objective interface of the one training loop and its registry of defenses.

Each defense lives in its own module (``standard.py``, ``pgd_at.py``, ``trades.py``, ``fat.py``, ``gairat.py``,
``random_noise.py``, ``fast_at.py``, ``free_at.py``) and registers itself in :data:`OBJECTIVES`; importing
:mod:`delusive.defenses` imports them all, so :func:`create_objective` knows every defense.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from delusive import runtime
from delusive.registry import Registry, check_params, hyperparameters
from delusive.threat import ThreatModel, make_threat


@dataclass
class StepOutput:
    """What an objective returns for one batch: the loss to minimise and the logits it trained on, and
    statistics the loop averages over the epoch. A statistic computed on the device stays a (0-dim) tensor:
    the loop sums it there and reads it once per epoch, so no objective synchronises with the host per step."""

    loss: torch.Tensor
    logits: torch.Tensor
    stats: dict[str, float | torch.Tensor] = field(default_factory=dict)


class Objective:
    """A training objective: ``loss`` maps a batch to a scalar loss. Subclasses declare their params in
    ``__init__`` keyword defaults; those defaults are the documented values of the original papers."""

    name: ClassVar[str] = ""
    needs_threat: ClassVar[bool] = True
    #: an adversarial-training objective: follows the AT recipe (ε ramp, lr warm-up; defenses/recipe.py)
    at_recipe: ClassVar[bool] = False
    #: optimiser steps the loop takes on each minibatch (free AT replays a batch m times; others once)
    replays: int = 1
    #: training-set transforms applied once before training (``jpeg+pgd_at``; :mod:`delusive.defenses.compose`)
    transforms: tuple[Any, ...] = ()

    def __init__(self, threat: ThreatModel | None) -> None:
        if self.needs_threat and threat is None:
            raise ValueError(f"defense {self.name!r} needs a threat model: give its norm and eps "
                             "(CLI: --norm/--eps; spec: norm/eps of the defense)")
        self.threat = threat
        self.epoch = 0
        self.epochs = 1
        self.eps_scale = 1.0
        self._scaled: tuple[float, ThreatModel] | None = None

    def host_generator(self, generator: torch.Generator) -> torch.Generator:
        """A CPU generator for the draws that decide host-side values (a mixing weight, a box size, whether a
        batch is mixed), seeded from the loop's per-epoch ``generator``: drawing them on the device and reading
        them back would stall an accelerator every step. One stream per epoch, so a resumed run draws the same."""
        seed = int(generator.initial_seed())
        cached = getattr(self, "_host_gen", None)
        if cached is None or cached[0] != seed:
            cached = (seed, runtime.generator(seed))
            self._host_gen = cached
        return cached[1]

    def set_eps_scale(self, scale: float) -> None:
        """The loop's ε ramp: the objective attacks within ``scale``·ε until the ramp ends (scale 1)."""
        self.eps_scale = float(scale)

    def current_threat(self) -> ThreatModel:
        """The ball this iteration trains against: the defense's threat model, shrunk by the ε ramp."""
        assert self.threat is not None
        if self.eps_scale >= 1.0:
            return self.threat
        if self._scaled is None or self._scaled[0] != self.eps_scale:
            self._scaled = (self.eps_scale, scaled_threat(self.threat, self.eps_scale))
        return self._scaled[1]

    def begin_epoch(self, epoch: int, epochs: int) -> None:
        """Called before each epoch (curricula such as FAT's τ schedule or GAIRAT's warm-up use it)."""
        self.epoch, self.epochs = epoch, epochs

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor,
             generator: torch.Generator) -> StepOutput:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """State the objective carries between batches or epochs (checkpointed, so a resume is exact)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    def params(self) -> dict[str, Any]:
        """The objective's hyperparameters (part of a run's identity)."""
        return {k: getattr(self, k) for k in hyperparameters(type(self), _SKIP)}

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "params": self.params()}
        if self.threat is not None:
            d["threat"] = self.threat.describe()
        if self.transforms:  # only when present, so the identities of plain objectives do not change
            d["transforms"] = [t.describe() for t in self.transforms]
        return d


def scaled_threat(threat: ThreatModel, factor: float) -> ThreatModel:
    """A copy of ``threat`` with its radius multiplied by ``factor`` (a region mask's base ball too)."""
    t = copy.copy(threat)
    t.eps = threat.eps * factor
    base = getattr(threat, "base", None)
    if base is not None:
        t.base = scaled_threat(base, factor)  # type: ignore[attr-defined]
    return t


OBJECTIVES: Registry[type[Objective]] = Registry("defense")
_SKIP = ("self", "threat")


def objective_names() -> list[str]:
    return OBJECTIVES.names()


def create_objective(name: str, norm: str | None = None, eps: str | float | None = None,
                     **params: Any) -> Objective:
    """Build defense ``name`` with its own threat model (never coupled to an attack's) and params.

    Unknown params are an error naming the allowed ones.
    """
    cls = OBJECTIVES.get(name)
    check_params("defense", name, cls, params, _SKIP)
    defaults = hyperparameters(cls, _SKIP)
    threat = None
    if cls.needs_threat:
        if norm is None or eps is None:
            raise ValueError(f"defense {name!r} needs a threat model: give its norm and eps "
                             f"(CLI: --norm linf --eps 0.1; spec: norm/eps of the defense)")
        threat = make_threat(norm, eps)
    for k, v in params.items():
        default = defaults[k]
        if isinstance(default, bool) and not isinstance(v, bool):
            raise ValueError(f"defense {name!r}: {k} must be true or false, got {v!r}")
        if isinstance(default, int | float) and not isinstance(default, bool) and not isinstance(v, int | float):
            raise ValueError(f"defense {name!r}: {k} must be a number, got {v!r}")
        if isinstance(default, int) and not isinstance(default, bool) and not float(v).is_integer():
            raise ValueError(f"defense {name!r}: {k} must be an integer, got {v!r}")
    return cls(threat, **params)
