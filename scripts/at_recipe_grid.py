"""The grid behind the AT recipe's defaults (docs/results.md §20): PGD-AT with ``delusive train``'s defaults on a
5,000-image Fashion-MNIST subset (ℓ∞ 0.2, 4 epochs, lr 0.05, fp32) for ε ramp × lr warm-up × model (with and
without BatchNorm) × seed (:data:`CONFIGS`), each run's collapse noted.

    python scripts/at_recipe_grid.py --out runs/at-grid            # the full grid (24 runs)
    python scripts/at_recipe_grid.py --out runs/at-grid --table    # print the table of what has finished

Each run is one ``delusive train`` call into its own folder (a rerun skips finished runs). Robust accuracy is
PGD-10 (step 2.5ε/10) on 500 seeded class-stratified test images — cheap, because the grid asks which recipe
trains, not how robust the result is.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

#: (model, eps ramp, lr warm-up): the full ramp × warm-up grid on the default BatchNorm-free small CNN, where
#: AT collapses; with BatchNorm, where it did not collapse in earlier probes, the reference (no ramp) and the ramp
CONFIGS = tuple([("small-cnn", r, w) for r in (0.0, 0.25, 0.5) for w in (0.0, 0.1)]
                + [("small-cnn-bn", r, 0.0) for r in (0.0, 0.25)])
SEEDS = (0, 1, 2)


def run_dir(out: Path, model: str, ramp: float, warm: float, seed: int) -> Path:
    return out / f"{model}_ramp{ramp}_warm{warm}_seed{seed}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--table", action="store_true", help="only print the table of finished runs")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    args = ap.parse_args()
    out = Path(args.out)
    grid = [(seed, *c) for seed, c in itertools.product(args.seeds, CONFIGS)]
    if not args.table:
        for seed, model, ramp, warm in grid:
            d = run_dir(out, model, ramp, warm, seed)
            if (d / "metrics.json").exists():
                continue
            t0 = time.perf_counter()
            cmd = [sys.executable, "-m", "delusive", "train", "--dataset", "fashion-mnist", "--train-subset", "5000",
                   "--defense", "pgd_at", "--norm", "linf", "--eps", "0.2", "--epochs", "4", "--model", model,
                   "--eps-ramp", str(ramp), "--lr-warmup", str(warm), "--seed", str(seed), "--precision", "fp32",
                   "--eval-attack", "pgd", "--eval-steps", "10", "--robust-subset", "500", "--device", "cpu",
                   "--out", str(d)]
            subprocess.run(cmd, check=True)
            print(f"[grid] {d.name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    print_table(out, grid)
    return 0


def print_table(out: Path, grid: list[tuple[int, str, float, float]]) -> None:
    rows: dict[tuple[str, float, float], list[dict]] = {}
    for seed, model, ramp, warm in grid:
        m = run_dir(out, model, ramp, warm, seed) / "metrics.json"
        if m.exists():
            rows.setdefault((model, ramp, warm), []).append({"seed": seed, **json.loads(m.read_text())})
    print("| model | eps ramp | lr warm-up | natural acc. per seed (%) | mean of trained | PGD-10 robust (%) | "
          "collapsed | train time (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for (model, ramp, warm), rs in rows.items():
        nat = [100 * r["natural_accuracy"] for r in rs]
        rob = [100 * r["robust_accuracy"] for r in rs]
        ok = [n for n, r in zip(nat, rs, strict=True) if not r.get("collapsed")]
        coll = [f"seed {r['seed']} (ep {r.get('collapse_epoch')})" for r in rs if r.get("collapsed")]
        plateau = [f"seed {r['seed']} ep {r['collapsed_epochs']}" for r in rs
                   if r.get("collapsed_epochs") and not r.get("collapsed")]
        mean = f"{statistics.mean(ok):.2f} ({len(ok)}/{len(rs)})" if ok else "—"
        times = statistics.median(r["train_time_s"] for r in rs)
        print(f"| {model} | {ramp} | {warm} | {', '.join(f'{n:.2f}' for n in nat)} | {mean} | "
              f"{', '.join(f'{x:.1f}' for x in rob)} | {'; '.join(coll) or 'none'}"
              f"{' (plateau left: ' + '; '.join(plateau) + ')' if plateau else ''} | {times:.0f} |")


if __name__ == "__main__":
    sys.exit(main())
