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


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:160]
    except OSError:
        return "?"


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


SPEC = """
name: kill
datasets: [synthetic]
train_subset: 200
attacks: [clean, P5]
attack_budget: {norm: linf, eps: '0.2'}
defenses: [{name: standard, label: ST}]
models: [small-cnn]
train: {epochs: 6, batch_size: 32}
eval: {attack: pgd, steps: 1, robust_subset: 10, val_size: 0, epoch_steps: 1, epoch_subset: 10}
seeds: [0]
device: cpu
"""


@pytest.mark.slow
def test_killed_ray_driver_then_rerun_completes_with_the_local_results(tmp_path):
    """kill -9 of a Ray sweep's driver mid-sweep: the local cluster it started goes with it, and the rerun runs
    what is missing (a cell from its epoch checkpoint) to the records of an uninterrupted local sweep."""
    import json

    (tmp_path / "spec.yaml").write_text(SPEC)
    env = {**os.environ, "DELUSIVE_PROGRESS": "0", "OMP_NUM_THREADS": "1", "DELUSIVE_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    base = [sys.executable, "-m", "delusive", "sweep", "spec.yaml"]
    local = subprocess.run([*base, "--out", "local"], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=300)
    assert local.returncode == 0, local.stderr[-3000:]
    proc = subprocess.Popen([*base, "--out", "ray", "--executor", "ray"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not list((tmp_path / "ray").glob("cells/*/checkpoint.pt")):
        time.sleep(0.05)
    tree = _descendants(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(list((tmp_path / "ray").glob("cells/*/result.json"))) < 2, "the sweep finished before the kill"
    deadline = time.time() + 30
    while time.time() < deadline and any(_running(p) for p in tree):
        time.sleep(0.2)
    alive = [p for p in tree if _running(p)]
    names = [_cmdline(p) for p in alive]
    for p in alive:  # never leave them running, whatever the outcome
        _kill_tree(p)
    # Ray's own idle agents of a local cluster may linger after kill -9 of the driver (Ray's behaviour; they
    # hold no work and `ray stop` ends them); no worker may go on running a cell, and the GCS must be gone
    working = [n for n in names if not n.startswith(("ray::DashboardAgent", "ray::RuntimeEnvAgent"))]
    assert not working, f"{len(working)} Ray process(es) outlived their driver: {working}"
    again = subprocess.run([*base, "--out", "ray", "--executor", "ray"], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=400)
    assert again.returncode == 0, again.stderr[-3000:]

    def records(d: str) -> dict[str, dict]:
        out = {}
        for p in (tmp_path / d / "cells").glob("*/result.json"):
            r = json.loads(p.read_text())
            out[r["cell_id"]] = {**{k: r[k] for k in ("natural_accuracy", "robust_accuracy", "last_natural_accuracy")},
                                 "train_loss": [h["train_loss"] for h in r["history"]]}
        return out

    assert records("ray") == records("local") and len(records("local")) == 2
