"""The AT variants and the random-noise baseline (issue 6): each reduces to standard training or PGD-AT where
its paper says it should (same seed, same batch, same loss and gradients), each trains under ℓ∞ and ℓ2,
GAIRAT's weights and FAT's τ schedule follow the originals, attacks run in eval mode and the loss in train
mode, params round-trip into a run's identity, bad hyperparameters are refused, and the CLI selects them."""

import copy
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from delusive.defenses import (
    FAT,
    GAIRAT,
    OBJECTIVES,
    TRADES,
    CatastrophicOverfittingWarning,
    FastAT,
    FreeAT,
    RandomNoise,
    Standard,
    TrainConfig,
    create_objective,
    fat_tau,
    fit,
    gair_weights,
    run_identity,
)
from delusive.defenses.checks import ORIGINAL_REL_STEP
from delusive.models import create_model, model_hash
from delusive.threat import make_threat

EPS = {"linf": "0.1", "l2": "1.0"}
VARIANTS = ("trades", "fat", "gairat", "random_noise", "fast_at", "free_at")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One intra-op thread: on the shared 2-core machine, two threads that wait on each other are many times
    slower under contention than one (these tensors are tiny anyway). Restored after the module."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _model(seed=0):
    return create_model("small-cnn", 4, 1, 16, seed=seed)


@pytest.fixture(scope="module")
def batch(synth):
    x, y = synth.tensors()
    return x[:64], y[:64]


@pytest.fixture
def trained(synth_model):
    """A trained model (examples sit at varied distances from the boundary, so κ and early stops vary)."""
    return copy.deepcopy(synth_model).train()


def _step(obj, model, x, y, seed=0):
    """One call of the loop's interface: loss, logits and the loss's gradient w.r.t. the weights."""
    out = obj.loss(model, x, y, torch.arange(len(y)), torch.Generator().manual_seed(seed))
    grads = torch.autograd.grad(out.loss, list(model.parameters()))
    return out, grads


def _assert_same_step(obj, reference, model, x, y):
    """``obj`` and ``reference`` (an objective or the result of ``_step``) give the same step."""
    oa, ga = _step(obj, model, x, y)
    ob, gb = _step(reference, model, x, y) if hasattr(reference, "loss") else reference
    torch.testing.assert_close(oa.loss, ob.loss)
    torch.testing.assert_close(oa.logits, ob.logits)
    for p, q in zip(ga, gb, strict=True):
        torch.testing.assert_close(p, q)
    return oa


# --- equivalences (the bars) ---------------------------------------------------------------------


@pytest.mark.parametrize("norm", EPS)
def test_trades_with_beta_zero_is_standard_training(norm, trained, batch):
    x, y = batch
    standard = _step(Standard(), trained, x, y)
    _assert_same_step(create_objective("trades", norm, EPS[norm], beta=0.0), standard, trained, x, y)
    # with β > 0 the robust KL term is live: the loss grows
    out, _ = _step(create_objective("trades", norm, EPS[norm]), trained, x, y)
    assert out.stats["robust_kl"] > 1e-4 and float(out.loss.detach()) > float(standard[0].loss.detach()) + 1e-4


@pytest.mark.parametrize("norm", EPS)
def test_pgd_at_with_zero_eps_is_standard_training(norm, trained, batch):
    x, y = batch
    _assert_same_step(create_objective("pgd_at", norm, "0"), Standard(), trained, x, y)
    at, _ = _step(create_objective("pgd_at", norm, EPS[norm]), trained, x, y)  # control: a real ball differs
    assert not torch.allclose(at.loss, _step(Standard(), trained, x, y)[0].loss)


@pytest.mark.parametrize("norm", EPS)
def test_fat_with_tau_at_least_k_is_pgd_at(norm, trained, batch):
    x, y = batch
    pgd_at = _step(create_objective("pgd_at", norm, EPS[norm], steps=10, rel_step_size=ORIGINAL_REL_STEP),
                   trained, x, y)
    for tau in (10, 25):
        fat = create_objective("fat", norm, EPS[norm], tau=tau, omega=0.0)  # same K, step and uniform start
        assert _assert_same_step(fat, pgd_at, trained, x, y).stats["mean_steps"] == 10
    # the default (τ = 0 early in training) stops early and so trains on different points
    early, _ = _step(create_objective("fat", norm, EPS[norm], omega=0.0), trained, x, y)
    assert early.stats["tau"] == 0 and early.stats["mean_steps"] < 10
    assert not torch.allclose(early.loss, pgd_at[0].loss)


