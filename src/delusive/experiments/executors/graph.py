"""The work of a sweep as a dependency graph: crafting models → poison artifacts → cells.

A crafting model (P1–P4 craft against a standard-trained model) is shared by every artifact of the same clean
training set and crafting config; an artifact is shared by every cell with the same poison config (the
defenses, models and training settings differ, the poison does not). Each shared unit is its own node, so an
executor runs it exactly once and starts the cells that need it only after it exists. Each unit is idempotent
and claimed in the run store (:meth:`RunStore.claim`) while it runs, so concurrent sweeps and retried tasks
never run one twice at the same time, and a finished unit is never run again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from delusive.experiments.spec import Cell, Spec
from delusive.experiments.store import RunStore
from delusive.utils import config_hash

KINDS = ("model", "artifact", "cell")


@dataclass(frozen=True)
class Unit:
    """One node: ``kind`` (model, artifact or cell), its content key, a cell that needs it (the node is built
    from that cell's config) and the units it waits for."""

    kind: str
    key: str
    cell: Cell
    deps: tuple[str, ...] = ()

    @property
    def uid(self) -> str:
        return f"{self.kind}-{self.key}"


def model_key(poison_config: dict[str, Any]) -> str:
    """Identity of the crafting model: the clean training set it sees and its training config."""
    return config_hash({k: poison_config[k] for k in ("dataset", "train_subset", "seed", "crafting")})


def build_graph(cells: list[Cell]) -> list[Unit]:
    """Every unit the ``cells`` need, each once, dependencies before dependents (models, artifacts, cells)."""
    models: dict[str, Unit] = {}
    artifacts: dict[str, Unit] = {}
    out_cells: list[Unit] = []
    for cell in cells:
        deps: tuple[str, ...] = ()
        pc = cell.poison_config
        if cell.attack != "clean":
            adeps: tuple[str, ...] = ()
            if pc.get("crafting") is not None:
                m = models.setdefault(model_key(pc), Unit("model", model_key(pc), cell))
                adeps = (m.uid,)
            a = artifacts.setdefault(config_hash(pc), Unit("artifact", config_hash(pc), cell, adeps))
            deps = (a.uid,)
        out_cells.append(Unit("cell", cell.cell_id, cell, deps))
    return [*models.values(), *artifacts.values(), *out_cells]


_TEST_SETS: dict[tuple[str, str | None], Any] = {}


def _test_set(dataset: str, data_root: str | None) -> Any:
    from delusive.data import load_dataset

    key = (dataset, data_root)
    if key not in _TEST_SETS:
        _TEST_SETS[key] = load_dataset(dataset, "test", root=data_root)
    return _TEST_SETS[key]


def unit_done(unit: Unit, store: RunStore) -> bool:
    if unit.kind == "cell":
        return store.is_done(unit.key)
    if unit.kind == "artifact":
        return (store.artifact_dir(unit.cell.poison_config) / "manifest.json").exists()
    return (store.lock_dir / f"{unit.uid}.done").exists()


def execute_unit(unit: Unit, spec: Spec, root: str, blocking: bool = True, *_deps: Any) -> str:
    """Run ``unit`` into the store at ``root`` unless it is finished; return ``ran``, ``done`` (finished
    before, nothing run) or ``busy`` (claimed by another process; only when not ``blocking``).

    Extra positional arguments are the results of the units it waits for (a Ray task's dependencies)."""
    from delusive.experiments.runner import ensure_crafting_model, ensure_poison, run_cell

    store = RunStore(root)
    if unit_done(unit, store):
        return "done"
    with store.claim(unit.kind, unit.key, blocking=blocking) as got:
        if not got:
            return "busy"
        if unit_done(unit, store):  # finished by whoever held the claim before us
            return "done"
        store.log_attempt(unit.kind, unit.key, "start")
        if unit.kind == "model":
            ensure_crafting_model(unit.cell, spec, store)
            (store.lock_dir / f"{unit.uid}.done").touch()
        elif unit.kind == "artifact":
            ensure_poison(unit.cell, spec, store)
        else:
            record = run_cell(unit.cell, spec, store, _test_set(unit.cell.dataset, spec.data_root))
            store.write_result(unit.key, record)
        store.log_attempt(unit.kind, unit.key, "done")
    return "ran"


def describe(unit: Unit) -> str:
    c = unit.cell
    if unit.kind == "model":
        return f"crafting model for {c.dataset} seed {c.seed}"
    if unit.kind == "artifact":
        return f"poison {c.dataset} {c.attack} seed {c.seed}"
    return f"{c.dataset} {c.attack} {c.defense.label} {c.model} seed {c.seed}"
