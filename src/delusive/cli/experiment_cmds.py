"""Experiment sub-commands: ``sweep`` (a YAML spec), ``report`` (tables and figures of a run directory) and
``reproduce`` (a shipped preset, end to end, printing the table)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from delusive.cli.common import UsageError, positive_int
from delusive.experiments.report import write_report
from delusive.experiments.runner import run_sweep
from delusive.experiments.spec import SpecError, load_preset, load_spec, preset_names
from delusive.experiments.store import RunStore


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("sweep", help="run every cell of an experiment spec (YAML); finished cells are skipped")
    s.add_argument("spec", help="experiment spec (YAML)")
    s.add_argument("--out", required=True, help="run directory (content-addressed store; rerun to resume)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a spec value, e.g. train.epochs=1")
    s.add_argument("--max-cells", type=positive_int("--max-cells"), default=None, help=argparse.SUPPRESS)
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
    p.add_argument("--max-cells", type=positive_int("--max-cells"), default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=run_reproduce)


def _sweep_and_report(spec, out: str, max_cells: int | None) -> int:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    records = run_sweep(spec, out, max_cells=max_cells)
    store = RunStore(out)
    paths = write_report(records, store.report_dir, spec.description or spec.name)
    print(Path(paths["table_md"]).read_text())
    print(f"{len(records)} cells in {time.perf_counter() - t0:.0f}s; figure: {paths['figure']}; "
          f"curves: {paths['curves']}; tables: {paths['table_md']}, {paths['table_csv']}")
    return 0


def run_sweep_cmd(args: argparse.Namespace) -> int:
    return _sweep_and_report(_spec_or_usage(load_spec, args.spec, args.set), args.out, args.max_cells)


def run_reproduce(args: argparse.Namespace) -> int:
    return _sweep_and_report(_spec_or_usage(load_preset, args.preset, args.set), args.out, args.max_cells)


def _spec_or_usage(loader, source: str, overrides: list[str] | None):  # type: ignore[no-untyped-def]
    try:
        return loader(source, overrides)
    except SpecError as e:
        raise UsageError(str(e)) from None


def run_report(args: argparse.Namespace) -> int:
    store = RunStore(args.rundir)
    records = store.records()
    if not records:
        raise UsageError(f"{args.rundir}: no finished cells (cells/*/result.json) to report")
    paths = write_report(records, args.out or store.report_dir)
    print(Path(paths["table_md"]).read_text())
    print(f"figure: {paths['figure']}; curves: {paths['curves']}")
    return 0