@pytest.mark.parametrize("norm", EPS)
def test_gairat_with_constant_weights_is_pgd_at(norm, trained, batch):
    x, y = batch
    pgd_at = _step(create_objective("pgd_at", norm, EPS[norm], steps=10, rel_step_size=ORIGINAL_REL_STEP),
                   trained, x, y)
    constant = create_objective("gairat", norm, EPS[norm], weight_fn="constant", begin_fraction=0.0)
    constant.begin_epoch(0, 10)
    assert constant.reweighting()
    _assert_same_step(constant, pgd_at, trained, x, y)
    # during the warm-up the tanh rule is off: plain PGD-AT as well
    warm = create_objective("gairat", norm, EPS[norm])
    warm.begin_epoch(3, 10)
    assert not warm.reweighting()
    _assert_same_step(warm, pgd_at, trained, x, y)
    # after the warm-up the weights change the loss
    warm.begin_epoch(4, 10)
    assert warm.reweighting()
    out, _ = _step(warm, trained, x, y)
    assert out.stats["max_weight"] > 1.0
    assert not torch.allclose(out.loss, pgd_at[0].loss)


@pytest.mark.parametrize("norm", EPS)
def test_random_noise_with_zero_eps_is_standard_training(norm, trained, batch):
    x, y = batch
    standard = _step(Standard(), trained, x, y)
    _assert_same_step(create_objective("random_noise", norm, "0"), standard, trained, x, y)
    noisy, _ = _step(create_objective("random_noise", norm, EPS[norm]), trained, x, y)
    assert not torch.allclose(noisy.loss, standard[0].loss)


def test_random_noise_trains_on_a_random_point_of_the_ball(batch):
    x, y = batch
    seen = {}

    class Spy(nn.Module):
        def forward(self, inp):
            seen["x"] = inp.detach()
            return torch.zeros(inp.shape[0], 4, requires_grad=True)

    for norm in EPS:
        threat = make_threat(norm, EPS[norm])
        RandomNoise(threat).loss(Spy(), x, y, torch.arange(64), torch.Generator().manual_seed(0))
        assert bool(threat.contains(seen["x"], x).all())
        assert float(threat.norm(seen["x"] - x).min()) > 0


# --- every variant trains, ℓ∞ and ℓ2 ---------------------------------------------------------------------


@pytest.mark.parametrize("norm", EPS)
@pytest.mark.parametrize("name", VARIANTS)
def test_each_variant_runs_a_short_fit(name, norm, synth):
    model = _model()
    before = model_hash(model)
    res = fit(model, synth, create_objective(name, norm, EPS[norm]), TrainConfig(epochs=1, batch_size=64))
    assert model_hash(model) != before
    assert len(res.history) == 1 and math.isfinite(res.history[0]["train_loss"])


def test_registry_and_run_identity(synth):
    assert set(VARIANTS) <= set(OBJECTIVES.names())
    cfg, model = TrainConfig(epochs=1, batch_size=64), _model()
    ids = {run_identity(create_objective(n, "linf", "0.1"), cfg, synth, model) for n in VARIANTS}
    assert len(ids) == len(VARIANTS)
    a = run_identity(create_objective("trades", "linf", "0.1", beta=6.0), cfg, synth, model)
    b = run_identity(create_objective("trades", "linf", "0.1", beta=1.0), cfg, synth, model)
    c = run_identity(create_objective("trades", "l2", "0.1", beta=6.0), cfg, synth, model)
    assert len({a, b, c}) == 3


# --- attacks in eval mode, loss in train mode ------------------------------------------------------------


@pytest.mark.parametrize(("name", "train_forwards"),
                         [("pgd_at", 1), ("trades", 2), ("fat", 1), ("gairat", 1), ("random_noise", 1),
                          ("fast_at", 1), ("free_at", 1)])  # free AT's input gradient is its training pass: one forward
