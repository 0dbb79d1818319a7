"""One training run across processes (torchrun, DistributedDataParallel over gloo on the CPU): two ranks, each
training on its half of every global batch, end with the weights one process gets from the same global batch
and seed, evaluate identically, and only rank 0 writes the checkpoint."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch

from delusive.cli.main import main
from delusive.models import load_checkpoint, load_model

# 200 images in batches of 64: the last global batch (8) checks the weighting of uneven shards too
ARGS = ["train", "--dataset", "synthetic", "--model", "mlp", "--train-subset", "200", "--epochs", "2",
        "--eval-attack", "pgd", "--eval-steps", "1", "--robust-subset", "20", "--val-size", "0", "--device", "cpu",
        "--precision", "fp32", "--defense", "standard", "--seed", "3"]


def _weights(d: Path) -> dict[str, torch.Tensor]:
    model, _ = load_model(d)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def _torchrun(out: Path) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node 2 -m delusive train ...``; the whole process group is killed
    if it outlives the timeout (a hung rank must not outlive the test)."""
    env = {**os.environ, "DELUSIVE_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "delusive", *ARGS, "--batch-size", "64", "--out", str(out)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=150)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def test_two_gloo_ranks_match_one_process(tmp_path):
    ddp = _torchrun(tmp_path / "ddp")
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert main([*ARGS, "--batch-size", "64", "--out", str(tmp_path / "one")]) == 0
    # control: each rank's 32 images taken as the whole batch is a different training run
    assert main([*ARGS, "--batch-size", "32", "--out", str(tmp_path / "half")]) == 0

    two, one, half = (_weights(tmp_path / d) for d in ("ddp", "one", "half"))
    assert _max_diff(two, one) < 1e-5
    assert _max_diff(half, one) > 1e-3

    m2, m1 = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("ddp", "one"))
    assert m2["natural_accuracy"] == m1["natural_accuracy"]
    assert m2["robust_accuracy"] == m1["robust_accuracy"]
    h2, h1 = (json.loads((tmp_path / d / "history.json").read_text()) for d in ("ddp", "one"))
    assert [r["train_accuracy"] for r in h2] == [r["train_accuracy"] for r in h1]  # summed over both ranks
    assert abs(h2[-1]["train_loss"] - h1[-1]["train_loss"]) < 1e-5
    # the checkpoint rank 0 wrote is the one a resume starts from: same epoch and weights
    ck = load_checkpoint(tmp_path / "ddp" / "checkpoint.pt")
    assert int(ck["epoch"]) == 1
    assert _max_diff({k: v.float() for k, v in ck["model"].items()}, two) == 0.0
    # a rerun resumes from that checkpoint (both ranks) and leaves the weights as they were
    again = _torchrun(tmp_path / "ddp")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("resuming from") == 2
    assert _max_diff(_weights(tmp_path / "ddp"), two) == 0.0
