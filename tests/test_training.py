"""The training loop: learning happens, same seed ⇒ identical weights, resume after a kill ⇒ identical final
metrics, PGD-AT with ε = 0 is standard training, label/config errors are clear."""

import numpy as np
import pytest
import torch

from delusive.defenses import PGDAT, Standard, TrainConfig, create_objective, fit
from delusive.evaluation import evaluate, natural_accuracy
from delusive.models import create_model, model_hash
from delusive.threat import LinfBall


def _model(seed=0):
    return create_model("small-cnn", 4, 1, 16, seed=seed)


def test_standard_training_learns_the_synthetic_task(synth, synth_model):
    assert natural_accuracy(synth_model, synth) > 0.9


def test_same_seed_gives_identical_weights(synth):
    cfg = TrainConfig(epochs=1, batch_size=64, seed=4)
    a, b = _model(), _model()
    fit(a, synth, PGDAT(LinfBall(0.05), steps=2), cfg)
    fit(b, synth, PGDAT(LinfBall(0.05), steps=2), cfg)
    assert model_hash(a) == model_hash(b)
    c = _model()
    fit(c, synth, PGDAT(LinfBall(0.05), steps=2), TrainConfig(epochs=1, batch_size=64, seed=5))
    assert model_hash(c) != model_hash(a)


class _Kill(Exception):
    pass


def test_resume_after_kill_gives_identical_final_metrics(synth, tmp_path):
    cfg = TrainConfig(epochs=4, batch_size=64, seed=1, crop_padding=2, hflip=True)
    obj = lambda: PGDAT(LinfBall(0.05), steps=2)  # noqa: E731
    full = _model()
    res_full = fit(full, synth, obj(), cfg, checkpoint_dir=tmp_path / "full")

    def dies_in_epoch_3(model, epoch):
        if epoch == 3:
            raise _Kill  # the process dies during epoch 3: the checkpoint holds epochs 1-2
        return {}

    killed = _model()
    with pytest.raises(_Kill):
        fit(killed, synth, obj(), cfg, checkpoint_dir=tmp_path / "run", eval_fn=dies_in_epoch_3)
    resumed = _model()
    res = fit(resumed, synth, obj(), cfg, checkpoint_dir=tmp_path / "run")
    assert res.resumed_from_epoch == 2
    assert model_hash(resumed) == model_hash(full)
    assert [h["train_loss"] for h in res.history] == [h["train_loss"] for h in res_full.history]
    assert evaluate(resumed, synth)["natural_accuracy"] == evaluate(full, synth)["natural_accuracy"]


def test_checkpoint_of_another_run_is_refused(synth, tmp_path):
    fit(_model(), synth, Standard(), TrainConfig(epochs=1, batch_size=64), checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="belongs to a different run"):
        fit(_model(), synth, Standard(), TrainConfig(epochs=1, batch_size=64, lr=0.01), checkpoint_dir=tmp_path)


def test_pgd_at_with_zero_eps_equals_standard_training(synth):
    x, y = synth.tensors()
    x, y = x[:64], y[:64]
    model = _model().train()
    g = torch.Generator().manual_seed(0)
    a = Standard().loss(model, x, y, torch.arange(64), g)
    b = PGDAT(LinfBall(0.0), steps=5).loss(model, x, y, torch.arange(64), g)
    torch.testing.assert_close(a.loss, b.loss)
    # and over a whole (short) training run
    m1, m2 = _model(), _model()
    cfg = TrainConfig(epochs=1, batch_size=64, seed=2)
    fit(m1, synth, Standard(), cfg)
    fit(m2, synth, PGDAT(LinfBall(0.0), steps=3), cfg)
    for p1, p2 in zip(m1.parameters(), m2.parameters(), strict=True):
        torch.testing.assert_close(p1, p2)


def test_pgd_at_makes_the_model_more_robust(synth, synth_model):
    at = _model()
    fit(at, synth, PGDAT(LinfBall(0.15), steps=5, rel_step_size=0.3), TrainConfig(epochs=3, batch_size=64))
    threat = LinfBall(0.15)
    rob_at = evaluate(at, synth, threat, steps=10)["robust_accuracy"]
    rob_st = evaluate(synth_model, synth, threat, steps=10)["robust_accuracy"]
    assert rob_at > rob_st + 0.2


def test_objective_and_config_errors_are_clear():
    with pytest.raises(ValueError, match="unknown parameter\\(s\\) beta; allowed: steps, rel_step_size"):
        create_objective("pgd_at", "linf", 0.1, beta=6)
    with pytest.raises(ValueError, match="needs a threat model"):
        create_objective("pgd_at")
    with pytest.raises(ValueError, match="defense: unknown name 'madry'"):
        create_objective("madry")
    with pytest.raises(ValueError, match="epochs: must be an integer >= 1, got 0"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="schedule: must be one of piecewise, cosine, constant"):
        TrainConfig(schedule="step")


def test_lr_schedules():
    cfg = TrainConfig(lr=0.1, schedule="piecewise")
    assert cfg.lr_at(0.0) == 0.1 and cfg.lr_at(0.7) == pytest.approx(0.01) and cfg.lr_at(0.9) == pytest.approx(1e-3)
    cos = TrainConfig(lr=0.1, schedule="cosine")
    assert cos.lr_at(0.0) == pytest.approx(0.1) and cos.lr_at(0.5) == pytest.approx(0.05)


def test_evaluation_warns_about_train_mode_and_probabilities(synth, synth_model):
    synth_model.train()
    with pytest.warns(UserWarning, match="train mode"):
        evaluate(synth_model, synth)
    synth_model.eval()
    probs = torch.nn.Sequential(synth_model, torch.nn.Softmax(dim=1)).eval()
    with pytest.warns(UserWarning, match="probabilities"):
        evaluate(probs, synth)


def test_per_class_accuracy_matches_manual(synth, synth_model):
    out = evaluate(synth_model, synth)
    x, y = synth.tensors()
    pred = synth_model(x).argmax(1)
    for k in range(synth.num_classes):
        assert out["per_class_accuracy"][k] == pytest.approx(float((pred[y == k] == k).float().mean()))
    assert np.isclose(out["natural_accuracy"], float((pred == y).float().mean()))
