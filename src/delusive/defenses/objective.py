"""The objective interface of the one training loop, its registry, and the two base objectives.

``standard`` minimises the natural risk (Eq. 1); ``pgd_at`` minimises the adversarial risk (Eq. 2) with
Madry et al.'s PGD inner maximisation, which by Theorem 1 bounds the natural risk on the clean distribution
when the training data sits within the defender's ε of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from delusive.perturb import pgd
from delusive.registry import Registry, check_params, hyperparameters
from delusive.runtime import eval_mode
from delusive.threat import ThreatModel, make_threat


@dataclass
class StepOutput:
    """What an objective returns for one batch: the loss to minimise and the logits it trained on."""

    loss: torch.Tensor
    logits: torch.Tensor
    stats: dict[str, float] = field(default_factory=dict)


class Objective:
    """A training objective: ``loss`` maps a batch to a scalar loss. Subclasses declare their params in
    ``__init__`` keyword defaults; those defaults are the documented values of the original papers."""

    name: ClassVar[str] = ""
    needs_threat: ClassVar[bool] = True
    #: optimiser steps the loop takes on each minibatch (free AT replays a batch m times; others once)
    replays: int = 1

    def __init__(self, threat: ThreatModel | None) -> None:
        if self.needs_threat and threat is None:
            raise ValueError(f"defense {self.name!r} needs a threat model: give its norm and eps "
                             "(CLI: --norm/--eps; spec: norm/eps of the defense)")
        self.threat = threat
        self.epoch = 0
        self.epochs = 1

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
        return d


OBJECTIVES: Registry[type[Objective]] = Registry("defense")
_SKIP = ("self", "threat")


@OBJECTIVES.register("standard")
class Standard(Objective):
    """Standard training (ST): cross-entropy on the training inputs as given."""

    name = "standard"
    needs_threat = False

    def __init__(self, threat: ThreatModel | None = None) -> None:
        super().__init__(threat)

    def loss(self, model, x, y, idx, generator):  # type: ignore[no-untyped-def]
        logits = model(x)
        return StepOutput(F.cross_entropy(logits.float(), y), logits)


@OBJECTIVES.register("pgd_at")
class PGDAT(Objective):
    """PGD adversarial training (Madry et al. 2018) as in the reference: K steps of ``rel_step_size``·ε
    from one random start, attack with the model in eval mode, CE on the adversarial examples only."""

    name = "pgd_at"

    def __init__(self, threat: ThreatModel | None, steps: int = 7, rel_step_size: float = 0.2,
                 random_start: bool = True) -> None:
        super().__init__(threat)
        if steps < 0:
            raise ValueError(f"steps: must be >= 0, got {steps}")
        if rel_step_size <= 0:
            raise ValueError(f"rel_step_size: must be > 0, got {rel_step_size}")
        self.steps, self.rel_step_size, self.random_start = int(steps), float(rel_step_size), bool(random_start)

    def adversarial(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                    generator: torch.Generator) -> torch.Tensor:
        assert self.threat is not None
        with eval_mode(model):
            res = pgd(model, x, y, self.threat, steps=self.steps, rel_step_size=self.rel_step_size,
                      random_start=self.random_start, generator=generator)
        return res.x_adv

    def loss(self, model, x, y, idx, generator):  # type: ignore[no-untyped-def]
        logits = model(self.adversarial(model, x, y, generator))
        return StepOutput(F.cross_entropy(logits.float(), y), logits)


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
