"""One short check of the GPU path (``scripts/gpu-check.sh`` runs it), sized for <= 6 minutes on an H200.

It measures, in this order, writing everything under one folder (``--out``, else ``$OUT``, else
``gpu-check-<time>``):

1. the ``gpu``-marked tests (``gpu-tests.txt``);
2. a throughput table: images/s and model-FLOP utilisation (MFU) of ResNet-18 and VGG-16 on 3×32×32, for a
   standard step and a PGD-10 adversarial-training step, at batch 128 and 512, in bf16 and fp32, with the
   deterministic switches on and off;
3. P1 and P3 crafting times, scaled to the paper's Table 1 schedule (CIFAR-10: 50,000 images, P1 100 steps,
   P3 500 iterations of 256 images per class, the crafting model 150 epochs of VGG-16);
4. ``paper-cifar10-quick`` through the CLI (crafting model, P1, P3, L2C, ST and PGD-AT, AutoAttack, report) on
   the real CIFAR-10 when it is found, else on synthetic files in its on-disk format; the report is kept;
5. the full ``paper-cifar10`` cost from the measured rates (:func:`paper_cost`, formula printed).

``--device cpu --small`` shrinks every size so the whole check runs on a 2-core CPU in under three minutes;
the default test suite runs it so the script cannot rot. A bad device, a missing GPU or an output path that
is a file is one line ``gpu-check: error: ...`` and exit status 2, before any work.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from delusive import runtime
from delusive.data import ArrayDataset
from delusive.defenses import PGDAT, Standard
from delusive.models import create_model
from delusive.threat import L2Ball

ROOT = Path(__file__).resolve().parents[1]
ARCHS = ("resnet18", "vgg16")
#: dense bf16 tensor-core peaks (FLOP/s) by device-name fragment; MFU is measured against these
PEAKS = {"H200": 989e12, "H100": 989e12, "GH200": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12,
         "4090": 165e12, "3090": 71e12}
#: the paper's Table 1 (minutes, CIFAR-10): training the crafting model, generating
TABLE1 = {"P1": (25.9, 12.6), "P3": (25.9, 4.6)}


class CheckError(Exception):
    """A problem the user can fix (device, output path); printed as one line."""


# --- FLOPs -----------------------------------------------------------------------------------------------
def forward_flops(model: nn.Module, shape: tuple[int, int, int]) -> float:
    """FLOPs of one image's forward pass, counting convolutions and linear layers (2 per multiply-add; BN,
    activations and pooling are left out, as model-FLOP counts usually do)."""
    total = [0.0]

    def conv(m: nn.Conv2d, _inp: Any, out: torch.Tensor) -> None:
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        total[0] += 2.0 * out[0].numel() * k

    def lin(m: nn.Linear, _inp: Any, out: torch.Tensor) -> None:
        total[0] += 2.0 * m.in_features * m.out_features * (out.numel() // out.shape[-1]) / out.shape[0]

    hooks = [m.register_forward_hook(conv) for m in model.modules() if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_hook(lin) for m in model.modules() if isinstance(m, nn.Linear)]
    was = model.training
    model.eval()
    with torch.no_grad():
        model(runtime.zeros((1, *shape), runtime.device_of(model)))
    model.train(was)
    for h in hooks:
        h.remove()
    return total[0]


def step_flops(forward: float, pgd_steps: int) -> float:
    """Model FLOPs per image of a training step: 3·F for a standard step (forward, input and weight
    gradients); (2·K + 3)·F for a PGD-K AT step (each attack step is a forward and an input-gradient backward
    with the weights frozen, then one standard step on the adversarial batch)."""
    return (2 * pgd_steps + 3) * forward if pgd_steps else 3 * forward


def peak_flops(device: torch.device, override_tflops: float | None) -> tuple[float, str]:
    """The bf16 dense peak of ``device`` (FLOP/s) and where the number comes from."""
    if override_tflops:
        return override_tflops * 1e12, "given by --peak-tflops"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, value in PEAKS.items():
            if key in name:
                return value, f"{name} dense bf16 datasheet peak"
        props = torch.cuda.get_device_properties(device)
        guess = props.multi_processor_count * 1024 * 1.7e9  # a rough tensor-core figure for unknown GPUs
        return guess, f"{name}: unknown, estimated from {props.multi_processor_count} SMs"
    # a CPU's peak depends on its vector units (AVX2, AVX-512, AMX bf16 tiles) in ways no fixed formula gets
    # right: a guess gave MFUs above 100% on this project's CPU. No MFU without a stated peak.
    return 0.0, "no known peak for a CPU: MFU shown only with --peak-tflops"


# --- throughput ------------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_rates(arch: str, batch: int, pgd_steps: int, precision: str, deterministic: bool, device: torch.device,
               iters: int) -> tuple[float, float]:
    """Images/s of a standard training step and of a PGD-``pgd_steps`` AT step (median of 3 timed rounds,
    after a warm-up step that also lets cuDNN autotune when not deterministic)."""
    runtime.set_deterministic(device, deterministic)
    model = runtime.prepare_model(create_model(arch, 10, 3, 32, seed=0), device).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    g = runtime.generator(0, device)
    x = runtime.to_channels_last(runtime.rand((batch, 3, 32, 32), g, device))
    y = runtime.randint(0, 10, batch, g, device)
    idx = runtime.arange(batch, device)

    def rate(objective: Any, n: int) -> float:
        for i in range(n + 1):
            if i == 1:
                _sync(device)
                t0 = time.perf_counter()
            with runtime.autocast(precision, device):
                out = objective.loss(model, x, y, idx, g)
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            opt.step()
        _sync(device)
        return n * batch / (time.perf_counter() - t0)

    std, adv = Standard(), PGDAT(L2Ball(0.5), steps=pgd_steps)
    rounds = [(rate(std, iters * 3), rate(adv, iters)) for _ in range(3)]
    return statistics.median(r[0] for r in rounds), statistics.median(r[1] for r in rounds)


def throughput_table(device: torch.device, small: bool, peak: float) -> list[dict[str, Any]]:
    batches, pgd_steps, iters = ((4, 8), 2, 1) if small else ((128, 512), 10, 3)
    rows = []
    for arch in ARCHS:
        fwd = forward_flops(create_model(arch, 10, 3, 32, seed=0), (3, 32, 32))
        for batch in batches:
            for precision in ("bf16", "fp32"):
                for det in (False, True):
                    st, at = step_rates(arch, batch, pgd_steps, precision, det, device, iters)
                    rows.append({"arch": arch, "batch": batch, "precision": precision, "deterministic": det,
                                 "pgd_steps": pgd_steps, "forward_gflop": fwd / 1e9,
                                 "standard_img_s": st, "pgd_img_s": at,
                                 "standard_mfu": st * step_flops(fwd, 0) / peak if peak > 0 else None,
                                 "pgd_mfu": at * step_flops(fwd, pgd_steps) / peak if peak > 0 else None})
    runtime.set_deterministic(device, False)
    return rows


def table_markdown(rows: list[dict[str, Any]], peak_note: str) -> str:
    k = rows[0]["pgd_steps"] if rows else 10
    head = (f"| model | batch | precision | deterministic | standard img/s | standard MFU | PGD-{k} AT img/s | "
            f"PGD-{k} AT MFU |\n|---|---|---|---|---|---|---|---|\n")
    def pct(v: float | None) -> str:
        return "—" if v is None else f"{100 * v:.1f}%"

    body = "".join(f"| {r['arch']} | {r['batch']} | {r['precision']} | {'on' if r['deterministic'] else 'off'} | "
                   f"{r['standard_img_s']:,.0f} | {pct(r['standard_mfu'])} | {r['pgd_img_s']:,.0f} | "
                   f"{pct(r['pgd_mfu'])} |\n" for r in rows)
    return head + body + f"\nMFU = images/s × model FLOPs per image / peak; peak: {peak_note}.\n"


# --- crafting ---------------------------------------------------------------------------------------------
def synthetic_cifar(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` learnable 32×32×3 uint8 images (a class pattern plus noise) with labels 0..9."""
    rng = np.random.default_rng(seed)
    patterns = rng.integers(0, 256, size=(10, 32, 32, 3))
    y = rng.integers(0, 10, size=n)
    x = np.clip(0.6 * patterns[y] + 0.4 * rng.integers(0, 256, size=(n, 32, 32, 3)), 0, 255).astype(np.uint8)
    return x, y


