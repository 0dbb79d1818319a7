"""The adversarial-training recipe (per-iteration ε ramp, lr warm-up) and the collapse monitor.

The ramp and warm-up are checked by what the loop actually hands the attack and the optimiser at every
iteration; the monitor by a run made to collapse (a huge learning rate) with a healthy run as its control.
"""

import json
import math
import warnings

import pytest

import delusive.defenses.pgd_at as pgd_at_module
from delusive.cli.main import main
from delusive.defenses import (
    DEFAULT_EPS_RAMP,
    DEFAULT_LR_WARMUP,
    PGDAT,
    TRADES,
    CollapseWarning,
    FastAT,
    FreeAT,
    Standard,
    TrainConfig,
    create_objective,
    fit,
    resolve_recipe,
    run_identity,
)
from delusive.defenses.recipe import collapse_reason, plateau_reason
from delusive.experiments.pipeline import collapse_summary
from delusive.models import create_model
from delusive.threat import LinfBall


def _model(seed=0):
    return create_model("small-cnn", 4, 1, 16, seed=seed)


def test_lr_warmup_is_linear_per_iteration_and_then_follows_the_schedule():
    cfg = TrainConfig(lr=0.1, lr_warmup=0.2, schedule="constant")
    step = 1 / 100
    assert cfg.lr_at(0.0, step) == pytest.approx(0.1 * step / 0.2)  # the first step does not train at rate 0
    assert cfg.lr_at(0.1 - step, step) == pytest.approx(0.05)
    assert cfg.lr_at(0.3, step) == pytest.approx(0.1)
    piecewise = TrainConfig(lr=0.1, lr_warmup=0.1)
    assert piecewise.lr_at(0.9) == pytest.approx(1e-3)  # after the warm-up the decays are untouched
    assert TrainConfig(lr=0.1).lr_at(0.0) == 0.1  # no warm-up: the schedule as before


def test_eps_ramp_is_linear_from_zero():
    cfg = TrainConfig(eps_ramp=0.5)
    assert [cfg.eps_scale_at(p) for p in (0.0, 0.25, 0.5, 0.9)] == [0.0, 0.5, 1.0, 1.0]
    assert TrainConfig(eps_ramp=0.0).eps_scale_at(0.0) == 1.0


@pytest.mark.parametrize("value", [-0.1, 1.0, 2, float("nan"), True])
def test_recipe_fractions_are_range_checked(value):
    with pytest.raises(ValueError, match="eps_ramp: must be a fraction of training"):
        TrainConfig(eps_ramp=value)
    with pytest.raises(ValueError, match="lr_warmup: must be a fraction of training"):
        TrainConfig(lr_warmup=value)


@pytest.mark.parametrize("make", [lambda: PGDAT(LinfBall(0.1)), lambda: TRADES(LinfBall(0.1)),
                                  lambda: create_objective("fat", "linf", 0.1),
                                  lambda: create_objective("gairat", "linf", 0.1),
                                  lambda: FastAT(LinfBall(0.1)), lambda: FreeAT(LinfBall(0.1))])
def test_every_at_objective_takes_the_recipe_defaults(make):
    cfg = resolve_recipe(TrainConfig(), make())
    assert (cfg.eps_ramp, cfg.lr_warmup) == (DEFAULT_EPS_RAMP, DEFAULT_LR_WARMUP)
    explicit = resolve_recipe(TrainConfig(eps_ramp=0.0, lr_warmup=0.3), make())
    assert (explicit.eps_ramp, explicit.lr_warmup) == (0.0, 0.3)  # the reference: no ramp, when asked


def test_standard_training_is_untouched_by_the_recipe():
    cfg = resolve_recipe(TrainConfig(), Standard())
    assert (cfg.eps_ramp, cfg.lr_warmup) == (0.0, 0.0)
    assert resolve_recipe(TrainConfig(eps_ramp=0.4), Standard()).eps_ramp == 0.0  # no ball to ramp


def test_the_recipe_is_part_of_the_run_identity(synth):
    obj = PGDAT(LinfBall(0.1))
    ids = {run_identity(obj, resolve_recipe(TrainConfig(eps_ramp=r), obj), synth, _model()) for r in (0.0, 0.25)}
    assert len(ids) == 2


def test_the_loop_ramps_eps_per_iteration_and_warms_the_lr_up(synth, monkeypatch):
    seen_eps: list[float] = []
    real = pgd_at_module.pgd

    def spy(model, x, y, threat, **kw):
        seen_eps.append(threat.eps)
        return real(model, x, y, threat, **kw)

    monkeypatch.setattr(pgd_at_module, "pgd", spy)
    cfg = TrainConfig(epochs=2, batch_size=60, lr=0.05, eps_ramp=0.5, lr_warmup=0.25, schedule="constant")
    res = fit(_model(), synth, PGDAT(LinfBall(0.2), steps=1), cfg)
    n = len(seen_eps)  # 600 images / 60 = 10 steps per epoch
    assert n == 20
    expected = [0.2 * min(1.0, (i / 20) / 0.5) for i in range(n)]
    assert seen_eps == pytest.approx(expected)
    assert seen_eps[0] == 0.0 and seen_eps[10:] == pytest.approx([0.2] * 10)
    assert res.history[-1]["lr"] == pytest.approx(0.05)
    # control: without a ramp every iteration attacks at the full radius
    seen_eps.clear()
    fit(_model(), synth, PGDAT(LinfBall(0.2), steps=1), TrainConfig(epochs=1, batch_size=60, eps_ramp=0.0))
    assert seen_eps == pytest.approx([0.2] * 10)


