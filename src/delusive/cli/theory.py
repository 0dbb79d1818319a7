"""``delusive theory figure2 | check | simulate``: the mixture-Gaussian analysis of Section 3 (docs/theory.md)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from delusive.cli.common import UsageError
from delusive.utils import parse_fraction

FIGURE2_D_DECADES = (1, 10, 100, 1_000, 10_000, 100_000, 1_000_000)


def _number(option: str) -> Callable[[str], float]:
    """argparse type: a finite number or a fraction such as ``1/3`` (range checked by the command)."""

    def conv(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            try:
                value = parse_fraction(text, option)
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"{option}: expected a number or a fraction like 1/3, got {text!r}") from None
        if not np.isfinite(value):
            raise argparse.ArgumentTypeError(f"{option}: expected a finite number, got {text!r}")
        return value

    return conv


def _int_list(option: str) -> Callable[[str], tuple[int, ...]]:
    def conv(text: str) -> tuple[int, ...]:
        try:
            values = tuple(int(v) for v in text.split(","))
        except ValueError:
            values = ()
        if not values or min(values) < 1:
            raise argparse.ArgumentTypeError(f"{option}: expected comma-separated integers >= 1, got {text!r}")
        return values

    return conv


def _float_list(option: str) -> Callable[[str], tuple[float, ...]]:
    def conv(text: str) -> tuple[float, ...]:
        try:
            return tuple(float(v) for v in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{option}: expected comma-separated numbers > 0, got {text!r}") from None

    return conv


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise UsageError(message)


def _run(name: str, body: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Wrap a command so that a bad option value prints one clear line and returns exit status 2."""

    def func(args: argparse.Namespace) -> int:
        try:
            return body(args)
        except UsageError as e:
            print(f"delusive theory {name}: error: {e}", file=sys.stderr)
            return 2

    func.__name__ = f"theory_{name}"
    return func


def _common_model_args(p: argparse.ArgumentParser, eta_default: float) -> None:
    p.add_argument("--sigma", type=_number("--sigma"), default=1.0, help="noise std sigma > 0 (default 1)")
    p.add_argument("--eta", type=_number("--eta"), default=eta_default,
                   help=f"non-robust mean eta in (0, 1/3) (default {eta_default:g})")
    p.add_argument("--eps", type=_number("--eps"), default=None,
                   help="l_inf budget of the robust models (default 2*eta, the attack's budget)")


