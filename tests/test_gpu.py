"""CUDA equivalences (marked ``gpu``; the only tests that may skip, and only when no CUDA device exists):
training, each attack, L2C, APGD/AutoAttack, the AT variants, the masked threat and ``--compile`` on CUDA agree
with the CPU within tolerance (or hold their invariants), no defense step synchronises with the host, and bf16
training lands within one point of fp32 accuracy. ``scripts/gpu-check.sh`` runs these.

``DELUSIVE_GPU_TEST_DEVICE=cpu`` runs them with the CPU standing in for the GPU (a check of the tests'
own logic; every comparison is then CPU against CPU)."""

import os

import numpy as np
import pytest
import torch

from delusive import runtime
from delusive.attacks import create_attack
from delusive.data import make_synthetic
from delusive.defenses import PGDAT, Standard, TrainConfig, create_objective, fit
from delusive.evaluation import evaluate
from delusive.models import create_model
from delusive.perturb import pgd
from delusive.threat import L2Ball, LinfBall, Masked, half_mask

GPU = os.environ.get("DELUSIVE_GPU_TEST_DEVICE", "cuda")
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(GPU.startswith("cuda") and not torch.cuda.is_available(),
                                 reason="needs a CUDA device (none here)")]
AT_VARIANTS = {"trades": {"steps": 3}, "fat": {"steps": 3}, "gairat": {"steps": 3, "begin_fraction": 0.0},
               "fast_at": {}, "free_at": {"replays": 2}, "random_noise": {}, "pgd_at": {"steps": 3}}


@pytest.fixture(scope="module")
def data():
    return make_synthetic(512, num_classes=4, shape=(1, 16, 16), seed=0)


def _trained(device: str, data, objective=None, precision: str = "fp32", epochs: int = 2):  # type: ignore[no-untyped-def]
    runtime.set_deterministic(torch.device(device))
    c, h, _ = data.shape  # the model fits the data (the bf16 test uses 10 classes of 28×28)
    model = runtime.prepare_model(create_model("small-cnn", data.num_classes, c, h, seed=0), torch.device(device))
    fit(model, data, objective or Standard(), TrainConfig(epochs=epochs, batch_size=64, lr=0.05, precision=precision))
    return model.eval()


def _copy_to(model: torch.nn.Module, device: str) -> torch.nn.Module:
    runtime.set_deterministic(torch.device(device))  # fp32 means fp32 (no TF32) for the comparisons
    other = runtime.prepare_model(create_model("small-cnn", 4, 1, 16, seed=0), torch.device(device))
    other.load_state_dict(model.state_dict())
    return other.eval()


def test_standard_training_on_cuda_matches_cpu_in_fp32(data):
    cpu, gpu = _trained("cpu", data), _trained(GPU, data)
    for (k, a), (_, b) in zip(cpu.state_dict().items(), gpu.state_dict().items(), strict=True):
        assert torch.allclose(a, b.cpu(), atol=2e-3, rtol=1e-3), k


def test_pgd_at_and_evaluation_on_cuda_match_cpu(data):
    threat = LinfBall(0.1)
    cpu = _trained("cpu", data, PGDAT(threat, steps=3))
    gpu = _trained(GPU, data, PGDAT(threat, steps=3))
    a = evaluate(cpu, data, threat, steps=5, attack="pgd")
    b = evaluate(gpu, data, threat, steps=5, attack="pgd")
    assert abs(a["natural_accuracy"] - b["natural_accuracy"]) <= 0.02
    assert abs(a["robust_accuracy"] - b["robust_accuracy"]) <= 0.05  # random starts differ by device


@pytest.mark.parametrize("attack", ["apgd-ce", "apgd-t", "autoattack"])
def test_apgd_and_autoattack_on_cuda_match_cpu(data, attack):
    cpu = _trained("cpu", data, PGDAT(L2Ball(0.5), steps=3), epochs=1)
    gpu = _copy_to(cpu, GPU)
    a = evaluate(cpu, data, L2Ball(0.5), steps=10, attack=attack, robust_limit=200)
    b = evaluate(gpu, data, L2Ball(0.5), steps=10, attack=attack, robust_limit=200)
    assert abs(a["natural_accuracy"] - b["natural_accuracy"]) <= 0.01  # same weights: at most a borderline image
    assert abs(a["robust_accuracy"] - b["robust_accuracy"]) <= 0.05  # random starts differ by device


@pytest.mark.parametrize("attack", ["P1", "P2", "P3", "P4", "P5"])
def test_each_attack_on_cuda_matches_cpu(data, attack):
    model_cpu = _trained("cpu", data, epochs=1)
    model_gpu = _copy_to(model_cpu, GPU)
    params = {"P1": {"steps": 5}, "P2": {"steps": 5}, "P3": {"iterations": 5}, "P4": {"iterations": 5}}.get(attack, {})
    threat = L2Ball(0.5)
    a = create_attack(attack, **params).craft(data, threat, model_cpu.eval(), seed=0).x
    b = create_attack(attack, **params).craft(data, threat, model_gpu.eval(), seed=0).x
    # sign steps can flip on near-zero gradients; the bulk of pixels agrees closely
    assert np.mean(np.abs(a - b) < 1e-3) > 0.95


def _l2c(precision: str = "fp32"):  # type: ignore[no-untyped-def]
    atk = create_attack("L2C", trials=1, classifier_epochs=1, batch_size=64, classifier="small-cnn",
                        generator_arch="l2c-unet-small", generator_lr=1e-3)
    atk.precision = precision
    return atk


