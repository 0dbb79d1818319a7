"""One name for a whole defense: training-set transforms, then a training objective, joined by ``+``.

Grammar: ``[transform+]...[objective]`` — zero or more transforms (applied left to right, once, to the
training set) followed by at most one objective (default ``standard``). Examples: ``jpeg`` (JPEG then
standard training), ``pgd_at``, ``jpeg+pgd_at`` (JPEG then PGD-AT), ``grayscale+jpeg+ueraser``.
``delusive train --defense NAME`` and a spec's ``defenses[].name`` both take it.

Params (``--defense-param key=value``, a spec defense's ``params:``) go to the component that declares the
key; a key two components declare is written ``component.key`` (``jpeg.quality=20``). The objective carries
its transforms in ``objective.transforms`` and lists them in :meth:`~Objective.describe`, so they are part of
every run identity, cell id and ``config.json``; :func:`apply_transforms` runs them (the pipeline calls it
before holding out the validation split).
"""

from __future__ import annotations

from typing import Any

from delusive.data import ArrayDataset
from delusive.defenses.objective import OBJECTIVES, Objective, create_objective
from delusive.defenses.transform import TRANSFORMS, TrainingTransform, create_transform
from delusive.registry import hyperparameters

SEP = "+"


def defense_names() -> list[str]:
    """Every single-component name: the objectives, then the training-set transforms."""
    return OBJECTIVES.names() + TRANSFORMS.names()


def split_defense(name: str) -> tuple[list[str], str]:
    """(transform names, objective name) of a defense name; a ValueError names what is wrong and allowed."""
    parts = [p.strip() for p in str(name).split(SEP)]
    if not name or any(not p for p in parts):
        raise ValueError(f"defense: bad name {name!r}; expected [transform{SEP}...]objective, e.g. jpeg{SEP}pgd_at")
    *head, last = parts
    objective = "standard"
    if last in OBJECTIVES:
        objective = last
    else:
        head = parts
    for p in head:
        if p not in TRANSFORMS:
            where = "objectives come last" if p in OBJECTIVES else "unknown name"
            raise ValueError(f"defense: {p!r} in {name!r}: {where}; transforms: {', '.join(TRANSFORMS.names())}; "
                             f"objectives: {', '.join(OBJECTIVES.names())}")
    if len(set(head)) != len(head):
        raise ValueError(f"defense: {name!r} names a transform twice")
    return head, objective


def is_defense_name(name: object) -> bool:
    try:
        split_defense(str(name))
    except ValueError:
        return False
    return isinstance(name, str)


def with_objective(name: str, objective: str) -> str:
    """``name`` with its objective replaced (``jpeg+pgd_at`` → ``jpeg`` for standard): the ε = 0 rule."""
    head, _ = split_defense(name)
    return SEP.join(head + ([] if objective == "standard" and head else [objective]))


def _route(name: str, components: list[tuple[str, type]], params: dict[str, Any]) -> list[dict[str, Any]]:
    """Split ``params`` over the components by the keys each declares (``comp.key`` to disambiguate)."""
    out: list[dict[str, Any]] = [{} for _ in components]
    names = [c for c, _ in components]
    for key, value in params.items():
        if "." in key:
            comp, sub = key.split(".", 1)
            if comp not in names:
                raise ValueError(f"defense {name!r}: parameter {key!r} names {comp!r}, which is not one of its "
                                 f"components ({', '.join(names)})")
            out[names.index(comp)][sub] = value
            continue
        owners = [i for i, (_, cls) in enumerate(components)
                  if key in hyperparameters(cls, ("self", "threat"))]
        if len(owners) > 1:
            raise ValueError(f"defense {name!r}: parameter {key!r} belongs to several components; write "
                             + " or ".join(f"{names[i]}.{key}" for i in owners))
        if not owners:
            allowed = [f"{c}: {', '.join(hyperparameters(cls, ('self', 'threat'))) or 'none'}" for c, cls in components]
            raise ValueError(f"defense {name!r}: unknown parameter(s) {key}; allowed: {'; '.join(allowed)}")
        out[owners[0]][key] = value
    return out


def create_defense(name: str, norm: str | None = None, eps: str | float | None = None,
                   **params: Any) -> Objective:
    """The objective of defense ``name`` with its training-set transforms attached (``objective.transforms``).

    A single objective name is exactly :func:`create_objective` (same params, same identity)."""
    head, obj_name = split_defense(name)
    if not head:
        return create_objective(obj_name, norm, eps, **params)
    components: list[tuple[str, type]] = [(t, TRANSFORMS.get(t)) for t in head] + [(obj_name, OBJECTIVES.get(obj_name))]
    routed = _route(name, components, params)
    transforms = tuple(create_transform(t, **p) for t, p in zip(head, routed[:-1], strict=True))
    objective = create_objective(obj_name, norm, eps, **routed[-1])
    objective.transforms = transforms
    return objective


def transforms_of(objective: Objective) -> tuple[TrainingTransform, ...]:
    return tuple(getattr(objective, "transforms", ()))


def check_transforms(objective: Objective, shape: tuple[int, int, int]) -> None:
    """Refuse, before anything runs, a transform that cannot apply to images of ``shape`` (C, H, W)."""
    for t in transforms_of(objective):
        t.check(shape)


def apply_transforms(objective: Objective, data: ArrayDataset, seed: int = 0) -> ArrayDataset:
    """``data`` through the objective's training-set transforms, left to right (itself when there are none)."""
    for t in transforms_of(objective):
        data = t.apply(data, seed)
    return data
