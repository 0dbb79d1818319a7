"""Check our APGD-CE against an independent implementation: torchattacks' ``APGD`` (Kim, 2020), on a trained model.

The acceptance bar of issue 11: on a PGD-AT Fashion-MNIST model, our APGD-CE robust accuracy on the full test
set is within 1.5 points of an independent APGD-CE. Both attacks run 100 iterations with one random start,
ρ = 0.75, on the same test images; an example counts as robust when it is correctly classified clean and no
iterate breaks it (torchattacks reports the same any-iterate criterion). The two draw different random starts,
so a small difference is expected.

torchattacks is not a dependency of the project: install it into a throwaway folder and point to it.

    pip install --no-deps --target /tmp/ta torchattacks==3.5.1
    python scripts/apgd_reference_check.py RUN_DIR --torchattacks-path /tmp/ta [--limit 500] [--device auto]

``RUN_DIR`` is a ``delusive train --out`` folder (model.safetensors or model.pt, + model.json). The threat
model is ``--norm/--eps``,
else the run's evaluation threat from config.json, else the dataset's default budget. Exit status 1 when the
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


def _torchattacks_robust(ta: Any, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel,
                         steps: int, restarts: int, seed: int, batch_size: int, device: torch.device) -> torch.Tensor:
    norm = "Linf" if isinstance(threat, LinfBall) else "L2"
    attack = ta.APGD(model, norm=norm, eps=threat.eps, steps=steps, n_restarts=restarts, seed=seed, loss="ce",
                     rho=0.75)
    ok = []
    for i in range(0, x.shape[0], batch_size):
        xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
        acc, _ = attack.perturb(xb, yb, cheap=True)  # acc: clean-correct and never broken
        ok.append(acc.bool().cpu())
    return torch.cat(ok)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path, help="a delusive train --out folder (model weights + model.json)")
    p.add_argument("--torchattacks-path", required=True, type=Path,
                   help="folder holding the torchattacks package (pip install --no-deps --target DIR ...)")
    p.add_argument("--dataset", default=None, help="test set to use (default: the run's dataset, else fashion-mnist)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--limit", type=int, default=None, help="first N test images only (default: all)")
    p.add_argument("--norm", choices=("linf", "l2"), default=None)
    p.add_argument("--eps", default=None)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--restarts", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--device", default="auto")
    p.add_argument("--tolerance", type=float, default=1.5, help="allowed |ours - theirs| in points (default 1.5)")
    p.add_argument("--json", type=Path, default=None, help="also write the numbers to this file")
    args = p.parse_args(argv)

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
        p.error("only ℓ∞ and ℓ2 threat models can be compared (torchattacks has no masked APGD)")
    test = load_dataset(dataset, "test", root=args.data_root)
    x, y = test.tensors()
    if args.limit is not None:
        x, y = x[: args.limit], y[: args.limit]
    n = int(y.shape[0])
    print(f"model {args.run_dir} ({meta.get('arch')}), {dataset} test: {n} images, {threat}, APGD-CE "
          f"{args.steps} steps, {args.restarts} restart(s), device {device}, torchattacks {ta.__version__}")

    with torch.no_grad():
        clean = torch.cat([model(x[i : i + args.batch_size].to(device)).argmax(1).cpu()
                           for i in range(0, n, args.batch_size)]) == y
    t0 = time.perf_counter()
    ours = robust_correct(model, x, y, threat, "apgd-ce", steps=args.steps, restarts=args.restarts,
                          generator=runtime.generator(args.seed), batch_size=args.batch_size).cpu()
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    theirs = _torchattacks_robust(ta, model, x, y, threat, args.steps, args.restarts, args.seed, args.batch_size,
                                  device)
    t_theirs = time.perf_counter() - t0

    result = {
        "run_dir": str(args.run_dir), "dataset": dataset, "n": n, "threat": threat.describe(),
        "steps": args.steps, "restarts": args.restarts, "seed": args.seed, "device": str(device),
        "torchattacks_version": ta.__version__,
        "natural_accuracy": float(clean.float().mean()),
        "ours_apgd_ce": float(ours.float().mean()),
        "torchattacks_apgd_ce": float(theirs.float().mean()),
        "difference_points": 100 * float(ours.float().mean() - theirs.float().mean()),
        "robust_both": int((ours & theirs).sum()), "robust_only_ours": int((ours & ~theirs).sum()),
        "robust_only_theirs": int((~ours & theirs).sum()), "seconds_ours": t_ours, "seconds_theirs": t_theirs,
    }
    print(f"natural accuracy        {100 * result['natural_accuracy']:6.2f}%")
    print(f"ours APGD-CE            {100 * result['ours_apgd_ce']:6.2f}%   ({t_ours:.1f} s)")
    print(f"torchattacks APGD-CE    {100 * result['torchattacks_apgd_ce']:6.2f}%   ({t_theirs:.1f} s)")
    print(f"difference (ours-theirs) {result['difference_points']:+.2f} points (tolerance {args.tolerance})")
    print(f"per example: robust under both {result['robust_both']}, only ours {result['robust_only_ours']}, "
          f"only theirs {result['robust_only_theirs']}")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    within = abs(result["difference_points"]) <= args.tolerance
    print("PASS" if within else "FAIL")
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