def test_collapse_reason_thresholds():
    ln10 = math.log(10)
    assert collapse_reason(ln10 * 1.015, 0.3, 10) is not None
    assert collapse_reason(ln10 * 0.97, 0.3, 10) is None
    assert collapse_reason(1.0, 0.95, 10) is not None
    assert collapse_reason(1.0, 0.85, 10) is None


@pytest.mark.parametrize(("flagged", "epochs", "failed"), [
    ([1, 2, 3], 4, True),   # Figure 5's P2 seed: out of the band only in its last epoch
    ([2, 3], 3, True),      # a 3-epoch run flagged after its first epoch, which it then reports
    ([2, 3], 4, True),
    ([1], 4, False),        # the first epoch is every run's start
    ([2], 3, False),        # one of two later epochs: not most
    ([2, 3], 6, False),
    ([], 4, False),
    ([1], 1, False),
])
def test_plateau_rule(flagged, epochs, failed):
    assert (plateau_reason(flagged, epochs) is not None) is failed


def test_a_run_flagged_on_most_epochs_is_collapsed_though_its_selected_epoch_was_not():
    hist = [{"epoch": e, "collapsed": e < 4} for e in (1, 2, 3, 4)]
    out = collapse_summary(hist, 4, 4)
    assert out["collapsed"] is True and out["collapse_epoch"] == 1 and "2 of its 3" in out["collapse_reason"]
    healthy = [{"epoch": e, "collapsed": e == 1} for e in (1, 2, 3, 4)]  # control
    assert collapse_summary(healthy, 4, 4) == {"collapsed": False, "collapse_epoch": 1, "collapsed_epochs": [1]}


def test_a_run_made_to_collapse_is_flagged_and_a_healthy_one_is_not(synth):
    with pytest.warns(CollapseWarning, match="lower --lr"):
        broken = fit(_model(), synth, Standard(), TrainConfig(epochs=2, batch_size=64, lr=5.0, seed=0))
    assert all(h["collapsed"] for h in broken.history)
    assert collapse_summary(broken.history, 2) == {"collapsed": True, "collapse_epoch": 1, "collapsed_epochs": [1, 2],
                                                   "collapse_reason": "the selected epoch was flagged"}
    with warnings.catch_warnings():
        warnings.simplefilter("error", CollapseWarning)  # the control must not warn
        healthy = fit(_model(), synth, Standard(), TrainConfig(epochs=3, batch_size=64, lr=0.1, seed=0))
    assert not any(h["collapsed"] for h in healthy.history)
    assert healthy.history[-1]["top_class_share"] < 0.5


def test_train_cli_flags_a_collapsed_run_in_its_metrics(tmp_path, capsys):
    argv = ["train", "--dataset", "synthetic", "--train-subset", "400", "--epochs", "1", "--robust-subset", "10",
            "--eval-steps", "1", "--eval-attack", "pgd", "--device", "cpu", "--lr", "5"]
    with pytest.warns(CollapseWarning):
        assert main([*argv, "--out", str(tmp_path / "broken")]) == 0
    metrics = json.loads((tmp_path / "broken" / "metrics.json").read_text())
    assert metrics["collapsed"] is True and metrics["collapse_epoch"] == 1
    assert "COLLAPSED" in capsys.readouterr().err
    cfg = json.loads((tmp_path / "broken" / "config.json").read_text())
    assert cfg["train"]["eps_ramp"] == 0.0 and cfg["train"]["lr_warmup"] == 0.0  # standard training


