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
CONNECT_TIMEOUT_S = 10.0  # a TCP connection to the cluster's head (GCS) port, before Ray is asked to connect
# a cluster that adds nodes on demand (an autoscaler) may satisfy a request no current node can: this skips the
# check that every cell's request fits on some node of the cluster as it is now
SKIP_RESOURCE_CHECK = "DELUSIVE_RAY_SKIP_RESOURCE_CHECK"


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of a ``host:port`` or ``ray://host:port`` address; None for ``auto``/``local``."""
    text = address.strip()
    if text in ("auto", "local", ""):
        return None
    text = text.split("://", 1)[1] if "://" in text else text
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"--ray-address {address}: expected HOST:PORT (e.g. 10.0.0.1:6379), ray://HOST:PORT or auto")
    if not 0 < int(port) < 65536:
        raise ValueError(f"--ray-address {address}: port {port} is not in 1..65535")
    return host.strip("[]"), int(port)


def check_reachable(address: str | None, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse, within ``timeout`` seconds, a cluster address where nothing accepts a connection.

    Ray itself retries the connection to its GCS for ever (and ignores SIGTERM meanwhile), so a mistyped
    address must be caught before ``ray.init`` is called.
    """
    import socket

    hp = None if address is None else _host_port(address)
    if hp is None:
        return
    try:
        with socket.create_connection(hp, timeout=timeout):
            pass
    except OSError as e:
        why = "timed out" if isinstance(e, TimeoutError) else (e.strerror or str(e)).lower()
        raise ValueError(f"--ray-address {address}: no Ray cluster answers there ({why}); start one with "
                         "`ray start --head` and give the address it prints, or leave --ray-address out to run "
                         "a local one") from None


def check_resources(nodes: list[dict[str, Any]], resources: dict[str, float], where: str) -> None:
    """Refuse a per-cell request that no live node of the cluster can ever satisfy, naming the resource.

    Ray would otherwise keep such tasks pending for ever ("0 done, 0 running"). ``nodes`` is ``ray.nodes()``;
    a task runs on one node, so the request is compared with the largest node, not the cluster's sum.
    """
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive", True)]
    asks = (("gpus_per_cell", "GPU", "GPU(s)", 1.0), ("cpus_per_cell", "CPU", "CPU(s)", 1.0),
            ("memory_gb_per_cell", "memory", "GB of memory", 2.0**30))
    for key, ray_key, unit, scale in asks:
        want = float(resources.get(key, 1.0 if key == "cpus_per_cell" else 0.0))
        have = max((float(r.get(ray_key, 0.0)) / scale for r in alive), default=0.0)
        if want > have + 1e-9:
            where_has = where if len(alive) == 1 else f"the largest of the {len(alive)} live nodes of {where}"
            raise ValueError(f"resources.{key}: each cell asks for {want:g} {unit}, but {where_has} has {have:g}; "
                             f"lower it, or add a node that has them (a cluster that adds nodes on demand: set "
                             f"{SKIP_RESOURCE_CHECK}=1)")


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
        check_reachable(address)  # before any work: a mistyped address must not hang the sweep
        self.address = address
        self.max_retries = int(max_retries)

    def _init(self, ray: Any) -> None:
        if ray.is_initialized():  # a caller (or a test) already connected; keep its settings
            return
        kw: dict[str, Any] = {"runtime_env": runtime_env(), "log_to_driver": False}
        if self.address is None:
            kw["include_dashboard"] = False
        # ray.init has no timeout of its own, and it must run in the main thread (its signal handlers): a dead
        # address is refused before this by check_reachable; a live one answers
        ray.init(address=self.address, **kw)

    def run(self, units: list[Unit], spec: Spec, store: RunStore, log: Callable[[str], None] = _log) -> list[str]:
        """Submit every unit, show progress until all are settled, and return the failed cells' ids."""
        ray = import_ray()
        asked = task_resources(spec)
        res = {**spec.resources, "cpus_per_cell": asked["num_cpus"], "gpus_per_cell": asked["num_gpus"]}
        if self.address is None and not ray.is_initialized() and not os.environ.get(SKIP_RESOURCE_CHECK):
            check_resources([_this_machine()], res, "this machine (a local Ray cluster)")  # before Ray starts
        self._init(ray)
        if not os.environ.get(SKIP_RESOURCE_CHECK):
            try:
                check_resources(ray.nodes(), res, f"the Ray cluster at {self.address or '(local)'}")
            except ValueError:
                ray.shutdown()  # now, while the cluster is up (at interpreter exit it can wait a minute)
                raise
        opts: dict[str, Any] = {}
        if res.get("memory_gb_per_cell"):
            opts["memory"] = int(float(res["memory_gb_per_cell"]) * 2**30)
        task = ray.remote(execute_unit).options(**asked, max_retries=self.max_retries, retry_exceptions=False,
                                                **opts)
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


def _this_machine() -> dict[str, Any]:
    """What a local Ray cluster would offer, as a ``ray.nodes()`` entry: this machine's CPUs, GPUs, memory."""
    import torch

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else float("inf")
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return {"Alive": True, "Resources": {"CPU": float(os.cpu_count() or 1), "GPU": float(gpus), "memory": mem}}


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[-1] if text else ''}"[:300]
