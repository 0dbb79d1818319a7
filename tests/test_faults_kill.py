"""kill -9 faults on the newer surfaces (issue 21 point 4): a torchrun training killed mid-run, then rerun,
ends with the weights of an uninterrupted run. (L2C, P1-P4, a local sweep and a Ray worker have their own
kill tests: tests/test_l2c.py, tests/test_attacks.py, tests/test_experiments.py, tests/test_ray_executor.py;
docs/reliability.md lists them.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from delusive.models import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["train", "--dataset", "synthetic", "--model", "mlp", "--train-subset", "256", "--epochs", "4",
        "--batch-size", "32", "--robust-subset", "20", "--eval-steps", "1", "--eval-attack", "pgd",
        "--device", "cpu", "--precision", "fp32", "--val-size", "0"]


def _start(out: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "DELUSIVE_PROGRESS": "0", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                             "-m", "delusive", *ARGS, "--out", str(out)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _finish(proc: subprocess.Popen[str], timeout: float = 240) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
    return proc.returncode, err


def _weights(out: Path) -> dict[str, torch.Tensor]:
    state = torch.load(out / "model.pt", map_location="cpu", weights_only=True)
    return {k: v.float() for k, v in state.items()}


@pytest.mark.slow
def test_killed_torchrun_resumes_to_the_same_weights(tmp_path):
    code, err = _finish(_start(tmp_path / "ref"))
    assert code == 0, err[-3000:]
    out = tmp_path / "killed"
    proc = _start(out)
    deadline, epoch = time.time() + 200, -1
    while time.time() < deadline and proc.poll() is None:
        try:
            epoch = int(load_checkpoint(out / "checkpoint.pt")["epoch"])
        except (OSError, ValueError, KeyError):
            epoch = -1
        if epoch >= 0:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both ranks, as kill -9 of the job
    proc.communicate()
    assert 0 <= epoch < 3 and not (out / "metrics.json").exists(), "killed too late: nothing to resume"
    code, err = _finish(_start(out))
    assert code == 0, err[-3000:]
    assert err.count("resuming from") == 2  # both ranks resumed from rank 0's checkpoint
    ref, again = _weights(tmp_path / "ref"), _weights(out)
    assert max(float((ref[k] - again[k]).abs().max()) for k in ref) == 0.0
