"""Run a sweep's units as Ray tasks (https://docs.ray.io): on a laptop, a cluster, or SLURM nodes started by
Ray's cluster launcher.

Each unit is one task with the spec's resource request (``resources: {cpus_per_cell, gpus_per_cell}``); a
task gets its dependencies' results as arguments, so Ray starts an artifact after its crafting model and a
cell after its artifact. Every task writes into the run directory, which must be one path that every worker
sees (a shared file system); the driver only watches and, at the end, reads the records. A task killed with
its worker is retried ``max_retries`` times; whatever still failed is named at the end, and rerunning the
same command runs only the units that are not finished (a cell resumes from its epoch checkpoint).

Ray is an optional extra (``pip install delusive[ray]``), imported only when this executor is chosen.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import delusive
from delusive.experiments.executors.graph import Unit, describe, execute_unit
from delusive.experiments.spec import Spec
from delusive.experiments.store import RunStore

PROGRESS_EVERY_S = 30.0


def import_ray() -> Any:
    """The ``ray`` module, or an error that names the extra to install."""
    try:
        import ray
    except ImportError:
        raise RuntimeError("--executor ray needs Ray, an optional extra: pip install 'delusive[ray]' "
                           "(or pip install ray) on the driver and on every worker") from None
    return ray


def runtime_env() -> dict[str, Any]:
    """What every Ray worker gets: this package's source directory on PYTHONPATH (for a checkout that is not
    installed on the workers; harmless where it is) and the driver's DELUSIVE_* settings."""
    src = str(Path(delusive.__file__).resolve().parent.parent)
    path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p)
    env = {"PYTHONPATH": path}
    env.update({k: v for k, v in os.environ.items() if k.startswith("DELUSIVE_")})
    return {"env_vars": env}


def task_resources(spec: Spec) -> dict[str, float]:
    """Ray's resource request of every task: ``resources.cpus_per_cell`` (default 1) and
    ``resources.gpus_per_cell``, which defaults to one GPU when the spec's device is CUDA (``cuda``/``cuda:N``):
    a task given no GPU sees none (Ray hides them), so a CUDA cell would otherwise fail or fall back to the CPU.
    With ``device: auto`` the default stays 0 GPUs (the cells then run on the CPU); give ``gpus_per_cell``."""
    res = spec.resources
    on_cuda = str(spec.device).strip().lower().startswith("cuda")
    return {"num_cpus": float(res.get("cpus_per_cell", 1)),
            "num_gpus": float(res.get("gpus_per_cell", 1 if on_cuda else 0))}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class RayExecutor:
    name = "ray"

    def __init__(self, address: str | None = None, max_retries: int = 1) -> None:
        self.address = address
        self.max_retries = int(max_retries)

    def _init(self, ray: Any) -> None:
        if ray.is_initialized():  # a caller (or a test) already connected; keep its settings
            return
        kw: dict[str, Any] = {"runtime_env": runtime_env(), "log_to_driver": False}
        if self.address is None:
            kw["include_dashboard"] = False
        ray.init(address=self.address, **kw)

    def run(self, units: list[Unit], spec: Spec, store: RunStore, log: Callable[[str], None] = _log) -> list[str]:
        """Submit every unit, show progress until all are settled, and return the failed cells' ids."""
        ray = import_ray()
        self._init(ray)
        task = ray.remote(execute_unit).options(**task_resources(spec), max_retries=self.max_retries,
                                                retry_exceptions=False)
        root = str(store.root.resolve())
        refs: dict[str, Any] = {}
        for unit in units:  # dependencies first, so their refs exist
            refs[unit.uid] = task.remote(unit, spec, root, True, *(refs[d] for d in unit.deps))
        cells = {refs[u.uid]: u for u in units if u.kind == "cell"}
        shared = {refs[u.uid]: u for u in units if u.kind != "cell"}
        pending = list(refs.values())
        done: list[Unit] = []
        failed: list[tuple[Unit, str]] = []
        last_line, last_time = "", 0.0
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=5.0)
            for ref in ready:
                unit = cells.get(ref) or shared[ref]
                try:
                    ray.get(ref)
                except Exception as e:  # noqa: BLE001 - a failed task is reported, the others go on
                    failed.append((unit, _first_line(e)))
                    if unit.kind != "cell":
                        log(f"    failed: {describe(unit)}: {_first_line(e)}")
                    continue
                if unit.kind == "cell":
                    done.append(unit)
            n_fail = sum(u.kind == "cell" for u, _ in failed)
            running = sum(store.is_claimed("cell", u.key) for r, u in cells.items() if r in set(pending))
            line = f"cells: {len(done)} done, {running} running, {n_fail} failed, {len(cells)} in all"
            if line != last_line or time.monotonic() - last_time > PROGRESS_EVERY_S:
                log(line)
                last_line, last_time = line, time.monotonic()
        for unit, why in failed:
            if unit.kind == "cell":
                log(f"    failed: {describe(unit)}: {why}")
        return [u.key for u, _ in failed if u.kind == "cell"]


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[-1] if text else ''}"[:300]
