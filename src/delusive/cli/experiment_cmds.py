"""Experiment sub-commands: ``sweep`` (a YAML spec), ``report`` (tables and figures of a run directory) and
``reproduce`` (a shipped preset, end to end, printing the table)."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from delusive.cli.common import UsageError, add_checkpoint_args, add_deterministic_arg, device_text, positive_int
from delusive.experiments.executors import EXECUTORS, make_executor
from delusive.experiments.report import write_report
from delusive.experiments.runner import run_sweep
from delusive.experiments.spec import SpecError, load_preset, load_spec, preset_names
from delusive.experiments.store import RunStore
from delusive.runtime import resolve_device


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("sweep", help="run every cell of an experiment spec (YAML); finished cells are skipped")
    s.add_argument("spec", help="experiment spec (YAML)")
    s.add_argument("--out", required=True, help="run directory (content-addressed store; rerun to resume)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a spec value, e.g. train.epochs=1")
    s.add_argument("--max-cells", type=positive_int("--max-cells"), default=None,
                   help="run at most N of the cells still to do (a quick trial of a spec; rerun to continue)")
    _run_args(s)
    s.set_defaults(func=run_sweep_cmd)

    r = sub.add_parser("report", help="write table.md, table.csv, figure.png and curves.png of a run directory")
    r.add_argument("rundir")
    r.add_argument("--out", default=None, help="report directory (default RUNDIR/report)")
    r.set_defaults(func=run_report)

    p = sub.add_parser("reproduce", help="run a shipped preset end to end and print its table")
    p.add_argument("--preset", required=True, choices=preset_names())
    p.add_argument("--out", required=True)
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a preset value, e.g. train.epochs=1 or data_root=/data (smoke runs)")
    p.add_argument("--max-cells", type=positive_int("--max-cells"), default=None,
                   help="run at most N of the cells still to do (a quick trial of a preset; rerun to continue)")
    _run_args(p)
    p.set_defaults(func=run_reproduce)


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", type=device_text, default=None,
                   help="where cells run: auto, cpu, cuda, cuda:N or mps (default: the spec's device, else auto); "
                   "not part of a cell's identity, recorded in its result")
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile every model (long GPU runs)")
    add_deterministic_arg(p, default=None)
    add_checkpoint_args(p, default_every=None)
    p.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="local: every cell in this process (default); ray: each cell, artifact and crafting model "
                   "a Ray task (needs pip install 'delusive[ray]' and --out on a path every worker sees; "
                   "docs/scale.md)")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="the Ray cluster to join (host:port, ray://host:10001 or auto); default: start a local one")


def _with_run_options(spec, args: argparse.Namespace):  # type: ignore[no-untyped-def]
    changes = {}
    if args.device is not None:
        changes["device"] = args.device
    if args.compile:
        changes["compile"] = True
    if args.deterministic:
        changes["deterministic"] = True
    if args.checkpoint_every is not None:
        changes["checkpoint_every"] = args.checkpoint_every
    if args.checkpoint_minutes is not None:
        changes["checkpoint_minutes"] = args.checkpoint_minutes
    spec = replace(spec, **changes) if changes else spec
    try:
        resolve_device(spec.device)
    except ValueError as e:
        raise UsageError(str(e)) from None
    return spec


def _sweep_and_report(spec, out: str, max_cells: int | None,  # type: ignore[no-untyped-def]
                      args: argparse.Namespace | None = None) -> int:
    t0 = time.perf_counter()
    executor = getattr(args, "executor", "local")
    address = getattr(args, "ray_address", None)
    if address is not None and executor != "ray":
        raise UsageError("--ray-address: only with --executor ray")
    try:
        ex = make_executor(executor, address)
    except RuntimeError as e:  # Ray missing: the message names the extra
        raise UsageError(str(e)) from None
    records = run_sweep(spec, out, max_cells=max_cells, executor=ex)
    store = RunStore(out)
    with store.claim("report", "table"):  # concurrent sweeps into one directory write one report at a time
        paths = write_report(records, store.report_dir, spec.name)  # captions come from the records
    print(Path(paths["table_md"]).read_text())
    print(f"{len(records)} cells in {time.perf_counter() - t0:.0f}s; figure: {paths['figure']}; "
          f"curves: {paths['curves']}; tables: {paths['table_md']}, {paths['table_csv']}")
    return 0


def refuse_torchrun(command: str) -> None:
    """``sweep``/``reproduce`` under torchrun would run every cell once per rank, and the ranks of one cell would
    wait for each other in collectives the others never reach (a deadlock): refused in one line."""
    from delusive.runtime import distributed_requested

    if distributed_requested():
        raise UsageError(f"{command}: not under torchrun (WORLD_SIZE > 1): cells of a sweep are not data-parallel "
                         "runs; start `delusive train` under torchrun, or run the sweep in one process or with "
                         "--executor ray")


def run_sweep_cmd(args: argparse.Namespace) -> int:
    refuse_torchrun("sweep")
    spec = _with_run_options(_spec_or_usage(load_spec, args.spec, args.set), args)
    return _sweep_and_report(spec, args.out, args.max_cells, args)


def run_reproduce(args: argparse.Namespace) -> int:
    refuse_torchrun("reproduce")
    spec = _with_run_options(_spec_or_usage(load_preset, args.preset, args.set), args)
    return _sweep_and_report(spec, args.out, args.max_cells, args)


def _spec_or_usage(loader, source: str, overrides: list[str] | None):  # type: ignore[no-untyped-def]
    try:
        return loader(source, overrides)
    except SpecError as e:
        raise UsageError(str(e)) from None


def _spec_name(path: Path) -> str:
    """The sweep's name from its resolved spec (the report's heading); empty when unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    return str(data.get("name", "")) if isinstance(data, dict) else ""


def run_report(args: argparse.Namespace) -> int:
    store = RunStore(args.rundir)
    records = store.records()
    if not records:
        raise UsageError(f"{args.rundir}: no finished cells (cells/*/result.json) to report")
    paths = write_report(records, args.out or store.report_dir, _spec_name(store.root / "spec.json"))
    print(Path(paths["table_md"]).read_text())
    print(f"figure: {paths['figure']}; curves: {paths['curves']}")
    return 0