def test_attacks_run_in_eval_mode_and_the_loss_in_train_mode(name, train_forwards, batch):
    x, y = batch
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 16 * 16, 4)).train()
    bn = model[1]
    create_objective(name, "linf", "0.1").loss(model, x, y, torch.arange(64), torch.Generator().manual_seed(0))
    assert model.training
    assert int(bn.num_batches_tracked) == train_forwards  # only the loss's forwards touched BN statistics


# --- GAIRAT weights and FAT's τ --------------------------------------------------------------------------


def test_gairat_weights_are_normalised_and_decrease_with_kappa():
    kappa = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10, 3])
    for fn in ("tanh", "sigmoid", "discrete"):
        w = gair_weights(kappa, 10, -1.0, fn)
        torch.testing.assert_close(w.sum(), torch.tensor(float(len(kappa))))
        assert bool((w[:11].diff() < 0).all())  # strictly decreasing in κ
        assert float(w[10]) == float(w[11])
    torch.testing.assert_close(gair_weights(kappa, 10, 0.0, "constant"), torch.ones(len(kappa)))
    # the original's formula at K = 10: ((λ + (K/2 − κ)·5/(K/2)).tanh() + 1)/2, normalised to the batch
    raw = ((-1.0 + (5 - kappa.float()) * 5 / 5).tanh() + 1) / 2
    torch.testing.assert_close(gair_weights(kappa, 10), raw * len(kappa) / raw.sum())
    # a larger λ flattens the weights
    assert float(gair_weights(kappa, 10, 3.0).max()) < float(gair_weights(kappa, 10, -1.0).max())


def test_gairat_warm_up_follows_the_original_begin_epoch():
    g = GAIRAT(make_threat("linf", "0.1"))
    on = []
    for e in range(120):
        g.begin_epoch(e, 120)
        on.append(g.reweighting())
    assert on.index(True) == 59 and all(on[59:])  # 1-based epoch 60 of 120, as in GAIRAT.py


def test_fat_tau_schedule():
    taus = [fat_tau(e, 120) for e in range(120)]  # original: τ = 0 for epochs 1-50, 1 for 51-90, 2 after
    assert taus == [0] * 50 + [1] * 40 + [2] * 30
    assert [fat_tau(e, 12) for e in range(12)] == [0] * 5 + [1] * 4 + [2] * 3
    assert [fat_tau(e, 1) for e in range(1)] == [0]
    assert [fat_tau(e, 10, tau=3) for e in range(10)] == [3] * 10
    fat = FAT(make_threat("l2", "0.5"))
    fat.begin_epoch(100, 120)
    assert fat.current_tau() == 2


# --- params, errors, CLI ---------------------------------------------------------------------------------


def test_params_round_trip_through_describe():
    d = create_objective("trades", "linf", "0.1", beta=6.0).describe()
    assert d["name"] == "trades" and d["threat"]["norm"] == "linf" and d["threat"]["eps_text"] == "0.1"
    assert d["params"] == {"beta": 6.0, "steps": 10, "rel_step_size": ORIGINAL_REL_STEP, "init_std": 0.001}
    assert create_objective("trades", "linf", "0.1", **d["params"]).describe() == d
    for name in VARIANTS:
        d = create_objective(name, "l2", "0.5").describe()
        assert create_objective(name, "l2", "0.5", **d["params"]).describe() == d
    assert FAT(make_threat("linf", "0.1")).params() == {"steps": 10, "rel_step_size": ORIGINAL_REL_STEP,
                                                        "tau": "dynamic", "omega": 0.001, "random_start": True}
    assert GAIRAT(make_threat("linf", "0.1")).params()["lam"] == -1.0
    assert FastAT(make_threat("linf", "0.1")).params() == {"rel_step_size": 1.25, "random_start": True,
                                                           "overfit_check": False}
    assert TRADES(make_threat("linf", "0.1")).beta == 6.0
    assert FreeAT(make_threat("linf", "0.1")).params() == {"replays": 8, "rel_step_size": 1.0}


