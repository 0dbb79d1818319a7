"""Device selection (issue: runs where the field runs). On this CPU-only machine: every command takes an
explicit ``--device cpu``, ``auto`` resolves to what exists, checkpoints are device-neutral, seeded draws are
reproducible, the loader keeps the split on the data's device, and the package's torch requirement admits
the versions users have. The CUDA equivalences are in ``test_gpu.py`` (marked ``gpu``)."""

import json
from importlib.metadata import requires

import pytest
import torch
from packaging.requirements import Requirement

from delusive import runtime
from delusive.cli.main import main
from delusive.data import TensorLoader, make_synthetic

SYN = ["--dataset", "synthetic"]


def run(*argv):
    return main([str(a) for a in argv])


def test_auto_resolves_to_an_available_device_and_unavailable_ones_are_clear_errors():
    dev = runtime.resolve_device("auto")
    assert dev.type == ("cuda" if torch.cuda.is_available() else "mps" if runtime._mps_available() else "cpu")
    assert runtime.resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="sees no CUDA device"):
            runtime.resolve_device("cuda:0")
    with pytest.raises(ValueError, match="expected auto, cpu, cuda, cuda:N or mps"):
        runtime.resolve_device("tpu")


def test_precision_auto_is_fp32_on_a_cpu_without_native_bf16(monkeypatch):
    monkeypatch.setattr(runtime, "_cpu_has_bf16", lambda: False)
    assert runtime.resolve_precision("auto", "cpu") == "fp32"
    monkeypatch.setattr(runtime, "_cpu_has_bf16", lambda: True)
    assert runtime.resolve_precision("auto", "cpu") == "bf16"  # control: the switch is live
    assert runtime.resolve_precision("fp32", "cpu") == "fp32"


def test_seeded_draws_repeat_on_a_device_and_differ_across_seeds():
    a = runtime.randn((4, 3), runtime.generator(7, "cpu"), "cpu")
    b = runtime.randn((4, 3), runtime.generator(7, "cpu"), "cpu")
    c = runtime.randn((4, 3), runtime.generator(8, "cpu"), "cpu")
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_loader_keeps_batches_on_the_datas_device_and_its_order_does_not_depend_on_it():
    x, y = torch.rand(40, 1, 8, 8), torch.arange(40) % 4
    order = [idx.clone() for _, _, idx in TensorLoader(x, y, 16, seed=3, crop_padding=2, hflip=True)
             .epoch_with_indices(1)]
    for xb, yb, idx in TensorLoader(x, y, 16, seed=3, crop_padding=2, hflip=True).epoch_with_indices(1):
        assert xb.device == x.device and yb.device == x.device and idx.device == x.device
    again = [idx for _, _, idx in TensorLoader(x.clone(), y.clone(), 16, seed=3, crop_padding=2, hflip=True)
             .epoch_with_indices(1)]
    assert all(torch.equal(a, b) for a, b in zip(order, again, strict=True))


def test_checkpoints_are_saved_with_cpu_tensors():
    nested = {"model": {"w": torch.ones(2)}, "opt": [torch.zeros(1), {"m": torch.ones(1)}], "epoch": 3}
    moved = runtime.to_cpu(nested)
    assert moved["epoch"] == 3 and all(t.device.type == "cpu" for t in
                                       (moved["model"]["w"], moved["opt"][0], moved["opt"][1]["m"]))


def test_every_command_takes_an_explicit_device_cpu(tmp_path, capsys):
    out = tmp_path / "train"
    assert run("train", *SYN, "--epochs", 1, "--lr", 0.1, "--train-subset", 400, "--eval-attack", "pgd",
               "--eval-steps", 2, "--robust-subset", 40, "--device", "cpu", "--out", out) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["device"]["device"] == "cpu"
    assert metrics["precision"] == runtime.resolve_precision("auto", "cpu")  # the CLI's default is auto
    state = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert all(t.device.type == "cpu" for t in state["model"].values())
    assert run("eval", out, "--attack", "pgd", "--eval-steps", 2, "--robust-subset", 20, "--device", "cpu") == 0
    art = tmp_path / "art"
    assert run("poison", "--attack", "P5", *SYN, "--train-subset", 200, "--device", "cpu", "--out", art) == 0
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: t\ndatasets: [synthetic]\ntrain_subset: 200\nattacks: [clean]\n"
                    "attack_budget: {norm: linf, eps: '8/255'}\ndefenses: [standard]\n"
                    "train: {epochs: 1}\neval: {attack: pgd, steps: 1, robust_subset: 20, val_size: 0}\n")
    assert run("sweep", spec, "--out", tmp_path / "sw", "--device", "cpu") == 0
    rec = json.loads(next((tmp_path / "sw" / "cells").glob("*/result.json")).read_text())
    assert rec["device"]["device"] == "cpu"
    assert run("reproduce", "--preset", "demo", "--out", tmp_path / "rp", "--device", "cpu", "--max-cells", 1,
               "--set", "datasets=[synthetic]", "--set", "train_subset=200", "--set", "attacks=[clean]",
               "--set", "train.epochs=1", "--set", "eval.attack=pgd", "--set", "eval.robust_subset=20",
               "--set", "eval.steps=1") == 0
    rec = json.loads(next((tmp_path / "rp" / "cells").glob("*/result.json")).read_text())
    assert rec["device"]["device"] == "cpu"


@pytest.mark.parametrize("argv", [
    ["train", "--dataset", "synthetic", "--device", "tpu", "--out", "x"],
    ["eval", "m", "--device", "cuda:x"],
    ["poison", "--attack", "P5", "--dataset", "synthetic", "--device", "gpu0", "--out", "x"],
])
def test_a_malformed_device_is_one_usage_error(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert "--device: expected auto, cpu, cuda, cuda:N or mps" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_device_is_recorded_but_not_part_of_a_cells_identity():
    from delusive.experiments.spec import expand, parse_spec

    base = {"name": "t", "datasets": ["synthetic"], "attacks": ["clean"],
            "attack_budget": {"norm": "linf", "eps": "8/255"}, "defenses": ["standard"]}
    a = [c.cell_id for c in expand(parse_spec(base))]
    b = [c.cell_id for c in expand(parse_spec({**base, "device": "cuda"}))]
    c = [c.cell_id for c in expand(parse_spec({**base, "seeds": [1]}))]
    assert a == b and a != c  # control: a real axis does change the identity


def test_the_installed_torch_requirement_admits_the_versions_users_have():
    reqs = [Requirement(r) for r in requires("delusive") or [] if r.startswith("torch")]
    assert len(reqs) == 1 and reqs[0].name == "torch"
    spec = reqs[0].specifier
    assert spec.contains("2.11.0") and spec.contains("2.13.0") and spec.contains("2.1.0")
    assert not spec.contains("2.0.1")  # the floor is a real floor
    assert spec.contains("3.0.0")  # and there is no upper pin


def test_a_small_real_run_trains_on_device_cpu(tmp_path):
    synth = make_synthetic(300, num_classes=3, shape=(1, 12, 12), seed=1)
    assert synth.num_classes == 3
    from delusive.defenses import Standard, TrainConfig
    from delusive.experiments.pipeline import EvalPlan, RunOptions, train_and_evaluate

    rec = train_and_evaluate("small-cnn", synth, synth, Standard(), TrainConfig(epochs=2, lr=0.1, batch_size=32),
                             EvalPlan(val_size=0, robust_subset=None), tmp_path, RunOptions(device="cpu"))
    assert rec["device"]["device"] == "cpu" and rec["natural_accuracy"] > 0.5
