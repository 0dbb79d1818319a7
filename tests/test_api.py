"""The public Python API: ``delusive.__all__`` is the front door, importing it stays light, docs/api.md's
examples run as written, and the attack objects, the loss and ``fit`` behave as documented."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import delusive

ROOT = Path(__file__).resolve().parents[1]


def _blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)


def test_all_lists_the_api_and_every_name_resolves():
    assert {"craft", "PGD", "APGD", "AutoAttack", "AdversarialLoss", "fit", "evaluate", "ArrayDataset"} <= set(
        delusive.__all__)
    for name in delusive.__all__:
        assert getattr(delusive, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        delusive.nope  # noqa: B018


def test_import_delusive_does_not_import_torch():
    code = "import sys, delusive; print('torch' in sys.modules, len(delusive.__all__))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60,
                         env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}).stdout.split()
    assert out == ["False", str(len(delusive.__all__))]


def test_docs_api_examples_run(capsys):
    blocks = _blocks(ROOT / "docs" / "api.md")
    assert len(blocks) >= 6
    namespace: dict = {"__name__": "docs_api"}
    for block in blocks:
        exec(compile(block, "docs/api.md", "exec"), namespace)  # noqa: S102 - our own documentation
    assert "natural" in capsys.readouterr().out


class _Tiny(nn.Module):
    def __init__(self, k=4):
        super().__init__()
        self.bn = nn.BatchNorm2d(1)
        self.fc = nn.Linear(64, k)

    def forward(self, x):
        return self.fc(self.bn(x).flatten(1))


def _data(n=64, k=4):
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % k
    x = (torch.rand(k, 1, 8, 8, generator=g)[y] + 0.1 * torch.randn(n, 1, 8, 8, generator=g)).clamp(0, 1)
    return x, y


@pytest.mark.parametrize("make", [lambda m: delusive.PGD(m, eps=0.1, steps=3),
                                  lambda m: delusive.APGD(m, eps=0.1, steps=3),
                                  lambda m: delusive.AutoAttack(m, eps=0.1, steps=3)])
def test_attack_objects_restore_the_mode_and_stay_in_the_ball(make):
    x, y = _data()
    model = _Tiny()
    model.train()
    running = model.bn.running_mean.clone()
    adv = make(model)(x, y)
    assert model.training  # mode restored
    assert torch.equal(model.bn.running_mean, running)  # ran in eval mode: BN statistics untouched
    assert adv.shape == x.shape and (adv - x).abs().max() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    model.eval()
    make(model)(x, y)
    assert not model.training


def test_pgd_has_a_random_start_by_default():
    x, y = _data(8)
    model = _Tiny()
    zero_steps = delusive.PGD(model, eps=0.1, steps=0)(x, y)
    assert not torch.equal(zero_steps, x)  # moved before any step: a random start
    assert torch.equal(delusive.PGD(model, eps=0.1, steps=0, random_start=False)(x, y), x)


def test_adversarial_loss_needs_no_index_or_generator_and_is_seeded():
    x, y = _data(16)
    import copy

    model = _Tiny()
    twin, plain = copy.deepcopy(model), copy.deepcopy(model)  # a train-mode forward moves BN statistics
    a = delusive.AdversarialLoss("pgd_at", eps=0.1, steps=2)(model, x, y)
    b = delusive.AdversarialLoss("pgd_at", eps=0.1, steps=2)(twin, x, y)
    std = delusive.AdversarialLoss("standard")(plain, x, y)
    assert a.ndim == 0 and torch.equal(a, b) and a > std  # same seed, same loss; the attack raises the loss
    with pytest.raises(ValueError, match="give its budget"):
        delusive.AdversarialLoss("pgd_at")


def test_fit_takes_a_dataloader_and_evaluate_returns_images():
    from torch.utils.data import DataLoader, TensorDataset

    x, y = _data(128)
    model = _Tiny()
    res = delusive.fit(model, DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True), epochs=3, lr=0.1)
    assert len(res.history) == 3
    ev = delusive.evaluate(model, (x, y), attack="pgd", eps=0.05, steps=3, n=20)
    assert ev.natural_accuracy > 0.5 and 0 <= ev.robust_accuracy <= ev.natural_accuracy + 0.05
    assert ev.adversarial.shape == (20, 1, 8, 8) and len(ev.robust_indices) == 20


def test_craft_on_a_dataset_returns_a_dataset_with_the_same_labels(tmp_path):
    x, y = _data(32)
    ds = delusive.ArrayDataset.from_tensors(x, y, classes=list("abcd"))
    out = delusive.craft("P5", ds, eps=0.1, out=tmp_path / "art")
    assert isinstance(out, delusive.ArrayDataset) and torch.equal(torch.from_numpy(out.y), y)
    assert out.classes == tuple("abcd")
    art = delusive.load_artifact(tmp_path / "art")
    assert delusive.verify_artifact(art, ds).ok and art.manifest["class_names"] == list("abcd")