@pytest.mark.parametrize(("name", "params", "match"), [
    ("trades", {"beta": -1.0}, "beta must be a finite number >= 0, got -1.0"),
    ("trades", {"steps": -2}, "steps"),
    ("fat", {"tau": "sometimes"}, "tau must be an integer >= 0 or 'dynamic'"),
    ("fat", {"omega": -0.1}, "omega"),
    ("gairat", {"weight_fn": "relu"}, "weight_fn must be one of tanh, sigmoid, discrete, constant"),
    ("gairat", {"begin_fraction": 1.5}, "begin_fraction"),
    ("gairat", {"steps": 0}, "steps must be an integer >= 1"),
    ("gairat", {"lam": float("nan")}, "lam"),
    ("fast_at", {"rel_step_size": 0.0}, "rel_step_size"),
    ("fast_at", {"steps": 3}, "unknown parameter"),
    ("free_at", {"replays": 0}, "replays must be an integer >= 1"),
    ("free_at", {"replays": 2.5}, "replays"),
    ("free_at", {"rel_step_size": -1.0}, "rel_step_size"),
])
def test_bad_hyperparameters_are_refused(name, params, match):
    with pytest.raises(ValueError, match=match):
        create_objective(name, "linf", "0.1", **params)


@pytest.mark.parametrize("name", ["pgd_at", "trades", "fat", "gairat"])
def test_pgd_based_at_refuses_zero_steps(name):
    """AT with 0 PGD steps is not AT: refused with a message naming steps; 1 step (the control) is accepted."""
    with pytest.raises(ValueError, match=f"defense '{name}': steps must be an integer >= 1, got 0"):
        create_objective(name, "linf", "0.1", steps=0)
    assert create_objective(name, "linf", "0.1", steps=1).params()["steps"] == 1


def test_cli_refuses_pgd_at_with_zero_steps(tmp_path):
    """The tester's case: ``delusive train --defense pgd_at --steps 0`` used to train with clean inputs."""
    from delusive.cli.common import UsageError
    from delusive.cli.main import build_parser
    from delusive.cli.train import build_objective

    def args(steps):
        return build_parser().parse_args(["train", "--dataset", "synthetic", "--defense", "pgd_at", "--norm", "linf",
                                          "--eps", "0.1", "--steps", steps, "--out", str(tmp_path / "r")])

    with pytest.raises(UsageError, match="steps must be an integer >= 1, got 0"):
        build_objective(args("0"), "synthetic")
    assert build_objective(args("1"), "synthetic").steps == 1


def test_variants_need_a_threat_model():
    with pytest.raises(ValueError, match="needs a threat model"):
        create_objective("gairat")


def test_cli_selects_variants_and_their_params(tmp_path):
    from delusive.cli.main import build_parser
    from delusive.cli.train import build_objective

    parser = build_parser()
    args = parser.parse_args(["train", "--dataset", "synthetic", "--defense", "trades", "--norm", "l2",
                              "--eps", "0.5", "--steps", "5", "--defense-param", "beta=3",
                              "--defense-param", "init_std=0.002", "--out", str(tmp_path)])
    obj = build_objective(args, "synthetic")
    assert isinstance(obj, TRADES) and (obj.beta, obj.steps, obj.init_std) == (3.0, 5, 0.002)
    assert obj.threat is not None and obj.threat.describe()["norm"] == "l2"
    for name in VARIANTS:
        args = parser.parse_args(["train", "--dataset", "synthetic", "--defense", name, "--out", str(tmp_path)])
        assert build_objective(args, "synthetic").name == name
    args = parser.parse_args(["train", "--dataset", "synthetic", "--defense", "fat", "--defense-param", "tau=dynamic",
                              "--defense-param", "omega=0", "--out", str(tmp_path)])
    assert build_objective(args, "synthetic").params()["tau"] == "dynamic"


# --- fast AT's catastrophic-overfitting monitor ----------------------------------------------------------


def test_fast_at_overfit_check_monitors_without_changing_training(synth, batch):
    cfg = TrainConfig(epochs=3, batch_size=64, seed=3)
    small = synth.subset(list(range(128)))
    a, b = _model(), _model()
    fit(a, small, FastAT(make_threat("linf", "0.1")), cfg)
    checked = FastAT(make_threat("linf", "0.1"), overfit_check=True)
    fit(b, small, checked, cfg)
    assert model_hash(a) == model_hash(b)
    assert checked._prev_robust is not None and checked.overfit_epoch is None
    # a collapse of PGD accuracy between checks warns and is recorded
    x, y = batch
    checked._prev_robust = 1.01
    checked.begin_epoch(5, 10)
    model = _model().train()  # an untrained model: PGD accuracy far below 1
    with pytest.warns(CatastrophicOverfittingWarning, match="catastrophic overfitting"):
        out = checked.loss(model, x, y, torch.arange(64), torch.Generator().manual_seed(0))
    assert checked.overfit_epoch == 5 and out.stats["pgd5_accuracy"] < 0.8
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        checked.loss(model, x, y, torch.arange(64), torch.Generator().manual_seed(0))  # no check mid-epoch


