"""Executors run a sweep's dependency graph (:mod:`~delusive.experiments.executors.graph`): ``local`` in
this process (the default, no extra dependency) or ``ray`` as tasks on a Ray cluster (``delusive[ray]``)."""

from __future__ import annotations

from typing import Any, Protocol

from delusive.experiments.executors.graph import Unit, build_graph, execute_unit
from delusive.experiments.executors.local import LocalExecutor

EXECUTORS = ("local", "ray")


class Executor(Protocol):
    name: str

    def run(self, units: list[Unit], spec: Any, store: Any, log: Any = ...) -> list[str]: ...


def make_executor(name: str = "local", address: str | None = None, **options: Any) -> Executor:
    """The executor called ``name``; ``address`` is the Ray cluster's (None: start a local one, ``auto``:
    the cluster this machine belongs to)."""
    if name == "local":
        if address is not None:
            raise ValueError("--ray-address: only with --executor ray")
        return LocalExecutor()
    if name == "ray":
        from delusive.experiments.executors.ray_cluster import RayExecutor, import_ray

        import_ray()  # fail now, naming the extra, not after the sweep has started
        return RayExecutor(address, **options)
    raise ValueError(f"--executor: expected one of {', '.join(EXECUTORS)}, got {name!r}")


__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "Unit", "build_graph", "execute_unit", "make_executor"]
