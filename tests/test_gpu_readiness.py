"""The fixes of issue 20 that the CPU can check: the GPU run's test collection without Ray, resumes across
``--compile`` and across devices, the universal-perturbation memo per device, the DDP empty shard, torchrun
refused for sweeps, Ray's GPU request, the deterministic switch, the checkpoint policy and evaluation data kept
on the device. Each test fails on the code before the fix."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from delusive import runtime
from delusive.data import make_synthetic
from delusive.defenses import FreeAT, Standard, TrainConfig, fit
from delusive.models import create_model, load_checkpoint
from delusive.threat import LinfBall

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny():
    return make_synthetic(96, num_classes=4, shape=(1, 8, 8), seed=0)


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    inner = getattr(model, "_orig_mod", model)
    return {k: v.detach().clone() for k, v in inner.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- collection without Ray (the GPU machine has none) -------------------------------------------------------
_HIDE_RAY = """
import sys
sys.modules['ray'] = None  # `import ray` now raises ImportError, as where Ray is not installed
import pytest
sys.exit(pytest.main(['--collect-only', '-q', '-m', 'gpu', '-p', 'no:cacheprovider', {tests!r}]))
"""


def test_gpu_tests_collect_without_ray():
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "DELUSIVE_PROGRESS": "0"}
    proc = subprocess.run([sys.executable, "-c", _HIDE_RAY.format(tests=str(ROOT / "tests"))], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "test_gpu.py" in proc.stdout  # the gpu tests themselves were collected
    assert "error" not in proc.stdout.splitlines()[-1].lower()


class _Stop(Exception):
    pass


def _stop_at(stop_epoch: int):  # type: ignore[no-untyped-def]
    """An eval_fn that interrupts the run in epoch ``stop_epoch`` (before its checkpoint), like a kill."""

    def eval_fn(model, epoch):  # type: ignore[no-untyped-def]
        if epoch == stop_epoch:
            raise _Stop
        return {}

    return eval_fn


# --- --compile checkpoints resume both ways ------------------------------------------------------------------
def _compiled(model: torch.nn.Module) -> torch.nn.Module:
    return torch.compile(model, backend="eager")  # the wrapper (and its _orig_mod keys) without a compiler


@pytest.mark.parametrize("first_compiled", [True, False], ids=["compiled-then-plain", "plain-then-compiled"])
def test_compile_checkpoint_resumes_either_way(tiny, tmp_path, first_compiled):
    cfg = TrainConfig(epochs=2, batch_size=32, lr=0.05)
    ref = create_model("mlp", 4, 1, 8, seed=0)
    fit(ref, tiny, Standard(), cfg)

    m1 = create_model("mlp", 4, 1, 8, seed=0)
    with pytest.raises(_Stop):
        fit(_compiled(m1) if first_compiled else m1, tiny, Standard(), cfg, checkpoint_dir=tmp_path,
            eval_fn=_stop_at(2))
    keys = load_checkpoint(tmp_path / "checkpoint.pt")["model"].keys()
    assert not any(k.startswith("_orig_mod.") for k in keys), list(keys)
    m2 = create_model("mlp", 4, 1, 8, seed=0)
    res = fit(m2 if first_compiled else _compiled(m2), tiny, Standard(), cfg, checkpoint_dir=tmp_path)
    assert res.resumed_from_epoch == 1
    assert _same(_weights(m2), _weights(ref))


def test_old_prefixed_checkpoint_still_resumes(tiny, tmp_path):
    cfg = TrainConfig(epochs=2, batch_size=32, lr=0.05)
    m = create_model("mlp", 4, 1, 8, seed=0)
    with pytest.raises(_Stop):
        fit(m, tiny, Standard(), cfg, checkpoint_dir=tmp_path, eval_fn=_stop_at(2))
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    state["model"] = {f"_orig_mod.{k}": v for k, v in state["model"].items()}  # as --compile runs saved it
    torch.save(state, tmp_path / "checkpoint.pt")
    m2 = create_model("mlp", 4, 1, 8, seed=0)
    res = fit(m2, tiny, Standard(), cfg, checkpoint_dir=tmp_path)
    assert res.resumed_from_epoch == 1


# --- free AT keeps its perturbation across a resume ----------------------------------------------------------

def test_free_at_interrupted_and_resumed_matches_uninterrupted(tiny, tmp_path):
    cfg = TrainConfig(epochs=3, batch_size=40, lr=0.05)  # 96 = 40 + 40 + 16: the carried δ changes size
    ref = create_model("mlp", 4, 1, 8, seed=0)
    fit(ref, tiny, FreeAT(LinfBall(0.1), replays=2), cfg)

    m = create_model("mlp", 4, 1, 8, seed=0)
    with pytest.raises(_Stop):
        fit(m, tiny, FreeAT(LinfBall(0.1), replays=2), cfg, checkpoint_dir=tmp_path, eval_fn=_stop_at(3))
    assert load_checkpoint(tmp_path / "checkpoint.pt")["objective"]["delta"].abs().sum() > 0
    m2 = create_model("mlp", 4, 1, 8, seed=0)
    res = fit(m2, tiny, FreeAT(LinfBall(0.1), replays=2), cfg, checkpoint_dir=tmp_path)
    assert res.resumed_from_epoch == 2
    assert _same(_weights(m2), _weights(ref))
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 2


def test_free_at_moves_a_restored_buffer_to_the_batch_device():
    obj = FreeAT(LinfBall(0.1), replays=2)
    restored = torch.full((7, 1, 4, 4), 0.05)  # a checkpoint's δ: on the CPU, 7 rows
    obj.load_state_dict({"delta": restored})
    x = torch.empty((5, 1, 4, 4), device="meta")  # a batch on another device
    buf = obj._buffer(x)
    assert buf.device.type == "meta"
    assert buf.shape[0] == 7  # the restored rows were kept (moved), not replaced by zeros shaped like the batch


def test_free_at_restored_buffer_keeps_its_values_on_the_same_device():
    obj = FreeAT(LinfBall(0.1), replays=2)
    obj.load_state_dict({"delta": torch.full((3, 1, 2, 2), 0.05)})
    buf = obj._buffer(torch.zeros((3, 1, 2, 2)))
    assert torch.equal(buf, torch.full((3, 1, 2, 2), 0.05))


# --- the universal-perturbation memo is per device -----------------------------------------------------------
def test_universal_memo_is_keyed_by_device(monkeypatch, tiny):
    from delusive.attacks import create_attack, universal

    calls: list[int] = []

    def fake(model, x_all, k, threat, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return torch.zeros((k, *x_all.shape[1:]))

    monkeypatch.setattr(universal, "universal_class_deltas", fake)
    universal._MEMO.clear()
    model = create_model("mlp", 4, 1, 8, seed=0)
    atk = create_attack("P3", iterations=1)
    atk.craft(tiny, LinfBall(0.1), model, seed=0)
    atk.craft(tiny, LinfBall(0.1), model, seed=0)
    assert len(calls) == 1  # same device: memoised (P3 and P4 share it)
    devices = iter([torch.device("meta")] * 4)
    real = runtime.device_of
    monkeypatch.setattr(runtime, "device_of", lambda m: next(devices, real(m)))
    atk.craft(tiny, LinfBall(0.1), model, seed=0)
    assert len(calls) == 2  # another device computes its own
    universal._MEMO.clear()


# --- DDP: an empty last shard contributes no loss and no NaN -------------------------------------------------
def test_empty_ddp_shard_trains_like_one_process(tmp_path):
    from delusive.cli.main import main
    from test_ddp import ARGS, _max_diff
    from test_ddp import _weights as saved_weights

    args = [a if a != "200" else "193" for a in ARGS]  # 193 = 3·64 + 1: rank 1's part of the last batch is empty
    env = {**os.environ, "DELUSIVE_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "delusive",
           *args, "--batch-size", "64", "--out", str(tmp_path / "ddp")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=150)
    except subprocess.TimeoutExpired:  # a hung rank (the deadlock this guards against) must not outlive the test
        os.killpg(proc.pid, signal.SIGKILL)
        _, stderr = proc.communicate()
    assert proc.returncode == 0, stderr[-3000:]
    assert main([*args, "--batch-size", "64", "--out", str(tmp_path / "one")]) == 0
    assert _max_diff(saved_weights(tmp_path / "ddp"), saved_weights(tmp_path / "one")) < 1e-5


# --- torchrun with sweep / reproduce -------------------------------------------------------------------------
@pytest.mark.parametrize("command", [["sweep", "spec.yaml"], ["reproduce", "--preset", "demo"]])
def test_sweep_and_reproduce_refuse_torchrun(monkeypatch, capsys, tmp_path, command):
    from delusive.cli.main import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SystemExit) as e:
        main([*command, "--out", str(tmp_path / "o")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "torchrun" in err[0] and err[0].startswith("delusive: error:"), err
    assert not (tmp_path / "o").exists()


# --- Ray asks for a GPU per cell on CUDA ---------------------------------------------------------------------
def test_ray_tasks_request_a_gpu_when_the_spec_runs_on_cuda():
    from dataclasses import replace

    from delusive.experiments.executors.ray_cluster import task_resources
    from delusive.experiments.spec import load_preset

    spec = load_preset("demo")
    assert task_resources(replace(spec, device="cuda"))["num_gpus"] == 1.0
    assert task_resources(replace(spec, device="cuda:0"))["num_gpus"] == 1.0
    assert task_resources(replace(spec, device="cpu"))["num_gpus"] == 0.0
    explicit = replace(spec, device="cuda", resources={"cpus_per_cell": 2.0, "gpus_per_cell": 0.5})
    assert task_resources(explicit) == {"num_cpus": 2.0, "num_gpus": 0.5}


# --- deterministic mode is an option, recorded ---------------------------------------------------------------
def test_deterministic_is_an_option_passed_through_and_recorded(monkeypatch, tmp_path):
    from delusive.cli.main import main

    calls: list[tuple[str, bool]] = []
    real = runtime.set_deterministic
    monkeypatch.setattr(runtime, "set_deterministic", lambda d, enabled=True: (calls.append((str(d), enabled)),
                                                                              real(d, enabled)))
    base = ["train", "--dataset", "synthetic", "--model", "mlp", "--train-subset", "60", "--epochs", "1",
            "--eval-attack", "pgd", "--eval-steps", "1", "--robust-subset", "10", "--val-size", "0", "--device",
            "cpu", "--precision", "fp32"]
    assert main([*base, "--out", str(tmp_path / "fast")]) == 0
    assert main([*base, "--deterministic", "--out", str(tmp_path / "exact")]) == 0
    assert calls == [("cpu", False), ("cpu", True)]
    fast, exact = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("fast", "exact"))
    assert fast["deterministic"] is False and exact["deterministic"] is True
    assert fast["natural_accuracy"] == exact["natural_accuracy"]  # the CPU is exact either way


def test_spec_deterministic_key_is_recorded_not_identity():
    from dataclasses import replace

    from delusive.experiments.spec import SpecError, expand, load_preset

    spec = load_preset("demo", ["deterministic=true", "checkpoint_every=5", "checkpoint_minutes=10"])
    assert spec.deterministic is True and spec.checkpoint_every == 5 and spec.checkpoint_minutes == 10.0
    plain = replace(spec, deterministic=False, checkpoint_every=1, checkpoint_minutes=None)
    assert [c.cell_id for c in expand(spec)] == [c.cell_id for c in expand(plain)]
    with pytest.raises(SpecError, match="deterministic"):
        load_preset("demo", ["deterministic=3"])
    with pytest.raises(SpecError, match="checkpoint_every"):
        load_preset("demo", ["checkpoint_every=0"])


def test_fast_mode_turns_autotuning_and_tf32_on_and_exact_mode_off(monkeypatch):
    fake = torch.device("cuda", 0)  # the switches are plain flags: settable without a GPU
    saved = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
             torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        runtime.set_deterministic(fake, False)
        assert torch.backends.cudnn.benchmark and torch.backends.cuda.matmul.allow_tf32
        assert not torch.backends.cudnn.deterministic
        runtime.set_deterministic(fake, True)
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    finally:
        (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
         torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) = saved


# --- checkpoints every N epochs, exact resumes ---------------------------------------------------------------
def test_checkpoint_every_n_epochs_and_at_the_end_resumes_exactly(monkeypatch, tiny, tmp_path):
    from delusive.defenses import loop

    saved: list[int] = []
    real = loop.save_checkpoint
    monkeypatch.setattr(loop, "save_checkpoint", lambda p, s: (saved.append(int(s["epoch"])), real(p, s)))
    cfg = TrainConfig(epochs=5, batch_size=32, lr=0.05)
    ref = create_model("mlp", 4, 1, 8, seed=0)
    fit(ref, tiny, Standard(), cfg, checkpoint_dir=tmp_path / "ref", checkpoint_every=2)
    assert saved == [1, 3, 4]  # after epochs 2 and 4, and the last

    saved.clear()
    m = create_model("mlp", 4, 1, 8, seed=0)
    with pytest.raises(_Stop):
        fit(m, tiny, Standard(), cfg, checkpoint_dir=tmp_path / "cut", eval_fn=_stop_at(4), checkpoint_every=2)
    assert saved == [1]
    m2 = create_model("mlp", 4, 1, 8, seed=0)
    res = fit(m2, tiny, Standard(), cfg, checkpoint_dir=tmp_path / "cut", checkpoint_every=2)
    assert res.resumed_from_epoch == 2 and [r["epoch"] for r in res.history] == [1, 2, 3, 4, 5]
    assert _same(_weights(m2), _weights(ref))


def test_checkpoint_options_are_validated(tiny):
    with pytest.raises(ValueError, match="checkpoint_every"):
        fit(create_model("mlp", 4, 1, 8), tiny, Standard(), TrainConfig(epochs=1), checkpoint_every=0)


# --- evaluation data stays on the device ---------------------------------------------------------------------
def test_per_epoch_evaluation_does_not_recopy_the_test_split(monkeypatch, tiny, tmp_path):
    from delusive.data import ArrayDataset
    from delusive.experiments.pipeline import EvalPlan, RunOptions, train_and_evaluate

    counts = {"n": 0}
    real = ArrayDataset.tensors

    def counting(self):  # type: ignore[no-untyped-def]
        if self.name == "counted":
            counts["n"] += 1
        return real(self)

    monkeypatch.setattr(ArrayDataset, "tensors", counting)
    from dataclasses import replace

    test = replace(make_synthetic(40, num_classes=4, shape=(1, 8, 8), seed=0, sample_seed=1), name="counted")
    train_and_evaluate("mlp", tiny, test, Standard(), TrainConfig(epochs=4, batch_size=32),
                       EvalPlan(norm="linf", eps="0.1", attack="pgd", steps=1, robust_subset=10, val_size=0,
                                epoch_every=100, epoch_subset=10), tmp_path, RunOptions(device="cpu"))
    assert counts["n"] <= 2  # once for the epochs (kept on the device), once for the final evaluation


def test_checkpoint_minutes_saves_between_the_every_n_epochs(monkeypatch, tiny):
    from delusive.defenses import loop

    saved: list[int] = []
    monkeypatch.setattr(loop, "save_checkpoint", lambda p, s: saved.append(int(s["epoch"])))
    cfg = TrainConfig(epochs=3, batch_size=32, lr=0.05)
    fit(create_model("mlp", 4, 1, 8, seed=0), tiny, Standard(), cfg, checkpoint_dir="unused", checkpoint_every=100)
    assert saved == [2]  # only the end
    saved.clear()
    fit(create_model("mlp", 4, 1, 8, seed=0), tiny, Standard(), cfg, checkpoint_dir="unused2", checkpoint_every=100,
        checkpoint_minutes=1e-9)
    assert saved == [0, 1, 2]  # the time limit passes after every epoch


# --- crafting and L2C take --precision -----------------------------------------------------------------------
@pytest.mark.parametrize("attack, params", [("P1", ["steps=2"]), ("L2C", ["trials=1", "classifier_epochs=1"])])
def test_poison_precision_is_applied_recorded_and_part_of_the_identity(monkeypatch, tmp_path, attack, params):
    from delusive.attacks import load_artifact
    from delusive.cli.main import main

    seen: list[str] = []
    real = runtime.autocast

    def spy(precision, device=None):  # type: ignore[no-untyped-def]
        seen.append(runtime.resolve_precision(precision, device))
        return real(precision, device)

    monkeypatch.setattr(runtime, "autocast", spy)
    base = ["poison", "--attack", attack, "--dataset", "synthetic", "--train-subset", "64", "--crafting-epochs", "1",
            "--device", "cpu", "--cache-dir", str(tmp_path / "cache")]
    for p in params:
        base += ["--attack-param", p]
    assert main([*base, "--out", str(tmp_path / "fp32")]) == 0
    assert "bf16" not in seen  # fp32 by default: the documented artifacts keep their bytes
    seen.clear()
    assert main([*base, "--precision", "bf16", "--out", str(tmp_path / "bf16")]) == 0
    assert "bf16" in seen
    a, b = load_artifact(tmp_path / "fp32"), load_artifact(tmp_path / "bf16")
    assert "precision" not in a.manifest and b.manifest["precision"] == "bf16"
    assert json.loads((tmp_path / "bf16" / "timing.json").read_text())["precision"] == "bf16"
