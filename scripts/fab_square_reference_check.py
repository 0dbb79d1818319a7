"""Check our FAB-T and Square against an independent implementation: torchattacks' ``FAB`` (multi-targeted) and
``Square`` (Kim, 2020; ports of Croce's auto-attack code), on a trained model.

The check: on one trained model, our robust accuracy under each attack is within 1.5
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

``RUN_DIR`` is a ``delusive train --out`` folder (model.safetensors or model.pt, + model.json). The threat
model is ``--norm/--eps``, else the run's evaluation threat from config.json, else the dataset's default
budget. Exit status 1 when a difference exceeds ``--tolerance`` points.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference_check_common as common  # noqa: E402

from delusive import runtime  # noqa: E402
from delusive.evaluation.attacks import robust_correct  # noqa: E402

ATTACKS = ("fab-t", "square")


def _theirs(setup: common.Setup, attack: str, steps: int, queries: int, seed: int, batch_size: int,
            num_classes: int) -> torch.Tensor:
    """Robust per example under torchattacks' attack: correctly classified at the adversarial image it returns
    (it returns the clean image where it failed, and only points within ε where it succeeded)."""
    ta, model, threat, norm = setup.ta, setup.model, setup.threat, setup.torchattacks_norm()
    if attack == "fab-t":
        atk = ta.FAB(model, norm=norm, eps=threat.eps, steps=steps, n_restarts=1, alpha_max=0.1, eta=1.05,
                     beta=0.9, seed=seed, multi_targeted=True, n_classes=num_classes)
    else:
        atk = ta.Square(model, norm=norm, eps=threat.eps, n_queries=queries, n_restarts=1, p_init=0.8,
                        loss="margin", resc_schedule=True, seed=seed)
    ok = []
    for i in range(0, setup.x.shape[0], batch_size):
        xb, yb = setup.x[i : i + batch_size].to(setup.device), setup.y[i : i + batch_size].to(setup.device)
        adv = atk(xb, yb)
        if not bool(threat.contains(adv, xb, tol=1e-5).all()):
            raise SystemExit(f"torchattacks {attack} returned points outside {threat}")
        with torch.no_grad():
            ok.append((model(adv).argmax(1) == yb).cpu())
    return torch.cat(ok)


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--attacks", default="fab-t,square", help="comma-separated: fab-t, square (default both)")
    p.add_argument("--steps", type=int, default=100, help="FAB-T iterations per target (default 100)")
    p.add_argument("--queries", type=int, default=5000, help="Square's queries (default 5000)")
    args = p.parse_args(argv)
    attacks = [a.strip() for a in args.attacks.split(",") if a.strip()]
    bad = [a for a in attacks if a not in ATTACKS]
    if bad or not attacks:
        p.error(f"--attacks {args.attacks!r}: expected a comma-separated list of {', '.join(ATTACKS)}")
    setup = common.load(p, args, "FAB or Square")
    x, y, n = setup.x, setup.y, int(setup.y.shape[0])
    logits = setup.clean_logits(args.batch_size)
    clean = logits.argmax(1) == y
    num_classes = int(logits.shape[1])
    print(f"model {args.run_dir} ({setup.meta.get('arch')}), {setup.dataset} test: {n} images, {setup.threat}, "
          f"FAB-T {args.steps} steps x {min(9, num_classes - 1)} targets, Square {args.queries} queries, device "
          f"{setup.device}, torchattacks {setup.ta.__version__}")
    print(f"natural accuracy            {100 * float(clean.float().mean()):6.2f}%")

    result: dict[str, Any] = {
        "run_dir": str(args.run_dir), "dataset": setup.dataset, "n": n, "threat": setup.threat.describe(),
        "steps": args.steps, "queries": args.queries, "seed": args.seed, "device": str(setup.device),
        "torchattacks_version": setup.ta.__version__, "natural_accuracy": float(clean.float().mean()),
        "attacks": {},
    }
    within = True
    for attack in attacks:
        t0 = time.perf_counter()
        ours = robust_correct(setup.model, x, y, setup.threat, attack, steps=args.steps, queries=args.queries,
                              generator=runtime.generator(args.seed), batch_size=args.batch_size).cpu()
        t_ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        theirs = _theirs(setup, attack, args.steps, args.queries, args.seed, args.batch_size, num_classes) & clean
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
    return common.finish(result, within, args.json)


if __name__ == "__main__":
    sys.exit(main())