def craft_times(device: torch.device, small: bool, std_rate_128: dict[str, float]) -> list[dict[str, Any]]:
    """Seconds to craft P1 and P3 with a VGG-16 crafting model (random weights: the time does not depend on
    them), scaled to Table 1's schedule; the crafting model's 150 epochs come from the measured standard
    rate of VGG-16 at batch 128 in the same precision."""
    from delusive.attacks import create_attack, universal

    n, p1_steps, p3_iters, p3_batch = (32, 2, 2, 8) if small else (2560, 100, 50, 256)
    x, y = synthetic_cifar(n, 1)
    data = ArrayDataset(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), y.astype(np.int64), 10, "synthetic-cifar")
    model = runtime.prepare_model(create_model("vgg16", 10, 3, 32, seed=0), device).eval()
    out = []
    for precision in ("bf16", "fp32"):
        for name, params, scale in (
                ("P1", {"steps": p1_steps, "batch_size": 256}, (50_000 / n) * (100 / p1_steps)),
                ("P3", {"iterations": p3_iters, "batch_size": p3_batch}, (500 / p3_iters) * (256 / p3_batch))):
            atk = create_attack(name, **params)
            atk.precision = precision
            universal._MEMO.clear()
            _sync(device)
            t0 = time.perf_counter()
            atk.craft(data, L2Ball(0.5), model, seed=0)
            _sync(device)
            took = time.perf_counter() - t0
            train_min = 150 * 49_000 / std_rate_128[precision] / 60
            out.append({"attack": name, "precision": precision, "measured_s": took, "scale": scale,
                        "generate_min": took * scale / 60, "crafting_model_min": train_min,
                        "table1_min": TABLE1[name]})
    return out


