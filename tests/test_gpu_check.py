"""``scripts/gpu-check.sh --device cpu --small`` runs end to end here, so the GPU check cannot rot: it prints the
throughput/MFU table, the crafting times scaled to Table 1, the quick CLI run (its report kept) and the full
paper-cifar10 cost, all under one folder; its user errors are one line, no traceback (RELIABILITY-CASES-2
G.01-G.07)."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu-check.sh"


def _run(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHON": sys.executable, **(env or {})}, cwd=ROOT)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-check")
    proc = _run("--device", "cpu", "--small", env={"OUT": str(out)})
    return proc, out


def test_small_cpu_check_prints_the_table_and_scaled_crafting_times(small_run):
    proc, out = small_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = (out / "gpu-check.md").read_text()
    assert text.strip() in proc.stdout  # printed and written
    for needle in ("## gpu tests", "standard img/s", "standard MFU", "PGD-2 AT img/s", "PGD-2 AT MFU",
                   "## P1 and P3 crafting, scaled to Table 1", "25.9 + 12.6 = 38.5", "25.9 + 4.6 = 30.5",
                   "## paper-cifar10-quick through the CLI", "exit 0", "## Full paper-cifar10 cost", "**total**"):
        assert needle in text, needle
    rows = [ln for ln in text.splitlines() if ln.startswith(("| resnet18 |", "| vgg16 |"))]
    combos = {tuple(c.strip() for c in ln.split("|")[1:5]) for ln in rows}
    assert combos == {(a, b, p, d) for a in ("resnet18", "vgg16") for b in ("4", "8") for p in ("bf16", "fp32")
                      for d in ("on", "off")}
    data = json.loads((out / "gpu-check.json").read_text())
    assert all(r["standard_img_s"] > 0 and r["pgd_img_s"] > 0 for r in data["throughput"])
    # a CPU has no known peak: no MFU is claimed (a guessed peak gave MFUs above 100% here)
    assert all(r["pgd_mfu"] is None for r in data["throughput"]) and "| — |" in text
    assert {(c["attack"], c["precision"]) for c in data["crafting"]} == {("P1", "bf16"), ("P1", "fp32"),
                                                                         ("P3", "bf16"), ("P3", "fp32")}
    assert data["paper_cost"]["total_hours"] > 0
    assert (out / "quick-report" / "table.md").exists()  # the quick run's report is kept
    assert (out / "gpu-tests.txt").exists() and (out / "quick-run.log").exists()


def _gpu_check_module():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_flop_count_and_cost_formula():
    mod = _gpu_check_module()
    from delusive.models import create_model

    fwd = mod.forward_flops(create_model("vgg16", 10, 3, 32, seed=0), (3, 32, 32))
    assert 0.6e9 < fwd < 0.65e9  # VGG-16 on CIFAR: 0.31 GMAC per image, i.e. 1.88 GFLOP per training step (3F)
    assert mod.step_flops(fwd, 0) == 3 * fwd and mod.step_flops(fwd, 10) == 23 * fwd
    one = mod.paper_cost(1000.0, 100.0, 10, fwd, 1.0, 1.0, 10.0)
    two = mod.paper_cost(2000.0, 200.0, 10, fwd, 1.0, 1.0, 10.0)
    compute = ("ST cells", "PGD-AT cells", "per-epoch evaluation", "final evaluation")
    for k in compute:  # twice the rate: half the time
        assert two["hours"][k] == pytest.approx(one["hours"][k] / 2)
    # ST cells: 18 cells × 150 epochs × 49,000 images at 1000 images/s
    assert one["hours"]["ST cells"] == pytest.approx(18 * 150 * 49_000 / 1000 / 3600)


@pytest.mark.parametrize("args, env, needle", [
    pytest.param(["--device", "bogus"], {}, "device: expected", id="G.02-bogus-device"),
    pytest.param(["--device", "cuda:7"], {}, "cuda:7", id="G.03-cuda7"),
    pytest.param(["--device", "cpu", "--small", "--skip-tests", "--device", "mps"], {}, "mps", id="G.07-mps"),
])
def test_bad_device_is_one_line_without_traceback(args, env, needle):
    if "cuda:7" in args and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    proc = _run(*args, env=env, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu-check: error:") and needle in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")
def test_default_cuda_without_a_gpu_is_one_line():  # G.01
    proc = _run(timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "sees no CUDA device" in lines[0], proc.stderr


def test_output_path_that_is_a_file_is_refused_before_any_work(tmp_path):  # G.06
    target = tmp_path / "gpu_out_file"
    target.write_text("keep me")
    proc = _run("--device", "cpu", "--small", "--skip-tests", env={"OUT": str(target)}, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a directory" in lines[0], proc.stderr
    assert target.read_text() == "keep me"