def test_train_cli_records_the_recipe_of_an_at_run(tmp_path):
    argv = ["train", "--dataset", "synthetic", "--train-subset", "200", "--epochs", "1", "--robust-subset", "10",
            "--eval-steps", "1", "--eval-attack", "pgd", "--device", "cpu", "--defense", "pgd_at", "--steps", "1"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main([*argv, "--out", str(tmp_path / "at")]) == 0
        assert main([*argv, "--eps-ramp", "0", "--lr-warmup", "0.2", "--out", str(tmp_path / "ref")]) == 0
    at = json.loads((tmp_path / "at" / "config.json").read_text())
    ref = json.loads((tmp_path / "ref" / "config.json").read_text())
    assert (at["train"]["eps_ramp"], at["train"]["lr_warmup"]) == (DEFAULT_EPS_RAMP, DEFAULT_LR_WARMUP)
    assert (ref["train"]["eps_ramp"], ref["train"]["lr_warmup"]) == (0.0, 0.2)
    assert at["run_id"] != ref["run_id"]
    assert json.loads((tmp_path / "at" / "metrics.json").read_text())["recipe"]["eps_ramp"] == DEFAULT_EPS_RAMP


@pytest.mark.parametrize("ramp, warmup, epochs, first", [
    (0.25, 0.0, 4, 2), (0.25, 0.0, 3, 2), (0.0, 0.0, 4, 1), (0.25, 0.0, 1, 1), (0.5, 0.0, 2, 2),
    (0.0, 0.1, 10, 2), (0.1, 0.3, 10, 4), (0.2, 0.0, 10, 3)])
def test_the_first_selectable_epoch_is_one_full_epoch_after_the_ramp(ramp, warmup, epochs, first):
    from delusive.defenses.recipe import first_selectable_epoch

    cfg = TrainConfig(epochs=epochs, eps_ramp=ramp, lr_warmup=warmup)
    assert first_selectable_epoch(cfg) == first


def test_the_epoch_is_selected_after_the_ramp_on_the_defenders_own_budget(tmp_path):
    """An AT run with a ramp never returns an epoch from inside the ramp, and its robust validation accuracy
    is measured at the defense's ε (0.05), not the evaluation's (0.2). Control: without a ramp epoch 1 is a
    candidate again."""
    argv = ["train", "--dataset", "synthetic", "--train-subset", "300", "--epochs", "4", "--robust-subset", "10",
            "--eval-steps", "1", "--eval-attack", "pgd", "--device", "cpu", "--defense", "pgd_at", "--steps", "1",
            "--eps", "0.05", "--eval-eps", "0.2", "--val-size", "30"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main([*argv, "--eps-ramp", "0.25", "--out", str(tmp_path / "ramp")]) == 0
        assert main([*argv, "--eps-ramp", "0", "--out", str(tmp_path / "flat")]) == 0
    ramp = json.loads((tmp_path / "ramp" / "metrics.json").read_text())
    flat = json.loads((tmp_path / "flat" / "metrics.json").read_text())
    assert ramp["selection"] == "val_robust_accuracy" and ramp["selection_threat"] == "linf 0.05"
    assert ramp["selection_from_epoch"] == 2 and ramp["selected_epoch"] >= 2
    best = json.loads((tmp_path / "ramp" / "best.json").read_text())
    assert best["epoch"] == ramp["selected_epoch"]
    history = json.loads((tmp_path / "ramp" / "history.json").read_text())
    eligible = [h for h in history if h["epoch"] >= 2]
    assert best["score"] == max(h["val_robust_accuracy"] for h in eligible)
    assert flat["selection_from_epoch"] == 1


@pytest.mark.parametrize(("defense", "expected"), [
    ("pgd_at", "val_robust_accuracy"), ("trades", "val_robust_accuracy"), ("fast_at", "val_robust_accuracy"),
    ("jpeg+pgd_at", "val_robust_accuracy"),
    ("random_noise", "val_natural_accuracy"),  # noise in the ε-ball trains for no robustness: selected like ST
    ("standard", "val_natural_accuracy"), ("cutout", "val_natural_accuracy"),
])
def test_only_adversarial_training_selects_its_epoch_on_robust_accuracy(defense, expected):
    from delusive.defenses.compose import create_defense
    from delusive.experiments.pipeline import EvalPlan, selection_metric

    obj = create_defense(defense, norm="linf", eps="0.2") if defense not in ("standard", "cutout") \
        else create_defense(defense)
    assert selection_metric(EvalPlan(norm="linf", eps="0.2"), obj, has_val=True) == expected
    assert selection_metric(EvalPlan(norm="linf", eps="0.2"), obj, has_val=False) is None  # nothing to select on


def test_the_monitor_samples_the_whole_set_so_a_label_sorted_set_is_not_a_collapse():
    # 600 images a class, stored class by class (an image folder, a rotation view): the first 512 are class 0
    import numpy as np

    from delusive.data import make_synthetic
    from delusive.defenses.loop import _top_class_share, probe_indices

    ds = make_synthetic(2400, num_classes=4, shape=(1, 16, 16), seed=1)
    ds = ds.subset(np.argsort(ds.y, kind="stable"))
    assert set(ds.y[:512].tolist()) == {0}
    assert sorted(np.bincount(ds.y[probe_indices(len(ds), "cpu").numpy()]).tolist()) == [128] * 4
    model = _model()
    with warnings.catch_warnings():
        warnings.simplefilter("error", CollapseWarning)
        res = fit(model, ds, Standard(), TrainConfig(epochs=2, batch_size=64, lr=0.1, seed=0))
    assert not any(h["collapsed"] for h in res.history) and res.history[-1]["train_accuracy"] > 0.9
    # live control: the same trained model on the first 512 images predicts one class, as it should, which a
    # monitor looking at them would have read as a collapse
    x, _ = ds.tensors()
    assert _top_class_share(model.eval(), x[:512], 4, "fp32") > 0.9
