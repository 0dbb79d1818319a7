"""kill -9 faults on the newer surfaces (issue 21 point 4): a torchrun training killed mid-run, then rerun,
ends with the weights of an uninterrupted run. (L2C, P1-P4, a local sweep and a Ray worker have their own
kill tests: tests/test_l2c.py, tests/test_attacks.py, tests/test_experiments.py, tests/test_ray_executor.py;
docs/reliability.md lists them.)"""

from __future__ import annotations

import contextlib
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
EPOCHS = 12
ARGS = ["train", "--dataset", "synthetic", "--model", "small-cnn", "--train-subset", "512", "--epochs", str(EPOCHS),
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
        _kill_tree(proc.pid)
        _, err = proc.communicate()
    return proc.returncode, err


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc), children first."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every process below it at once, as kill -9 of a whole job."""
    for p in [pid, *_descendants(pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)


def _weights(out: Path) -> dict[str, torch.Tensor]:
    state = torch.load(out / "model.pt", map_location="cpu", weights_only=True)
    return {k: v.float() for k, v in state.items()}


@pytest.mark.slow
def test_killed_torchrun_resumes_to_the_same_weights(tmp_path):
    code, err = _finish(_start(tmp_path / "ref"))
    assert code == 0, err[-3000:]
    out = tmp_path / "killed"
    proc = _start(out)
    deadline = time.time() + 200
    while time.time() < deadline and proc.poll() is None and not (out / "checkpoint.pt").exists():
        time.sleep(0.01)
    ranks = _descendants(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)  # kill -9 of the launcher: its ranks must not train on
    proc.communicate()
    deadline = time.time() + 20
    while time.time() < deadline and any(_running(p) for p in ranks):
        time.sleep(0.05)
    alive = [p for p in ranks if _running(p)]
    for p in alive:  # a failing check must not leave them running
        _kill_tree(p)
    assert ranks and not alive, f"ranks {alive} outlived their launcher"
    epoch = int(load_checkpoint(out / "checkpoint.pt")["epoch"])
    assert epoch < EPOCHS - 1 and not (out / "metrics.json").exists(), "killed too late: nothing to resume"
    code, err = _finish(_start(out))
    assert code == 0, err[-3000:]
    assert err.count("resuming from") == 2  # both ranks resumed from rank 0's checkpoint
    ref, again = _weights(tmp_path / "ref"), _weights(out)
    assert max(float((ref[k] - again[k]).abs().max()) for k in ref) == 0.0