def test_l2c_on_cuda_matches_cpu(data):
    """Double backward through cuDNN BatchNorm (the pseudo-update) against the CPU's."""
    threat = LinfBall(0.1)
    atk_cpu, atk_gpu = _l2c(), _l2c()
    atk_cpu.device, atk_gpu.device = "cpu", GPU
    a = atk_cpu.craft(data, threat, None, seed=0)
    b = atk_gpu.craft(data, threat, None, seed=0)
    assert np.mean(np.abs(a.x - b.x) < 2e-3) > 0.9
    la = a.extra["generator"]["last_trial"]["clean_loss_after_pseudo_update"]
    lb = b.extra["generator"]["last_trial"]["clean_loss_after_pseudo_update"]
    assert abs(la - lb) < 1e-2 * max(1.0, abs(la))


def test_l2c_in_bf16_on_cuda_stays_in_budget(data):
    threat = LinfBall(0.1)
    atk = _l2c("bf16" if GPU.startswith("cuda") else "fp32")
    atk.device = GPU
    res = atk.craft(data, threat, None, seed=0)
    x = data.float_x()
    assert np.isfinite(res.x).all()
    assert np.abs(res.x - x).max() <= 0.1 + 1e-6 and res.x.min() >= 0 and res.x.max() <= 1


@pytest.mark.parametrize("name", sorted(AT_VARIANTS))
def test_at_variants_train_on_cuda_without_host_syncs(data, name):
    """One step of each defense under CUDA's sync debugger (an error on any synchronising call), then two
    epochs of training whose natural accuracy is close to the CPU's."""
    norm, eps = ("linf", "0.1")
    obj = create_objective(name, norm, eps, **AT_VARIANTS[name])
    dev = torch.device(GPU)
    model = runtime.prepare_model(create_model("small-cnn", 4, 1, 16, seed=0), dev).train()
    x, y = (t[:64].to(dev) for t in data.tensors())
    x = runtime.to_channels_last(x)
    obj.begin_epoch(1, 2)
    gen = runtime.generator(0, dev)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(2):
            out = obj.loss(model, x, y, runtime.arange(64, dev), gen)
            out.loss.backward()
    finally:
        if dev.type == "cuda":
            torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(out.loss).item()
    accs = [evaluate(_trained(d, data, create_objective(name, norm, eps, **AT_VARIANTS[name])), data)
            ["natural_accuracy"] for d in ("cpu", GPU)]
    assert abs(accs[0] - accs[1]) <= 0.1, accs  # random streams differ by device


def test_masked_threat_on_cuda_moves_only_the_mask_and_matches_cpu(data):
    cpu = _trained("cpu", data, epochs=1)
    gpu = _copy_to(cpu, GPU)
    threat = Masked(L2Ball(1.0), half_mask((1, 16, 16), "top"))
    x, y = (t[:128] for t in data.tensors())
    a = pgd(cpu, x, y, threat, steps=5).x_adv
    b = pgd(gpu, x.to(GPU), y.to(GPU), threat, steps=5).x_adv.cpu()
    assert torch.equal(b[:, :, 8:], x[:, :, 8:])  # the bottom half never moves
    assert bool(threat.contains(b, x, 1e-5).all())
    assert (a - b).abs().max() < 1e-3


def test_bf16_training_is_within_one_point_of_fp32():
    # train and test on the same class patterns (sample_seed draws a fresh sample of the same distribution)
    data = make_synthetic(4000, num_classes=10, shape=(1, 28, 28), seed=3)
    test = make_synthetic(1000, num_classes=10, shape=(1, 28, 28), seed=3, sample_seed=4)
    precision = "bf16" if GPU.startswith("cuda") else "fp32"
    fp32 = _trained(GPU, data, precision="fp32", epochs=3)
    bf16 = _trained(GPU, data, precision=precision, epochs=3)
    a, b = evaluate(fp32, test)["natural_accuracy"], evaluate(bf16, test)["natural_accuracy"]
    assert a > 0.5, a  # learnable: both models are far above chance (10%), so the comparison means something
    assert abs(a - b) <= 0.01, (a, b)


def test_compile_on_cuda_trains_and_resumes_without_compile(data, tmp_path):  # last: compiling takes longest
    from delusive.experiments.pipeline import EvalPlan, RunOptions, train_and_evaluate

    cfg = TrainConfig(epochs=2, batch_size=64, lr=0.05)
    plan = EvalPlan(val_size=0)
    ref = train_and_evaluate("small-cnn", data, None, Standard(), cfg, plan, tmp_path / "ref",
                             RunOptions(device=GPU, deterministic=True))
    one = train_and_evaluate("small-cnn", data, None, Standard(), TrainConfig(epochs=2, batch_size=64, lr=0.05),
                             plan, tmp_path / "c", RunOptions(device=GPU, compile=True, deterministic=True))
    assert one["compiled"] is True
    # the compiled run's checkpoint resumes (here: finds all epochs done) without --compile
    again = train_and_evaluate("small-cnn", data, None, Standard(), cfg, plan, tmp_path / "c",
                               RunOptions(device=GPU, deterministic=True))
    for (k, a), (_, b) in zip(ref["model"].state_dict().items(), again["model"].state_dict().items(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=5e-3, rtol=1e-2), k  # compiled kernels reorder sums