def test_fat_step_noise_in_the_engine_is_seeded_and_feasible(batch):
    from delusive.perturb import pgd

    x, y = batch
    model = _model().eval()
    for norm in EPS:
        threat = make_threat(norm, EPS[norm])
        runs = [pgd(model, x, y, threat, steps=3, random_start=True, step_noise=omega,
                    generator=torch.Generator().manual_seed(1)).x_adv for omega in (0.01, 0.01, 0.0)]
        torch.testing.assert_close(runs[0], runs[1])
        assert not torch.allclose(runs[0], runs[2])
        assert all(bool(threat.contains(r, x).all()) for r in runs)
    with pytest.raises(ValueError, match="step_noise"):
        pgd(model, x, y, make_threat("linf", "0.1"), steps=1, step_noise=-1.0)


def test_experiment_specs_select_variants_with_params():
    from delusive.experiments.spec import expand, parse_spec

    spec = {"datasets": ["synthetic"], "attacks": ["P5"], "attack_budget": {"norm": "linf", "eps": "0.1"},
            "defenses": [{"name": "trades", "norm": "l2", "eps": "0.5", "params": {"beta": 3}},
                         {"name": "trades", "label": "trades-b6", "norm": "l2", "eps": "0.5"},
                         {"name": "fat", "norm": "linf", "eps": "0.1"}]}
    cells = expand(parse_spec(spec))
    assert len({c.cell_id for c in cells}) == 3  # the params are part of each cell's identity
    d = cells[0].defense
    obj = create_objective(d.name, d.norm, d.eps, **d.params)
    assert isinstance(obj, TRADES) and obj.beta == 3.0 and obj.threat.describe()["norm"] == "l2"


# --- free AT: minibatch replay and a perturbation carried across batches ---------------------------------


@pytest.mark.parametrize("norm", EPS)
def test_free_at_with_zero_eps_and_one_replay_is_standard_training(norm, synth, trained, batch):
    x, y = batch
    _assert_same_step(create_objective("free_at", norm, "0", replays=1), Standard(), trained, x, y)
    cfg = TrainConfig(epochs=2, batch_size=64, seed=2)
    a, b = _model(), _model()
    fit(a, synth, Standard(), cfg)
    fit(b, synth, create_objective("free_at", norm, "0", replays=1), cfg)
    assert model_hash(a) == model_hash(b)  # through the loop, weights identical to standard training
    c = _model()
    fit(c, synth, create_objective("free_at", norm, EPS[norm], replays=1), cfg)
    assert model_hash(c) != model_hash(a)  # control: a real budget changes the weights


def test_free_at_replays_every_minibatch_m_times(synth):
    obj = create_objective("free_at", "linf", "0.1", replays=3)
    seen = []
    real = obj.loss

    def spy(model, x, y, idx, gen):
        seen.append(idx.clone())
        return real(model, x, y, idx, gen)

    obj.loss = spy
    res = fit(_model(), synth, obj, TrainConfig(epochs=1, batch_size=64))
    batches = math.ceil(len(synth) / 64)
    assert len(seen) == 3 * batches
    for b in range(batches):  # the same minibatch three times in a row, then the next one
        assert all(torch.equal(seen[3 * b], seen[3 * b + r]) for r in (1, 2))
    assert not torch.equal(seen[0], seen[3])
    assert math.isfinite(res.history[0]["train_loss"])


