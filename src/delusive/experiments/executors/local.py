"""The default executor: every unit in this process, in dependency order.

Concurrent local sweeps into one directory split the cells between them: a cell claimed by another process
is skipped and revisited at the end, when this process waits for the claim and runs the cell only if its
holder died before finishing it. Shared artifacts and crafting models are claimed blocking, so they are
crafted once and the other process waits for them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from delusive.experiments.executors.graph import Unit, describe, execute_unit
from delusive.experiments.spec import Spec
from delusive.experiments.store import RunStore


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class LocalExecutor:
    name = "local"

    def run(self, units: list[Unit], spec: Spec, store: RunStore, log: Callable[[str], None] = _log) -> list[str]:
        """Run ``units``; return the cell ids that failed (an error in a unit propagates, as before)."""
        n_cells = sum(u.kind == "cell" for u in units)
        i = 0
        deferred: list[Unit] = []
        for unit in units:
            if unit.kind != "cell":
                if execute_unit(unit, spec, str(store.root), True) == "ran":
                    log(f"    made {describe(unit)}")
                continue
            i += 1
            log(f"[{i}/{n_cells}] {describe(unit)}")
            status = execute_unit(unit, spec, str(store.root), False)
            if status == "busy":
                log("    claimed by another sweep; revisited at the end")
                deferred.append(unit)
            elif status == "ran":
                _log_record(store, unit, log)
        for unit in deferred:  # wait for the other holder; run the cell only if it did not finish it
            if execute_unit(unit, spec, str(store.root), True) == "ran":
                log(f"    ran {describe(unit)} (its other claimant stopped)")
                _log_record(store, unit, log)
        return []


def _log_record(store: RunStore, unit: Unit, log: Callable[[str], None]) -> None:
    from delusive.utils import read_json

    r = read_json(store.cell_dir(unit.key) / "result.json")
    rob = r.get("robust_accuracy")
    log(f"    natural {r['natural_accuracy']:.4f} robust {'n/a' if rob is None else format(rob, '.4f')} "
        f"({r['wall_time_s']:.0f}s)")
