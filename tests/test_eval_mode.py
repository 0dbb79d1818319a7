"""Crafting (P1-P4) and robust evaluation run the model in eval mode (DESIGN.md pitfall 5): a BatchNorm model in
train mode comes back in train mode with its running statistics untouched; a control shows that a forward pass
in train mode does move them, so the check is live."""

import numpy as np
import pytest
import torch
from torch import nn

from delusive import runtime
from delusive.attacks import create_attack
from delusive.data import ArrayDataset
from delusive.evaluation import robust_predictions
from delusive.threat import LinfBall


def _bn_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 8 * 8, 3)).train()


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return ArrayDataset(rng.random((24, 1, 8, 8), dtype=np.float32), (np.arange(24) % 3).astype(np.int64), 3)


def _untouched(model: nn.Module) -> bool:
    bn = model[1]
    return int(bn.num_batches_tracked) == 0 and bool(torch.equal(bn.running_mean, torch.zeros(4)))


def test_a_train_mode_forward_moves_batchnorm_statistics(data):  # the control
    model = _bn_model()
    model(data.tensors()[0])
    assert not _untouched(model)


@pytest.mark.parametrize(("attack", "params"), [("P1", {"steps": 2}), ("P2", {"steps": 2}),
                                                ("P3", {"iterations": 2}), ("P4", {"iterations": 2})])
def test_crafting_runs_the_model_in_eval_mode(data, attack, params):
    model = _bn_model()
    create_attack(attack, batch_size=8, **params).craft(data, LinfBall(0.1), model, seed=0)
    assert model.training and _untouched(model)


@pytest.mark.parametrize("attack", ["pgd", "apgd-ce", "autoattack"])
def test_robust_evaluation_runs_the_model_in_eval_mode(data, attack):
    model = _bn_model()
    x, y = data.tensors()
    robust_predictions(model, x, y, LinfBall(0.1), steps=2, attack=attack, seed=0, queries=20)
    assert model.training and _untouched(model)
    assert runtime.device_of(model).type == "cpu"


def test_fewer_than_four_classes_apgd_is_apgd_ce_autoattack_skips_apgd_t_and_apgd_t_refuses(data):
    model = _bn_model().eval()
    x, y = data.tensors()
    report: dict = {}
    aa = robust_predictions(model, x, y, LinfBall(0.05), steps=3, attack="autoattack", seed=1, queries=20,
                            report=report)
    assert report["components"] == ["apgd-ce", "fab-t", "square"]
    ap = robust_predictions(model, x, y, LinfBall(0.05), steps=3, attack="apgd", seed=1)
    ce = robust_predictions(model, x, y, LinfBall(0.05), steps=3, attack="apgd-ce", seed=1)
    assert torch.equal(ap, ce) and not bool((aa & ~ce).any())
    with pytest.raises(ValueError, match="needs at least 4 classes"):
        robust_predictions(model, x, y, LinfBall(0.05), steps=3, attack="apgd-t", seed=1)