def craft_markdown(rows: list[dict[str, Any]], small: bool) -> str:
    head = ("| attack | precision | measured | × scale | generating (min) | crafting model (min) | total (min) | "
            "paper Table 1 (min) |\n|---|---|---|---|---|---|---|---|\n")
    body = "".join(f"| {r['attack']} | {r['precision']} | {r['measured_s']:.2f}s | {r['scale']:,.0f} | "
                   f"{r['generate_min']:.2f} | {r['crafting_model_min']:.2f} | "
                   f"{r['generate_min'] + r['crafting_model_min']:.2f} | {r['table1_min'][0]} + "
                   f"{r['table1_min'][1]} = {sum(r['table1_min']):.1f} |\n" for r in rows)
    note = ("\nScaled to Table 1's schedule: P1 100 PGD steps on 50,000 images, P3 500 iterations of 256 images "
            "per class, the crafting VGG-16 150 epochs on 49,000 images (from the standard rate at batch 128)"
            + (" — small run: tiny sizes, the scale factors are large, the numbers indicative only" if small else "")
            + ".\n")
    return head + body + note


# --- the full paper-cifar10 cost ---------------------------------------------------------------------------
PAPER = {"seeds": 3, "attacks": 6, "epochs": 150, "train": 49_000, "val": 1_000, "test": 10_000, "at_steps": 7,
         "eval_steps": 20, "eval_restarts": 5, "val_pgd_steps": 10}