@pytest.mark.parametrize("norm", EPS)
def test_free_at_carries_a_feasible_perturbation_moved_by_the_training_gradient(norm, trained, batch):
    x, y = batch
    threat = make_threat(norm, EPS[norm])
    obj = FreeAT(threat, replays=2)
    out = obj.loss(trained, x, y, torch.arange(64), torch.Generator())
    assert torch.equal(out.logits, trained(x))  # δ starts at zero
    # the expected first move: one step of α = ε along the input gradient of the same loss
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(trained(xg), y), xg)
    expected = threat.project_delta(threat.eps * threat.direction(g))
    out.loss.backward()  # what the loop does: the backward pass also moves δ
    delta = obj.state_dict()["delta"]
    torch.testing.assert_close(delta, expected)
    assert float(threat.norm(delta).max()) <= threat.eps + 1e-6 and float(delta.abs().sum()) > 0
    second = obj.loss(trained, x, y, torch.arange(64), torch.Generator())  # the next replay sees x + δ
    torch.testing.assert_close(second.logits, trained(torch.clamp(x + expected, 0, 1)))
    # a smaller last batch uses the first rows of the carried buffer, a larger one pads with zeros
    obj.loss(trained, x[:10], y[:10], torch.arange(10), torch.Generator())
    assert obj.state_dict()["delta"].shape[0] == 64


class _Kill(Exception):
    pass


def _killed_then_resumed(make_obj, synth, tmp_path, epochs, kill_at):
    """Train ``make_obj()`` uninterrupted, and again killed in epoch ``kill_at`` then resumed."""
    cfg = TrainConfig(epochs=epochs, batch_size=64, seed=1)
    full_obj, full = make_obj(), _model()
    fit(full, synth, full_obj, cfg, checkpoint_dir=tmp_path / "full")

    def dies(model, epoch):
        if epoch == kill_at:
            raise _Kill
        return {}

    with pytest.raises(_Kill):
        fit(_model(), synth, make_obj(), cfg, checkpoint_dir=tmp_path / "run", eval_fn=dies)
    resumed_obj, resumed = make_obj(), _model()
    res = fit(resumed, synth, resumed_obj, cfg, checkpoint_dir=tmp_path / "run")
    assert res.resumed_from_epoch == kill_at - 1
    return full_obj, full, resumed_obj, resumed


def test_free_at_resume_restores_the_carried_perturbation(synth, tmp_path):
    full_obj, full, resumed_obj, resumed = _killed_then_resumed(
        lambda: create_objective("free_at", "linf", "0.1", replays=2), synth, tmp_path, 3, 2)
    assert model_hash(resumed) == model_hash(full)  # without the restored δ the weights differ (checked)
    torch.testing.assert_close(resumed_obj.state_dict()["delta"], full_obj.state_dict()["delta"])


def test_fast_at_resume_restores_the_overfitting_monitor(synth, tmp_path):
    def monitored():
        obj = create_objective("fast_at", "linf", "0.1", overfit_check=True)
        obj.baselines = []  # the baseline each check compares against
        check = obj._monitor

        def spy(model, x, y):
            obj.baselines.append(obj._prev_robust)
            return check(model, x, y)

        obj._monitor = spy
        return obj

    full_obj, full, resumed_obj, resumed = _killed_then_resumed(monitored, synth, tmp_path, 4, 3)
    assert model_hash(resumed) == model_hash(full)
    assert full_obj.baselines[0] is None and full_obj.baselines[1] is not None
    # the resumed run's checks (epochs 3, 4) compare against the same baselines as the uninterrupted run's
    assert resumed_obj.baselines == full_obj.baselines[-2:]


def test_pgd_at_eps_warmup_grows_the_radius_and_is_off_by_default():
    from delusive.defenses import PGDAT
    from delusive.threat import LinfBall, Masked, half_mask

    plain = PGDAT(LinfBall(0.3), steps=1)
    plain.begin_epoch(0, 10)
    assert plain.current_threat().eps == 0.3  # off by default: the full ball from the first epoch
    warm = PGDAT(Masked(LinfBall(1.0), half_mask((1, 8, 8), "top")), steps=1, eps_warmup=0.5)
    radii = []
    for e in range(10):
        warm.begin_epoch(e, 10)
        t = warm.current_threat()
        radii.append(round(t.eps, 6))
        assert isinstance(t, Masked) and t.base.eps == t.eps  # the mask's base ball shrinks with it
    assert radii == [0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert warm.threat.eps == 1.0  # the configured ball is never modified
    with pytest.raises(ValueError, match="eps_warmup must be a fraction"):
        PGDAT(LinfBall(0.3), eps_warmup=2)
