"""``scripts/gpu-check.sh --device cpu --small`` runs end to end here, so the GPU check cannot rot."""

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_small_on_cpu_writes_its_table(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path)}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu-check.sh"), "--device", "cpu", "--small"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = (tmp_path / "gpu-check.md").read_text()
    for row in ("| gpu tests |", "channels_last=on", "channels_last=off", "bf16", "fp32", "crafting on 500",
                "| paper-cifar10-quick on synthetic CIFAR-10 files | exit 0"):
        assert row in table, row