def _check_model_args(args: argparse.Namespace) -> float:
    _require(args.sigma > 0, f"--sigma must be > 0, got {args.sigma:g}")
    _require(0 < args.eta < 1 / 3, f"--eta must be in (0, 1/3), got {args.eta:g}")
    eps = 2 * args.eta if args.eps is None else args.eps
    return float(eps)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``theory`` with sub-commands ``figure2``, ``check`` and ``simulate`` to the main CLI."""
    p = subparsers.add_parser("theory", help="the mixture-Gaussian analysis of Section 3 (Thm 1-3, Figure 2)",
                              description="Closed forms, Figure 2, theorem checks and a finite-sample "
                                          "simulation for the mixture-Gaussian setting of Section 3.")
    sub = p.add_subparsers(dest="theory_cmd", required=True, metavar="SUBCOMMAND")

    f = sub.add_parser("figure2", help="draw Figure 2 (natural accuracy of five models vs d) as PNG + CSV")
    f.add_argument("--out", required=True, type=Path, help="output directory (figure2.png, figure2.csv)")
    _common_model_args(f, 0.01)
    f.add_argument("--d-min", type=_number("--d-min"), default=1.0, help="smallest d (default 1)")
    f.add_argument("--d-max", type=_number("--d-max"), default=1e6, help="largest d (default 1e6)")
    f.add_argument("--points", type=int, default=241, help="log-spaced d values (default 241)")
    f.set_defaults(func=_run("figure2", figure2))

    c = sub.add_parser("check", help="verify Theorems 1-3 on a parameter grid; exit 1 on any violation")
    c.add_argument("--n-eta", type=int, default=24, help="eta values, log-spaced (default 24)")
    c.add_argument("--eta-min", type=_number("--eta-min"), default=1e-3, help="smallest eta (default 1e-3)")
    c.add_argument("--eta-max", type=_number("--eta-max"), default=0.33, help="largest eta (default 0.33)")
    c.add_argument("--d-max", type=_number("--d-max"), default=1e9,
                   help="d runs over 1, 2, 5, 10, 20, ... up to this (default 1e9)")
    c.add_argument("--sigmas", type=_float_list("--sigmas"), default=(0.1, 0.3, 1.0, 3.0, 10.0),
                   help="comma-separated sigmas (default 0.1,0.3,1,3,10)")
    c.set_defaults(func=_run("check", check))

    s = sub.add_parser("simulate", help="train linear models on sampled D, D-hat-1, D-hat-2 (standard and "
                                        "adversarial) and compare with the closed form")
    _common_model_args(s, 0.1)
    s.add_argument("--d", dest="ds", type=_int_list("--d"), default=(10, 30, 100, 200),
                   help="comma-separated numbers of non-robust features (default 10,30,100,200)")
    s.add_argument("--n-train", type=int, default=None, help="training examples (default 100*(d+1))")
    s.add_argument("--n-test", type=int, default=20_000, help="clean test examples per repeat (default 20000)")
    s.add_argument("--repeats", type=int, default=5, help="independent training/test draws (default 5)")
    s.add_argument("--l2", type=_number("--l2"), default=1e-2, help="L2 penalty of the logistic loss (0.01)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", type=Path, default=None, help="also write simulate.csv and simulate.png here")
    s.set_defaults(func=_run("simulate", simulate))


def figure2(args: argparse.Namespace) -> int:
    from delusive.theory.figure import figure2_table, log_grid, plot_figure2, write_csv
    from delusive.theory.gaussian import MODEL_NAMES

    _require(args.sigma > 0, f"--sigma must be > 0, got {args.sigma:g}")
    _require(args.eta > 0, f"--eta must be > 0, got {args.eta:g}")
    eps = 2 * args.eta if args.eps is None else float(args.eps)
    _require(args.d_min >= 1, f"--d-min must be >= 1, got {args.d_min:g}")
    _require(args.d_max > args.d_min, f"--d-max must be > --d-min ({args.d_min:g}), got {args.d_max:g}")
    _require(args.points >= 2, f"--points must be an integer >= 2, got {args.points}")
    ds = np.union1d(log_grid(args.d_min, args.d_max, args.points),
                    [d for d in FIGURE2_D_DECADES if args.d_min <= d <= args.d_max])
    table = figure2_table(args.sigma, args.eta, eps, ds)
    out = Path(args.out)
    write_csv(out / "figure2.csv", table)
    plot_figure2(table, out / "figure2.png", sigma=args.sigma, eta=args.eta, eps=eps)
    print(f"Figure 2: natural accuracy on D, sigma={args.sigma:g}, eta={args.eta:g}, eps={eps:g}")
    print(f"{'d':>9} " + " ".join(f"{m:>9}" for m in MODEL_NAMES))
    for d in FIGURE2_D_DECADES:
        i = np.flatnonzero(table["d"] == d)
        if i.size:
            print(f"{d:>9g} " + " ".join(f"{table[f'acc_{m}'][i[0]]:>9.4f}" for m in MODEL_NAMES))
    print(f"wrote {out / 'figure2.png'} and {out / 'figure2.csv'} ({ds.size} values of d)")
    return 0


def check(args: argparse.Namespace) -> int:
    from delusive.theory.checks import check_theorems, d_values, default_grid, format_report

    _require(args.n_eta >= 1, f"--n-eta must be an integer >= 1, got {args.n_eta}")
    for opt, v in (("--eta-min", args.eta_min), ("--eta-max", args.eta_max)):
        _require(0 < v < 1 / 3, f"{opt} must be in (0, 1/3) (the hypothesis of Theorem 3), got {v:g}")
    _require(args.eta_min <= args.eta_max, f"--eta-min ({args.eta_min:g}) must be <= --eta-max ({args.eta_max:g})")
    _require(args.d_max >= 1, f"--d-max must be >= 1, got {args.d_max:g}")
    _require(all(s > 0 for s in args.sigmas), f"--sigmas must all be > 0, got {args.sigmas}")
    ds = d_values(args.d_max)
    eta, d, sigma = default_grid(args.n_eta, ds, args.sigmas, eta_min=args.eta_min, eta_max=args.eta_max)
    report = check_theorems(eta, d, sigma)
    print(f"Theorems 1-3 of Section 3 on a grid of {report.n_points} points: eta in "
          f"[{args.eta_min:g}, {args.eta_max:g}] ({args.n_eta} values), d in [1, {ds[-1]:g}] ({len(ds)} values), "
          f"sigma in {{{', '.join(f'{s:g}' for s in args.sigmas)}}}, eps = 2 eta")
    print(format_report(report))
    return 0 if report.ok else 1


def simulate(args: argparse.Namespace) -> int:
    from delusive.theory.simulate import SimulationConfig, format_rows, run_simulation

    eps = _check_model_args(args)
    for opt, v in (("--n-train", args.n_train), ("--n-test", args.n_test), ("--repeats", args.repeats)):
        _require(v is None or v >= 1, f"{opt} must be an integer >= 1, got {v}")
    _require(max(args.ds) <= 5000, f"--d: at most 5000 non-robust features (dense simulation), got {max(args.ds)}")
    config = SimulationConfig(sigma=args.sigma, eta=args.eta, eps=eps, ds=tuple(args.ds), n_train=args.n_train,
                              n_test=args.n_test, repeats=args.repeats, seed=args.seed, l2=args.l2)
    t0 = time.perf_counter()
    rows = run_simulation(config)
    n_desc = "100*(d+1)" if args.n_train is None else str(args.n_train)
    print(f"closed form vs. trained linear models: sigma={args.sigma:g}, eta={args.eta:g}, eps={eps:g}, "
          f"n_train={n_desc}, n_test={args.n_test}, repeats={args.repeats}, seed={args.seed}")
    print("standard training = logistic regression; adversarial training = exact l_inf inner max (eps ||w||_1)")
    print(format_rows(rows))
    if args.out is not None:
        from delusive.theory.figure import plot_simulation, simulation_table, write_csv

        out = Path(args.out)
        write_csv(out / "simulate.csv", simulation_table(rows))
        plot_simulation(rows, config, out / "simulate.png")
        print(f"wrote {out / 'simulate.png'} and {out / 'simulate.csv'}")
    print(f"({time.perf_counter() - t0:.1f} s)")
    return 0