def paper_cost(std_rate: float, pgd_rate: float, pgd_steps: int, forward: float, p1_min: float, p3_min: float,
               crafting_model_min: float) -> dict[str, Any]:
    """Hours of the full ``paper-cifar10`` preset on this device from measured rates (VGG-16, batch 128).

    With F the forward FLOPs per image, Φ_ST = std_rate·3F and Φ_AT = pgd_rate·(2K+3)F the FLOP rates achieved
    in standard and PGD-K AT steps, S = 3 seeds, A = 6 attacks, E = 150 epochs, N = 49,000:
      crafting models   S · t_model                         (t_model = E·N / std_rate)
      P1, P2            2 · S · t_P1        P3, P4: S · t_P3 (P4 reuses P3's class perturbations)
      ST cells          A·S · E·N·3F / Φ_ST
      PGD-AT cells      A·S · E·N·(2·7+3)F / Φ_AT
      per-epoch eval    A·S · E·(10,000 + 1,000)·F / Φ_ST  +  A·S · E·1,000·(2·10+1)F / Φ_AT (val robust, AT)
      final eval        2·A·S · 10,000·5·(2·20+1)F / Φ_AT   (PGD-20, 5 restarts, full test set)
    """
    p = PAPER
    phi_st, phi_at = std_rate * 3 * forward, pgd_rate * step_flops(forward, pgd_steps)
    cells = p["attacks"] * p["seeds"]
    parts = {
        "crafting models": p["seeds"] * crafting_model_min * 60,
        "P1+P2 generating": 2 * p["seeds"] * p1_min * 60,
        "P3/P4 generating": p["seeds"] * p3_min * 60,
        "ST cells": cells * p["epochs"] * p["train"] * 3 * forward / phi_st,
        "PGD-AT cells": cells * p["epochs"] * p["train"] * step_flops(forward, p["at_steps"]) / phi_at,
        "per-epoch evaluation": (2 * cells * p["epochs"] * (p["test"] + p["val"]) * forward / phi_st
                                 + cells * p["epochs"] * p["val"] * (2 * p["val_pgd_steps"] + 1) * forward / phi_at),
        "final evaluation": 2 * cells * p["test"] * p["eval_restarts"] * (2 * p["eval_steps"] + 1) * forward / phi_at,
    }
    hours = {k: v / 3600 for k, v in parts.items()}
    return {"hours": hours, "total_hours": sum(hours.values()), "phi_st_tflops": phi_st / 1e12,
            "phi_at_tflops": phi_at / 1e12}


def cost_markdown(cost: dict[str, Any], basis: str) -> str:
    lines = "".join(f"| {k} | {v:.2f} |\n" for k, v in cost["hours"].items())
    return (f"| part of paper-cifar10 | hours |\n|---|---|\n{lines}| **total** | **{cost['total_hours']:.2f}** |\n\n"
            f"Basis: {basis}; achieved Φ_ST = {cost['phi_st_tflops']:.2f} TFLOP/s, Φ_AT = {cost['phi_at_tflops']:.2f} "
            f"TFLOP/s. Formula: `paper_cost` in scripts/gpu_check.py (docs/devices.md).\n")


# --- paper-cifar10-quick through the CLI --------------------------------------------------------------------
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


def real_cifar_available() -> bool:
    from delusive.data import load_dataset

    try:
        load_dataset("cifar10", "test")
        return True
    except (ValueError, OSError):
        return False


