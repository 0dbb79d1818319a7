"""Check our APGD-CE against an independent implementation: torchattacks' ``APGD`` (Kim, 2020), on a trained model.

The check: on a PGD-AT Fashion-MNIST model, our APGD-CE robust accuracy on the full test set is within 1.5
points of an independent APGD-CE. Both attacks run 100 iterations with one random start, ρ = 0.75, on the
same test images; an example counts as robust when it is correctly classified clean and no
iterate breaks it (torchattacks reports the same any-iterate criterion). The two draw different random starts,
so a small difference is expected.

torchattacks is not a dependency of the project: install it into a throwaway folder and point to it.

    pip install --no-deps --target /tmp/ta torchattacks==3.5.1
    python scripts/apgd_reference_check.py RUN_DIR --torchattacks-path /tmp/ta [--limit 500] [--device auto]

``RUN_DIR`` is a ``delusive train --out`` folder (model.safetensors or model.pt, + model.json). The threat
model is ``--norm/--eps``, else the run's evaluation threat from config.json, else the dataset's default
budget. Exit status 1 when the difference exceeds ``--tolerance`` points.
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


def _torchattacks_robust(setup: common.Setup, steps: int, restarts: int, seed: int, batch_size: int
                         ) -> torch.Tensor:
    attack = setup.ta.APGD(setup.model, norm=setup.torchattacks_norm(), eps=setup.threat.eps, steps=steps,
                           n_restarts=restarts, seed=seed, loss="ce", rho=0.75)
    ok = []
    for i in range(0, setup.x.shape[0], batch_size):
        xb, yb = setup.x[i : i + batch_size].to(setup.device), setup.y[i : i + batch_size].to(setup.device)
        acc, _ = attack.perturb(xb, yb, cheap=True)  # acc: clean-correct and never broken
        ok.append(acc.bool().cpu())
    return torch.cat(ok)


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--restarts", type=int, default=1)
    args = p.parse_args(argv)
    setup = common.load(p, args, "APGD")
    x, y, n = setup.x, setup.y, int(setup.y.shape[0])
    print(f"model {args.run_dir} ({setup.meta.get('arch')}), {setup.dataset} test: {n} images, {setup.threat}, "
          f"APGD-CE {args.steps} steps, {args.restarts} restart(s), device {setup.device}, torchattacks "
          f"{setup.ta.__version__}")
    clean = setup.clean_logits(args.batch_size).argmax(1) == y
    t0 = time.perf_counter()
    ours = robust_correct(setup.model, x, y, setup.threat, "apgd-ce", steps=args.steps, restarts=args.restarts,
                          generator=runtime.generator(args.seed), batch_size=args.batch_size).cpu()
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    theirs = _torchattacks_robust(setup, args.steps, args.restarts, args.seed, args.batch_size)
    t_theirs = time.perf_counter() - t0

    result: dict[str, Any] = {
        "run_dir": str(args.run_dir), "dataset": setup.dataset, "n": n, "threat": setup.threat.describe(),
        "steps": args.steps, "restarts": args.restarts, "seed": args.seed, "device": str(setup.device),
        "torchattacks_version": setup.ta.__version__,
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
    return common.finish(result, abs(result["difference_points"]) <= args.tolerance, args.json)


if __name__ == "__main__":
    sys.exit(main())
