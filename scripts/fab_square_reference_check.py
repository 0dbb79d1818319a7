"""Check our FAB-T and Square against an independent implementation: torchattacks' ``FAB`` (multi-targeted) and
``Square`` (Kim, 2020; ports of Croce's auto-attack code), on a trained model.

The acceptance bar of issue 19: on one trained model, our robust accuracy under each attack is within 1.5
points of the independent one, each attack run alone on the same test images. FAB-T: ``--steps`` iterations,
9 target classes (the top other classes of the clean logits), one run per target, α_max 0.1, η 1.05, β 0.9;
an example is broken when a misclassified point within ε was found. Square: ``--queries`` queries, p_init 0.8,
margin loss. The two sides draw different random numbers (Square's windows, signs), so a small difference is
expected; the per-example agreement is printed as well.

torchattacks is not a dependency of the project (``pip install torchattacks`` would pull another torch): put it
in a throwaway folder and point to it.

    pip install --no-deps --target /tmp/ta torchattacks==3.5.1
    python scripts/fab_square_reference_check.py RUN_DIR --torchattacks-path /tmp/ta [--limit 500]
        [--queries 5000] [--steps 100] [--attacks fab-t,square] [--device auto]

``RUN_DIR`` is a ``delusive train --out`` folder (model.pt + model.json). The threat model is ``--norm/--eps``,
else the run's evaluation threat from config.json, else the dataset's default budget. Exit status 1 when a
difference exceeds ``--tolerance`` points.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from delusive import runtime
from delusive.data import load_dataset
from delusive.evaluation.attacks import robust_correct
from delusive.models import load_model
from delusive.threat import L2Ball, LinfBall, ThreatModel, default_budget, make_threat
from delusive.utils import read_json

ATTACKS = ("fab-t", "square")


def _threat(args: argparse.Namespace, run_dir: Path, dataset: str) -> ThreatModel:
    norm, eps = args.norm, args.eps
    config_path = run_dir / "config.json"
    if (norm is None or eps is None) and config_path.is_file():
        config = read_json(config_path)
        section = config.get("eval") or {}
        if not section.get("eps"):
            section = (config.get("defense") or {}).get("threat") or {}
        norm = norm or section.get("norm")
        eps = eps or section.get("eps_text") or section.get("eps")
    d_norm, d_eps = default_budget(dataset)
    return make_threat(norm or d_norm, str(eps or d_eps))


def _theirs(ta: Any, attack: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel,
            args: argparse.Namespace, num_classes: int, device: torch.device) -> torch.Tensor:
    """Robust per example under torchattacks' attack: correctly classified at the adversarial image it returns
    (it returns the clean image where it failed, and only points within ε where it succeeded)."""
    norm = "Linf" if isinstance(threat, LinfBall) else "L2"
    if attack == "fab-t":
        atk = ta.FAB(model, norm=norm, eps=threat.eps, steps=args.steps, n_restarts=1, alpha_max=0.1, eta=1.05,
                     beta=0.9, seed=args.seed, multi_targeted=True, n_classes=num_classes)
    else:
        atk = ta.Square(model, norm=norm, eps=threat.eps, n_queries=args.queries, n_restarts=1, p_init=0.8,
                        loss="margin", resc_schedule=True, seed=args.seed)
    ok = []
    for i in range(0, x.shape[0], args.batch_size):
        xb, yb = x[i : i + args.batch_size].to(device), y[i : i + args.batch_size].to(device)
        adv = atk(xb, yb)
        if not bool(threat.contains(adv, xb, tol=1e-5).all()):
            raise SystemExit(f"torchattacks {attack} returned points outside {threat}")
        with torch.no_grad():
            ok.append((model(adv).argmax(1) == yb).cpu())
    return torch.cat(ok)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path, help="a delusive train --out folder (model.pt + model.json)")
    p.add_argument("--torchattacks-path", required=True, type=Path,
                   help="folder holding the torchattacks package (pip install --no-deps --target DIR ...)")
    p.add_argument("--attacks", default="fab-t,square", help="comma-separated: fab-t, square (default both)")
    p.add_argument("--dataset", default=None, help="test set to use (default: the run's dataset, else fashion-mnist)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--limit", type=int, default=None, help="first N test images only (default: all)")
    p.add_argument("--norm", choices=("linf", "l2"), default=None)
    p.add_argument("--eps", default=None)
    p.add_argument("--steps", type=int, default=100, help="FAB-T iterations per target (default 100)")
    p.add_argument("--queries", type=int, default=5000, help="Square's queries (default 5000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--device", default="auto")
    p.add_argument("--tolerance", type=float, default=1.5, help="allowed |ours - theirs| in points (default 1.5)")
    p.add_argument("--json", type=Path, default=None, help="also write the numbers to this file")
    args = p.parse_args(argv)
    attacks = [a.strip() for a in args.attacks.split(",") if a.strip()]
    bad = [a for a in attacks if a not in ATTACKS]
    if bad or not attacks:
        p.error(f"--attacks {args.attacks!r}: expected a comma-separated list of {', '.join(ATTACKS)}")

    if not (args.torchattacks_path / "torchattacks").is_dir():
        p.error(f"--torchattacks-path {args.torchattacks_path}: no torchattacks package there; run "
                f"pip install --no-deps --target {args.torchattacks_path} torchattacks==3.5.1")
    sys.path.insert(0, str(args.torchattacks_path))
    import torchattacks as ta  # from the throwaway folder: never a project dependency

    device = runtime.resolve_device(args.device)
    runtime.set_deterministic(device)
    model, meta = load_model(args.run_dir)
    model.to(device).eval()
    dataset = args.dataset or meta.get("dataset") or "fashion-mnist"
    threat = _threat(args, args.run_dir, dataset)
    if not isinstance(threat, LinfBall | L2Ball):
        p.error("only ℓ∞ and ℓ2 threat models can be compared (torchattacks has no masked FAB or Square)")
    test = load_dataset(dataset, "test", root=args.data_root)
    x, y = test.tensors()
    if args.limit is not None:
        x, y = x[: args.limit], y[: args.limit]
    n = int(y.shape[0])
    with torch.no_grad():
        logits = torch.cat([model(x[i : i + args.batch_size].to(device)).cpu()
                            for i in range(0, n, args.batch_size)])
    clean = logits.argmax(1) == y
    num_classes = int(logits.shape[1])
    print(f"model {args.run_dir} ({meta.get('arch')}), {dataset} test: {n} images, {threat}, FAB-T {args.steps} "
          f"steps x {min(9, num_classes - 1)} targets, Square {args.queries} queries, device {device}, "
          f"torchattacks {ta.__version__}")
    print(f"natural accuracy            {100 * float(clean.float().mean()):6.2f}%")

    result: dict[str, Any] = {
        "run_dir": str(args.run_dir), "dataset": dataset, "n": n, "threat": threat.describe(), "steps": args.steps,
        "queries": args.queries, "seed": args.seed, "device": str(device), "torchattacks_version": ta.__version__,
        "natural_accuracy": float(clean.float().mean()), "attacks": {},
    }
    within = True
    for attack in attacks:
        t0 = time.perf_counter()
        ours = robust_correct(model, x, y, threat, attack, steps=args.steps, queries=args.queries,
                              generator=runtime.generator(args.seed), batch_size=args.batch_size).cpu()
        t_ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        theirs = _theirs(ta, attack, model, x, y, threat, args, num_classes, device) & clean
        t_theirs = time.perf_counter() - t0
        row = {"ours": float(ours.float().mean()), "torchattacks": float(theirs.float().mean()),
               "difference_points": 100 * float(ours.float().mean() - theirs.float().mean()),
               "robust_both": int((ours & theirs).sum()), "robust_only_ours": int((ours & ~theirs).sum()),
               "robust_only_theirs": int((~ours & theirs).sum()), "seconds_ours": t_ours,
               "seconds_theirs": t_theirs}
        result["attacks"][attack] = row
        print(f"ours {attack:<7}                {100 * row['ours']:6.2f}%   ({t_ours:.1f} s)")
        print(f"torchattacks {attack:<7}        {100 * row['torchattacks']:6.2f}%   ({t_theirs:.1f} s)")
        print(f"  difference (ours-theirs) {row['difference_points']:+.2f} points (tolerance {args.tolerance}); "
              f"robust under both {row['robust_both']}, only ours {row['robust_only_ours']}, only theirs "
              f"{row['robust_only_theirs']}")
        within &= abs(row["difference_points"]) <= args.tolerance
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print("PASS" if within else "FAIL")
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
