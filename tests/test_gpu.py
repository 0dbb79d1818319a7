"""CUDA equivalences (marked ``gpu``; the only tests that may skip, and only when no CUDA device exists):
training, each attack and evaluation on CUDA agree with the CPU within tolerance in fp32, and bf16 training
lands within one point of fp32 accuracy on a small real run. ``scripts/gpu-check.sh`` runs these."""

import numpy as np
import pytest
import torch

from delusive import runtime
from delusive.attacks import create_attack
from delusive.data import make_synthetic
from delusive.defenses import PGDAT, Standard, TrainConfig, fit
from delusive.evaluation import evaluate
from delusive.models import create_model
from delusive.threat import L2Ball, LinfBall

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none here)")]


@pytest.fixture(scope="module")
def data():
    return make_synthetic(512, num_classes=4, shape=(1, 16, 16), seed=0)


def _trained(device: str, data, objective=None, precision: str = "fp32", epochs: int = 2):  # type: ignore[no-untyped-def]
    runtime.set_deterministic(torch.device(device))
    model = runtime.prepare_model(create_model("small-cnn", 4, 1, 16, seed=0), torch.device(device))
    fit(model, data, objective or Standard(), TrainConfig(epochs=epochs, batch_size=64, lr=0.05, precision=precision))
    return model.eval()


def test_standard_training_on_cuda_matches_cpu_in_fp32(data):
    cpu, gpu = _trained("cpu", data), _trained("cuda", data)
    for (k, a), (_, b) in zip(cpu.state_dict().items(), gpu.state_dict().items(), strict=True):
        assert torch.allclose(a, b.cpu(), atol=2e-3, rtol=1e-3), k


def test_pgd_at_and_evaluation_on_cuda_match_cpu(data):
    threat = LinfBall(0.1)
    cpu = _trained("cpu", data, PGDAT(threat, steps=3))
    gpu = _trained("cuda", data, PGDAT(threat, steps=3))
    a = evaluate(cpu, data, threat, steps=5, attack="pgd")
    b = evaluate(gpu, data, threat, steps=5, attack="pgd")
    assert abs(a["natural_accuracy"] - b["natural_accuracy"]) <= 0.02
    assert abs(a["robust_accuracy"] - b["robust_accuracy"]) <= 0.05  # random starts differ by device


@pytest.mark.parametrize("attack", ["P1", "P2", "P3", "P4", "P5"])
def test_each_attack_on_cuda_matches_cpu(data, attack):
    model_cpu = _trained("cpu", data, epochs=1)
    model_gpu = runtime.prepare_model(create_model("small-cnn", 4, 1, 16, seed=0), torch.device("cuda"))
    model_gpu.load_state_dict(model_cpu.state_dict())
    params = {"P1": {"steps": 5}, "P2": {"steps": 5}, "P3": {"iterations": 5}, "P4": {"iterations": 5}}.get(attack, {})
    threat = L2Ball(0.5)
    a = create_attack(attack, **params).craft(data, threat, model_cpu.eval(), seed=0).x
    b = create_attack(attack, **params).craft(data, threat, model_gpu.eval(), seed=0).x
    # sign steps can flip on near-zero gradients; the bulk of pixels agrees closely
    assert np.mean(np.abs(a - b) < 1e-3) > 0.95


def test_bf16_training_is_within_one_point_of_fp32():
    data = make_synthetic(4000, num_classes=10, shape=(1, 28, 28), seed=3)
    test = make_synthetic(1000, num_classes=10, shape=(1, 28, 28), seed=4)
    fp32 = _trained("cuda", data, precision="fp32", epochs=3)
    bf16 = _trained("cuda", data, precision="bf16", epochs=3)
    a, b = evaluate(fp32, test)["natural_accuracy"], evaluate(bf16, test)["natural_accuracy"]
    assert abs(a - b) <= 0.01, (a, b)
