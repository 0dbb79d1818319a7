"""Cost of one training step of each objective against the standard step, measured in the same run.

For a model at batch B it times, in interleaved rounds (standard, PGD-AT, FAT, standard, PGD-AT, FAT, ...),
a standard training step, a PGD-K AT step (K attack steps + 1 training step) and a FAT step with the same K
(early-stopped PGD-K-τ, Zhang et al. 2020), and prints for each ratio the median over rounds and its spread
(min–max): single runs on a shared 2-core machine vary by ±20%, a median of interleaved rounds does not.

  PGD-AT step / ((K+1) × standard step)   the issue's bar: ≤ 1.10
  FAT step / PGD-AT step (same K)         FAT forwards only the examples still running: < 1

The model is first trained for a few hundred steps on real Fashion-MNIST (when its files are present, else
the synthetic set), so FAT's early stop sees a realistic mix of easy and hard examples.

Usage: python benchmarks/train_step.py [--steps K] [--model small-cnn] [--precision fp32|bf16|auto]
       [--device auto|cpu|cuda] [--rounds 7] [--batch-size 128] [--shape 1,28,28]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from delusive import runtime
from delusive.data import load_dataset, make_synthetic
from delusive.defenses import FAT, PGDAT, Standard, TrainConfig, fit
from delusive.models import create_model
from delusive.runtime import autocast, to_channels_last
from delusive.threat import LinfBall


def step_time(objective, model, x, y, opt, precision: str, device, iters: int) -> float:  # type: ignore[no-untyped-def]
    """Seconds per training step (mean over ``iters`` steps after one warm-up step)."""
    g = runtime.generator(0, device)
    idx = runtime.arange(x.shape[0], device)
    for i in range(iters + 1):
        if i == 1:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
        with autocast(precision, device):
            out = objective.loss(model, x, y, idx, g)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - t0) / iters


def training_batch(args: argparse.Namespace, device: torch.device):  # type: ignore[no-untyped-def]
    c, h, w = map(int, args.shape.split(","))
    try:
        data = load_dataset("fashion-mnist", "train") if (c, h, w) == (1, 28, 28) else None
    except (FileNotFoundError, ValueError):
        data = None
    if data is None:
        data = make_synthetic(4 * args.batch_size, num_classes=10, shape=(c, h, w), seed=0)
    model = runtime.prepare_model(create_model(args.model, data.num_classes, c, (h, w), seed=0), device)
    pre = data.subset(list(range(min(len(data), 100 * args.batch_size))))
    fit(model, pre, Standard(), TrainConfig(epochs=1, batch_size=args.batch_size, lr=0.05, seed=0))
    xb, yb = data.subset(list(range(len(data) - args.batch_size, len(data)))).tensors()
    return model.train(), to_channels_last(xb.to(device)), yb.to(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="small-cnn")
    ap.add_argument("--steps", type=int, default=7, help="PGD steps K of the AT steps (reference: 7)")
    ap.add_argument("--tau", type=int, default=1, help="FAT's τ (the original's mid-training value)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=7, help="interleaved repetitions (median and spread)")
    ap.add_argument("--iters", type=int, default=10, help="steps timed per objective per round")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--shape", default="1,28,28")
    ap.add_argument("--eps", type=float, default=0.1)
    ap.add_argument("--profile", action="store_true",
                    help="also print torch.profiler's top operators (self CPU time) of the standard and AT steps")
    args = ap.parse_args()
    device = runtime.resolve_device(args.device)
    precision = runtime.resolve_precision(args.precision, device)
    model, x, y = training_batch(args, device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)  # tiny lr: the model barely moves
    threat = LinfBall(args.eps)
    objectives = {"standard": Standard(), "pgd_at": PGDAT(threat, steps=args.steps),
                  "fat": FAT(threat, steps=args.steps, tau=args.tau)}
    iters = {"standard": args.iters * (args.steps + 1), "pgd_at": args.iters, "fat": args.iters}
    times: dict[str, list[float]] = {k: [] for k in objectives}
    for _ in range(args.rounds):
        for name, obj in objectives.items():
            times[name].append(step_time(obj, model, x, y, opt, precision, device, iters[name]))
    k1 = args.steps + 1
    at_ratio = [a / (k1 * s) for a, s in zip(times["pgd_at"], times["standard"], strict=True)]
    fat_ratio = [f / a for f, a in zip(times["fat"], times["pgd_at"], strict=True)]
    print(f"model {args.model}, batch {args.batch_size}, {precision}, device {device}, "
          f"{torch.get_num_threads()} threads, {args.rounds} interleaved rounds")
    for name in objectives:
        ips = [args.batch_size / t for t in times[name]]
        print(f"{name:9s} step  {statistics.median(ips):10.0f} images/s  (min {min(ips):.0f}, max {max(ips):.0f})")
    print(f"PGD-AT step / ({k1} x standard step) = {statistics.median(at_ratio):.3f}  "
          f"(spread {min(at_ratio):.3f}-{max(at_ratio):.3f})")
    print(f"FAT (tau={args.tau}) step / PGD-AT step (K={args.steps}) = {statistics.median(fat_ratio):.3f}  "
          f"(spread {min(fat_ratio):.3f}-{max(fat_ratio):.3f})")
    if args.profile:
        profile_steps(objectives, model, x, y, opt, precision, device, args.iters)


def profile_steps(objectives, model, x, y, opt, precision, device, iters: int) -> None:  # type: ignore[no-untyped-def]
    """Where a step's time goes: each operator's share of self CPU time, standard vs AT step side by side."""
    from torch.profiler import ProfilerActivity, profile

    shares: dict[str, dict[str, float]] = {}
    for name in ("standard", "pgd_at"):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step_time(objectives[name], model, x, y, opt, precision, device, iters)
        events = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in events) or 1.0
        shares[name] = {e.key: 100.0 * e.self_cpu_time_total / total for e in events}
    top = sorted(shares["pgd_at"], key=lambda k: -shares["pgd_at"][k])[:12]
    print(f"{'operator':40s} {'standard %':>11s} {'PGD-AT %':>9s}")
    for k in top:
        print(f"{k:40s} {shares['standard'].get(k, 0.0):11.1f} {shares['pgd_at'][k]:9.1f}")


if __name__ == "__main__":
    main()
