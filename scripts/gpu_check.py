"""One short check of the GPU path (scripts/gpu-check.sh runs it): the ``gpu`` tests, a ResNet-18 step
benchmark (standard and PGD-10 AT steps, fp32 vs bf16, channels_last on/off), P1 and P3 crafting times on a
10,000-image synthetic CIFAR-shaped set, and ``paper-cifar10-quick`` on synthetic files in the CIFAR-10
on-disk format. Prints one Markdown table and writes it to ``$OUT/gpu-check.md`` when ``$OUT`` is set.

``--device cpu --small`` shrinks every size so the whole check runs on a 2-core CPU in well under three
minutes; the default test suite runs it that way so the script cannot rot.
"""

from __future__ import annotations

import argparse
import os
import pickle
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from delusive import runtime
from delusive.data import ArrayDataset
from delusive.defenses import PGDAT, Standard, TrainConfig
from delusive.experiments.pipeline import EvalPlan, RunOptions, train_and_evaluate
from delusive.models import create_model
from delusive.threat import L2Ball

ROOT = Path(__file__).resolve().parents[1]


def synthetic_cifar(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` learnable 32×32×3 uint8 images (a class pattern plus noise) with labels 0..9."""
    rng = np.random.default_rng(seed)
    patterns = rng.integers(0, 256, size=(10, 32, 32, 3))
    y = rng.integers(0, 10, size=n)
    x = np.clip(0.6 * patterns[y] + 0.4 * rng.integers(0, 256, size=(n, 32, 32, 3)), 0, 255).astype(np.uint8)
    return x, y


def write_cifar_files(root: Path, n_train: int, n_test: int) -> None:
    """CIFAR-10's python layout: cifar-10-batches-py/data_batch_1..5 and test_batch (pickled dicts)."""
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True, exist_ok=True)
    x, y = synthetic_cifar(n_train + n_test, 0)
    flat = x.transpose(0, 3, 1, 2).reshape(len(x), -1)  # channel-major rows, as the real files
    per = n_train // 5
    for b in range(5):
        sl = slice(b * per, (b + 1) * per)
        batch = {b"batch_label": b"synthetic", b"labels": [int(v) for v in y[sl]], b"data": flat[sl]}
        (d / f"data_batch_{b + 1}").write_bytes(pickle.dumps(batch, protocol=2))
    test = {b"batch_label": b"synthetic", b"labels": [int(v) for v in y[n_train:]], b"data": flat[n_train:]}
    (d / "test_batch").write_bytes(pickle.dumps(test, protocol=2))
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    (d / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=2))


def step_rates(model_name: str, batch: int, steps: int, precision: str, channels_last: bool,
               device: torch.device, iters: int) -> tuple[float, float]:
    """Images/s of a standard step and a PGD-``steps`` AT step (median of 3 interleaved repetitions)."""
    model = create_model(model_name, 10, 3, 32, seed=0)
    model = runtime.prepare_model(model, device, channels_last=channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    g = runtime.generator(0, device)
    x = runtime.rand((batch, 3, 32, 32), g, device)
    x = runtime.to_channels_last(x) if channels_last else x.contiguous()
    y = runtime.randint(0, 10, batch, g, device)
    idx = runtime.arange(batch, device)
    objectives = [Standard(), PGDAT(L2Ball(0.5), steps=steps)]
    reps: list[list[float]] = [[], []]

    def run(obj, n: int) -> float:  # type: ignore[no-untyped-def]
        for i in range(n + 1):
            if i == 1:
                _sync(device)
                t0 = time.perf_counter()
            with runtime.autocast(precision, device):
                out = obj.loss(model, x, y, idx, g)
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            opt.step()
        _sync(device)
        return n * batch / (time.perf_counter() - t0)

    for _ in range(3):
        reps[0].append(run(objectives[0], iters * (steps + 1)))
        reps[1].append(run(objectives[1], iters))
    return statistics.median(reps[0]), statistics.median(reps[1])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def craft_times(device: torch.device, n: int, small: bool) -> dict[str, float]:
    """Seconds to craft P1 and P3 (on ``n`` synthetic CIFAR-shaped images) with a standard-trained model."""
    from delusive.attacks import create_attack

    x, y = synthetic_cifar(n, 1)
    data = ArrayDataset(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), y.astype(np.int64), 10, "synthetic-cifar")
    arch = "small-cnn" if small else "vgg16"
    with tempfile.TemporaryDirectory() as d:
        rec = train_and_evaluate(arch, data, None, Standard(), TrainConfig(epochs=1, lr=0.05, precision="auto"),
                                 EvalPlan(val_size=0), d, RunOptions(device=str(device)), desc="crafting model")
    model = rec["model"].eval()
    threat = L2Ball(0.5)
    out = {}
    p1 = create_attack("P1", steps=2 if small else 100)
    p3 = create_attack("P3", iterations=2 if small else 500)
    for name, atk in (("P1", p1), ("P3", p3)):
        _sync(device)
        t0 = time.perf_counter()
        atk.craft(data, threat, model, seed=0)
        _sync(device)
        out[name] = time.perf_counter() - t0
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    ap.add_argument("--small", action="store_true", help="tiny sizes: a CPU smoke run in under three minutes")
    ap.add_argument("--skip-tests", action="store_true", help="do not run the gpu-marked tests")
    args = ap.parse_args()
    device = runtime.resolve_device(args.device)
    runtime.set_deterministic(device)
    rows: list[tuple[str, str]] = []
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    rows.append(("device", f"{device} ({name}), torch {torch.__version__}, python {platform.python_version()}"))
    t_all = time.perf_counter()

    if not args.skip_tests:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider",
                               str(ROOT / "tests")], capture_output=True, text=True, cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        tail = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
        rows.append(("gpu tests", f"{tail} (exit {proc.returncode}, {time.perf_counter() - t0:.0f}s)"))
        if proc.returncode not in (0, 5):
            print(proc.stdout[-4000:], proc.stderr[-2000:], file=sys.stderr)

    batch, steps, iters = (16, 2, 1) if args.small else (512, 10, 5)
    arch = "small-cnn" if args.small else "resnet18"
    for precision in ("fp32", "bf16"):
        for cl in (True, False):
            st, at = step_rates(arch, batch, steps, precision, cl, device, iters)
            rows.append((f"{arch} b{batch} {precision} channels_last={'on' if cl else 'off'}",
                         f"standard {st:,.0f} img/s; PGD-{steps} AT {at:,.0f} img/s; "
                         f"AT/((K+1)·standard) = {st / at / (steps + 1):.2f}"))

    n_craft = 500 if args.small else 10_000
    ct = craft_times(device, n_craft, args.small)
    rows.append((f"crafting on {n_craft:,} synthetic 3×32×32 images",
                 f"P1 ({2 if args.small else 100} steps) {ct['P1']:.1f}s; P3 ({2 if args.small else 500} "
                 f"iterations) {ct['P3']:.1f}s"))

    with tempfile.TemporaryDirectory() as d:
        write_cifar_files(Path(d) / "data", 1000 if args.small else 50_000, 200 if args.small else 10_000)
        argv = [sys.executable, "-m", "delusive.cli.main", "reproduce", "--preset", "paper-cifar10-quick",
                "--out", str(Path(d) / "run"), "--device", str(device), "--set", f"data_root={Path(d) / 'data'}"]
        if args.small:
            argv += ["--set", "models=[small-cnn]", "--set", "crafting.arch=small-cnn", "--set", "train_subset=400",
                     "--set", "train.epochs=1", "--set", "crafting.train.epochs=1", "--set", "attacks=[clean,P1]",
                     "--set", "attack_params.P1.steps=2", "--set", "eval.robust_subset=50",
                     "--set", "eval.steps=2", "--set", "eval.attack=apgd-ce", "--set", "eval.val_size=0"]
        t0 = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, env={**os.environ,
                                                                          "PYTHONPATH": str(ROOT / "src"),
                                                                          "DELUSIVE_PROGRESS": "0",
                                                                          "DELUSIVE_CACHE": str(Path(d) / "cache")})
        took = time.perf_counter() - t0
        last = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
        rows.append(("paper-cifar10-quick on synthetic CIFAR-10 files",
                     f"exit {proc.returncode} in {took:.0f}s: {last[:160]}"))
        if proc.returncode != 0:
            print(proc.stdout[-4000:], proc.stderr[-4000:], file=sys.stderr)
    rows.append(("total wall time", f"{time.perf_counter() - t_all:.0f}s"))

    table = "| check | result |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows) + "\n"
    title = f"# gpu-check ({'small, ' if args.small else ''}{device})\n\n"
    print(title + table)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"]).mkdir(parents=True, exist_ok=True)
        (Path(os.environ["OUT"]) / "gpu-check.md").write_text(title + table, encoding="utf-8")
    failed = any(v.startswith("exit ") and not v.startswith("exit 0") for _, v in rows)
    failed |= any(k == "gpu tests" and "(exit 0," not in v and "(exit 5," not in v for k, v in rows)
    return 1 if failed else 0


def _checked_main() -> int:
    """``main`` with the CLI's rule: a problem the user can fix (no such device, ``$OUT`` a file) is one line
    ``gpu-check: error: ...`` and status 2, found before any check runs; a bug keeps its traceback."""
    out = os.environ.get("OUT")
    try:
        if out and os.path.lexists(out) and not os.path.isdir(out):
            raise ValueError(f"OUT={out}: exists and is not a directory (OUT names the folder for gpu-check.md)")
        return main()
    except ValueError as e:
        print(f"gpu-check: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(_checked_main())