def quick_run(device: torch.device, small: bool, out: Path, timeout_s: float) -> dict[str, Any]:
    """``delusive reproduce --preset paper-cifar10-quick`` with attacks clean, P1, P3 and L2C (one short L2C
    trial); the report folder is copied to ``out/quick-report``."""
    work = out / "quick-run"
    sets: list[str] = ["attacks=[clean,P1,P3,L2C]", "attack_params.L2C.trials=1",
                       "attack_params.L2C.classifier_epochs=1", "eval.robust_subset=250"]
    real = not small and real_cifar_available()
    if not real:
        write_cifar_files(work / "data", 1000 if small else 10_000, 200 if small else 2_000)
        sets.append(f"data_root={work / 'data'}")
    if small:
        sets += ["models=[small-cnn]", "crafting.arch=small-cnn", "train_subset=400", "train.epochs=1",
                 "crafting.train.epochs=1", "attack_params.P1.steps=2", "attack_params.P3.iterations=2",
                 "attack_params.L2C.batch_size=200", "attack_params.L2C.classifier=small-cnn",
                 "attack_params.L2C.generator_arch=l2c-unet-small", "eval.robust_subset=50", "eval.steps=2",
                 "eval.attack=apgd-ce", "eval.val_size=0", "crafting.val_size=0"]
    argv = [sys.executable, "-m", "delusive", "reproduce", "--preset", "paper-cifar10-quick", "--out",
            str(work / "run"), "--device", str(device)]
    for s in sets:
        argv += ["--set", s]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "DELUSIVE_PROGRESS": "0",
           "DELUSIVE_CACHE": str(work / "cache")}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout_s)
        code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as e:
        code, stdout, stderr = "timeout", _text(e.stdout), _text(e.stderr)
    took = time.perf_counter() - t0
    (out / "quick-run.log").write_text(f"$ {' '.join(argv)}\n\n{stdout}\n--- stderr ---\n{stderr}", encoding="utf-8")
    report = work / "run" / "report"
    if report.is_dir():
        shutil.copytree(report, out / "quick-report", dirs_exist_ok=True)
    last = (stdout.strip().splitlines() or ["(no output)"])[-1]
    return {"exit": code, "seconds": took, "data": "real CIFAR-10" if real else "synthetic CIFAR-10 files",
            "last_line": last[:200], "report": str(out / "quick-report") if report.is_dir() else None}


def _text(b: bytes | str | None) -> str:
    return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")


