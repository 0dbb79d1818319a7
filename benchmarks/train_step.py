"""Throughput of the default CNN at batch 128 on this machine (images/s): a standard training step, a PGD-AT
step (K attack steps + 1 training step), and the PGD-AT step's cost against (K+1)× the standard step.

Usage: python benchmarks/train_step.py [--steps K] [--model small-cnn] [--precision fp32|bf16]
The ratio is measured within one run, so it is comparable across machines; absolute images/s are not.
"""

from __future__ import annotations

import argparse
import time

import torch

from delusive.defenses import PGDAT, Standard
from delusive.models import create_model
from delusive.runtime import autocast, to_channels_last
from delusive.threat import LinfBall


def images_per_second(objective, model, x, y, opt, precision: str, iters: int, warmup: int = 3) -> float:
    g = torch.Generator().manual_seed(0)
    idx = torch.arange(x.shape[0])
    for i in range(warmup + iters):
        if i == warmup:
            t0 = time.perf_counter()
        with autocast(precision):
            out = objective.loss(model, x, y, idx, g)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
    return iters * x.shape[0] / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="small-cnn")
    ap.add_argument("--steps", type=int, default=7, help="PGD steps K of the AT step (reference: 7)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--shape", default="1,28,28")
    args = ap.parse_args()
    c, h, w = map(int, args.shape.split(","))
    model = create_model(args.model, 10, c, h, seed=0).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = to_channels_last(torch.rand(args.batch_size, c, h, w, generator=torch.Generator().manual_seed(0)))
    y = torch.randint(0, 10, (args.batch_size,), generator=torch.Generator().manual_seed(1))
    st = images_per_second(Standard(), model, x, y, opt, args.precision, args.iters)
    at = images_per_second(PGDAT(LinfBall(0.1), steps=args.steps), model, x, y, opt, args.precision,
                           max(2, args.iters // (args.steps + 1) * 2))
    k1 = args.steps + 1
    print(f"model {args.model}, batch {args.batch_size}, {args.precision}, {torch.get_num_threads()} threads")
    print(f"standard step     {st:10.0f} images/s")
    print(f"PGD-{args.steps} AT step     {at:10.0f} images/s")
    print(f"PGD-AT step time / ({k1} x standard step time) = {st / at / k1:.2f}")


if __name__ == "__main__":
    main()