# --- the check ------------------------------------------------------------------------------------------
def run_gpu_tests(out: Path, timeout_s: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    argv = [sys.executable, "-m", "pytest", "-q", "-rfE", "--durations=15", "-m", "gpu", "-p", "no:cacheprovider",
            str(ROOT / "tests")]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=timeout_s,
                              env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        code, text = proc.returncode, proc.stdout + "\n" + proc.stderr
    except subprocess.TimeoutExpired as e:
        code, text = "timeout", _text(e.stdout) + "\n" + _text(e.stderr)
    (out / "gpu-tests.txt").write_text(text, encoding="utf-8")
    tail = next((ln for ln in reversed(text.strip().splitlines()) if " in " in ln and ("passed" in ln or "skipped"
                                                                                      in ln or "failed" in ln)),
                "(no summary)")
    return {"exit": code, "summary": tail.strip("= "), "seconds": time.perf_counter() - t0}


def output_dir(arg: str | None) -> Path:
    out = Path(arg or os.environ.get("OUT") or f"gpu-check-{time.strftime('%Y%m%d-%H%M%S')}")
    if out.exists() and not out.is_dir():
        raise CheckError(f"output folder {out}: exists and is not a directory (give --out or OUT a folder)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CheckError(f"output folder {out}: {e.strerror or e}") from None
    return out


def section(name: str, results: dict[str, Any], fn: Callable[[], Any]) -> Any:
    """Run one part of the check; a failure is recorded (with its traceback in the JSON) and the rest goes on,
    so one broken part does not cost the numbers of the others."""
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - reported in the table and the JSON, the check continues
        results.setdefault("errors", {})[name] = traceback.format_exc()
        print(f"gpu_check: {name} failed: {type(e).__name__}: {' '.join(str(e).split())[:300]}", file=sys.stderr)
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="gpu_check.py", description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    ap.add_argument("--small", action="store_true", help="tiny sizes: a CPU smoke run in under three minutes")
    ap.add_argument("--skip-tests", action="store_true", help="do not run the gpu-marked tests")
    ap.add_argument("--skip-quick", action="store_true", help="do not run paper-cifar10-quick")
    ap.add_argument("--out", default=None, help="output folder (default $OUT, else gpu-check-<time>)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="peak for MFU (default: by device name)")
    args = ap.parse_args(argv)
    try:
        device = runtime.resolve_device(args.device)
        out = output_dir(args.out)
    except (ValueError, CheckError) as e:
        print(f"gpu-check: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    return run_check(args, device, out)


def run_check(args: argparse.Namespace, device: torch.device, out: Path) -> int:
    t_all = time.perf_counter()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    peak, peak_note = peak_flops(device, args.peak_tflops)
    res: dict[str, Any] = {"device": str(device), "device_name": name, "torch": torch.__version__,
                           "python": platform.python_version(), "small": args.small, "peak_flops": peak}
    md = [f"# gpu-check ({'small, ' if args.small else ''}{device}: {name}; torch {torch.__version__}, "
          f"python {platform.python_version()})\n"]
    tests_ok = True
    if not args.skip_tests:
        t = section("gpu tests", res, lambda: run_gpu_tests(out, 180 if args.small else 150))
        res["gpu_tests"] = t
        tests_ok = t is not None and t["exit"] in (0, 5)
        md.append(f"## gpu tests\n\n{t['summary'] if t else 'failed to run'} (exit {t['exit'] if t else '?'}, "
                  f"{t['seconds'] if t else 0:.0f}s; output in gpu-tests.txt)\n")

    rows = section("throughput", res, lambda: throughput_table(device, args.small, peak)) or []
    res["throughput"] = rows
    md.append("## Throughput and model-FLOP utilisation\n\n" + (table_markdown(rows, peak_note) if rows else
                                                                 "failed (see gpu-check.json)\n"))

    def rate(arch: str, batch: int, precision: str, key: str) -> float:
        return next(r[key] for r in rows if r["arch"] == arch and r["batch"] == batch and
                    r["precision"] == precision and not r["deterministic"])

    b_small = min((r["batch"] for r in rows), default=128)
    craft: list[dict[str, Any]] = []
    if rows:
        std128 = {p: rate("vgg16", b_small, p, "standard_img_s") for p in ("bf16", "fp32")}
        craft = section("crafting", res, lambda: craft_times(device, args.small, std128)) or []
    res["crafting"] = craft
    md.append("## P1 and P3 crafting, scaled to Table 1\n\n" + (craft_markdown(craft, args.small) if craft else
                                                                 "failed (see gpu-check.json)\n"))

    quick = None
    if not args.skip_quick:
        quick = section("paper-cifar10-quick", res, lambda: quick_run(device, args.small, out,
                                                                      170 if args.small else 200))
        res["quick"] = quick
        md.append("## paper-cifar10-quick through the CLI\n\n" + (
            f"exit {quick['exit']} in {quick['seconds']:.0f}s on {quick['data']}: {quick['last_line']}\n\n"
            f"Report kept in {quick['report']}; log in quick-run.log.\n" if quick else "failed to run\n"))

    if rows and craft:
        def cost() -> dict[str, Any]:
            fwd = next(r["forward_gflop"] for r in rows if r["arch"] == "vgg16") * 1e9
            pick = {c["attack"]: c for c in craft if c["precision"] == "bf16"}
            return paper_cost(rate("vgg16", b_small, "bf16", "standard_img_s"), rate("vgg16", b_small, "bf16",
                                                                                     "pgd_img_s"),
                              rows[0]["pgd_steps"], fwd, pick["P1"]["generate_min"], pick["P3"]["generate_min"],
                              pick["P1"]["crafting_model_min"])

        c = section("cost", res, cost)
        res["paper_cost"] = c
        if c:
            md.append("## Full paper-cifar10 cost from these rates\n\n" + cost_markdown(
                c, f"VGG-16, batch {b_small}, bf16, deterministic off, {device}"))
    total = time.perf_counter() - t_all
    res["total_s"] = total
    md.append(f"Total wall time: {total:.0f}s. Raw numbers: gpu-check.json.\n")
    if res.get("errors"):
        md.append("## Errors\n\n" + "".join(f"- {k}: see gpu-check.json\n" for k in res["errors"]))
    text = "\n".join(md)
    print(text)
    (out / "gpu-check.md").write_text(text, encoding="utf-8")
    (out / "gpu-check.json").write_text(json.dumps(res, indent=1, default=str), encoding="utf-8")
    print(f"gpu_check: everything is in {out}", file=sys.stderr)
    failed = bool(res.get("errors")) or not tests_ok or (quick is not None and quick["exit"] != 0)
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
