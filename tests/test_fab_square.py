"""FAB-T (Croce & Hein, ICML 2020) and Square (Andriushchenko et al., ECCV 2020), and AutoAttack's standard
version built from them: exact hyperplane projections, success on an undefended model, feasibility of every
query, masks, FAB's minimal distance on a linear model, the ensemble's components and its strength."""

import numpy as np
import pytest
import torch
from scipy.optimize import linprog, minimize
from torch import nn

import delusive.evaluation.attacks as attacks_mod
from delusive import runtime
from delusive.data import make_synthetic
from delusive.evaluation.attacks import COMPONENTS, attack_components, robust_correct
from delusive.perturb import fab_targeted, project_hyperplane_box, square
from delusive.perturb.square import p_selection, pseudo_gaussian
from delusive.threat import L2Ball, LinfBall, Masked, half_mask

K = 5
pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def trained():
    """An undefended conv net trained (full batch, seconds on a CPU) on a 5-class synthetic 1×8×8 task."""
    torch.manual_seed(0)
    train = make_synthetic(500, num_classes=K, shape=(1, 8, 8), seed=3)
    test = make_synthetic(80, num_classes=K, shape=(1, 8, 8), seed=3, sample_seed=1)
    x, y = train.tensors()
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(512, K))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(120):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    model.eval()
    xt, yt = test.tensors()
    with torch.no_grad():
        ok = model(xt).argmax(1) == yt
    assert int(ok.sum()) >= 70  # a model worth attacking
    return model, xt[ok], yt[ok]


class Recorder(nn.Module):
    """Forwards to ``inner`` and keeps every input it was queried at."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.inner(x)


# --- the exact projection of FAB ---------------------------------------------------------------------------
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_hyperplane_box_projection_is_the_minimum_norm_point(norm):
    """Our closed form against a generic solver (LP for ℓ∞, SLSQP for ℓ2) on random problems."""
    gen = torch.Generator().manual_seed(1)
    d = 10
    for _ in range(6):
        p = torch.rand(1, d, generator=gen, dtype=torch.float64)
        w = torch.randn(1, d, generator=gen, dtype=torch.float64)
        c = 0.6 * torch.randn(1, generator=gen, dtype=torch.float64)
        delta = project_hyperplane_box(p, w, c, norm)[0]
        assert abs(float(w[0] @ delta) - float(c)) < 1e-9  # on the hyperplane
        assert bool(((p[0] + delta) >= -1e-12).all() and ((p[0] + delta) <= 1 + 1e-12).all())  # in the box
        pp, ww, cc = p[0].numpy(), w[0].numpy(), float(c)
        bounds = list(zip(-pp, 1 - pp, strict=True))
        if norm == "linf":
            a_ub = np.r_[np.c_[np.eye(d), -np.ones(d)], np.c_[-np.eye(d), -np.ones(d)]]
            res = linprog(np.r_[np.zeros(d), 1.0], A_ub=a_ub, b_ub=np.zeros(2 * d), A_eq=np.r_[ww, 0][None],
                          b_eq=[cc], bounds=[*bounds, (0, None)])
            assert res.success
            assert float(delta.abs().max()) == pytest.approx(res.fun, abs=1e-7)
        else:
            res = minimize(lambda v: float(v @ v), np.zeros(d), jac=lambda v: 2 * v, bounds=bounds, method="SLSQP",
                           constraints=[{"type": "eq", "fun": lambda v, ww=ww, cc=cc: ww @ v - cc,
                                         "jac": lambda v, ww=ww: ww}],
                           options={"ftol": 1e-14, "maxiter": 2000})
            assert res.success
            assert float(delta.norm()) == pytest.approx(float(np.sqrt(res.fun)), abs=1e-6)


def test_projection_respects_room_and_reports_the_closest_point_when_out_of_reach():
    p = torch.full((1, 4), 0.5)
    w = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    room = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    d = project_hyperplane_box(p, w, torch.tensor([0.4]), "linf", room)[0]
    assert torch.allclose(d, torch.tensor([0.2, 0.0, 0.2, 0.0]))
    far = project_hyperplane_box(p, w, torch.tensor([5.0]), "l2", room)[0]  # unreachable: every movable to its bound
    assert torch.allclose(far, torch.tensor([0.5, 0.0, 0.5, 0.0]))


# --- Square ------------------------------------------------------------------------------------------------
def test_square_schedule_and_block_follow_the_paper():
    assert p_selection(0.8, 0, 10000) == 0.8 and p_selection(0.8, 10, 10000) == 0.8
    assert p_selection(0.8, 11, 10000) == 0.4 and p_selection(0.8, 8001, 10000) == 0.8 / 512
    assert p_selection(0.8, 6, 5000) == 0.4  # the schedule is rescaled to the budget: 6/5000 = 12/10000
    eta = pseudo_gaussian(7, torch.device("cpu"))
    assert float(eta.pow(2).sum()) == pytest.approx(1.0)
    assert bool((eta[:3] > 0).all() and (eta[3:] < 0).all())  # two halves of opposite sign
    assert float(eta[1, 3]) > float(eta[0, 0])  # mass peaks at the centre of each half


@pytest.mark.parametrize("threat", [LinfBall(0.3), L2Ball(2.0)], ids=["linf", "l2"])
def test_square_breaks_an_undefended_model_and_every_query_stays_feasible(trained, threat):
    model, x, y = trained
    rec = Recorder(model)
    res = square(rec, x, y, threat, queries=300, generator=runtime.generator(0))
    assert int(res.misclassified.sum()) >= 0.8 * x.shape[0]
    assert bool(threat.contains(res.x_adv, x, tol=1e-5).all())
    with torch.no_grad():
        assert torch.equal(model(res.x_adv).argmax(1) != y, res.misclassified)
    assert int(res.queries.max()) <= 301 and int(res.queries.min()) >= 1
    # the start is the first query, on every example: stripes for ℓ∞ (constant along each column)
    first = rec.seen[0]
    assert bool(threat.contains(first, x, tol=1e-5).all())
    if isinstance(threat, LinfBall):
        sign = torch.sign((first - x).where((first - x).abs() > 1e-6, torch.zeros_like(x)))
        moved = sign.abs().sum(2)  # per column: how many pixels moved, and all in one direction
        assert bool((sign.sum(2).abs() == moved).all()) and int(moved.sum()) > 0.5 * x[:, :, 0].numel() * 8


def test_square_queries_stay_feasible_example_by_example(trained):
    """Track every queried point back to its example: the attack queries the unbroken examples in order."""
    model, x, y = trained
    threat = L2Ball(1.0)
    state = {"alive": torch.ones(x.shape[0], dtype=torch.bool), "checked": 0, "bad": 0}

    class Check(nn.Module):
        def forward(self, q):
            idx = state["alive"].nonzero().squeeze(1)
            assert q.shape[0] == idx.numel()  # only the unbroken examples are queried, in order
            state["bad"] += int((~threat.contains(q, x[idx], tol=1e-5)).sum())
            state["checked"] += q.shape[0]
            out = model(q)
            state["alive"][idx] = out.argmax(1) == y[idx]
            return out

    res = square(Check(), x, y, threat, queries=100, generator=runtime.generator(1))
    assert state["bad"] == 0 and state["checked"] == int(res.queries.sum())


@pytest.mark.parametrize("base", [LinfBall(0.5), L2Ball(2.0)], ids=["linf", "l2"])
def test_square_and_fab_respect_a_mask(trained, base):
    model, x, y = trained
    mask = half_mask((1, 8, 8), "top")
    threat = Masked(base, mask)
    for run in (lambda m: square(m, x, y, threat, queries=100, generator=runtime.generator(0)).x_adv,
                lambda m: fab_targeted(m, x, y, threat, steps=20, generator=runtime.generator(0)).x_adv):
        rec = Recorder(model)
        adv = run(rec)
        assert bool(threat.contains(adv, x, tol=1e-5).all())
        for q in rec.seen:  # no query ever moved a pixel outside the mask
            if q.shape[0] == x.shape[0]:
                assert float(((q - x) * (1 - mask)).abs().max()) <= 1e-6
    # and the masked attack still finds something (a control that the mask did not switch it off)
    res = square(model, x, y, threat, queries=200, generator=runtime.generator(0))
    fres = fab_targeted(model, x, y, threat, steps=30)
    assert int(res.misclassified.sum()) > 0 and int(fres.misclassified.sum()) > 0


# --- FAB-T -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("threat", [LinfBall(0.3), L2Ball(2.0)], ids=["linf", "l2"])
def test_fab_t_breaks_an_undefended_model_within_the_ball(trained, threat):
    model, x, y = trained
    rec = Recorder(model)
    res = fab_targeted(rec, x, y, threat, steps=30)
    assert int(res.misclassified.sum()) >= 0.8 * x.shape[0]
    assert bool(threat.contains(res.x_adv, x, tol=1e-5).all())
    for q in rec.seen:  # FAB may look beyond ε, never outside the box
        assert float(q.min()) >= 0 and float(q.max()) <= 1
    with torch.no_grad():
        wrong = model(res.x_adv).argmax(1) != y
    assert torch.equal(wrong, res.misclassified)
    assert bool((res.distance[res.misclassified] <= threat.eps + 1e-6).all())
    assert torch.equal(res.x_adv[~res.misclassified], x[~res.misclassified])


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_fab_finds_the_minimal_distance_on_a_linear_model(norm):
    """Two classes, f_1 − f_0 = ⟨w, x⟩ + b: the closest misclassified point is at |⟨w, x⟩ + b| / ‖w‖_dual
    (the box is not binding for these points). FAB's projection is exact, so after its η = 1.05 overshoot and
    backward steps it ends within a few percent of the true distance, never below it."""
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(16, generator=gen) * 0.5
    lin = nn.Linear(16, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.stack([torch.zeros(16), w]))
        lin.bias.copy_(torch.tensor([0.0, -0.05]))
    model = nn.Sequential(nn.Flatten(), lin).eval()
    x = 0.45 + 0.1 * torch.rand(20, 1, 4, 4, generator=gen)
    margin = x.flatten(1) @ w - 0.05
    x, y = x[margin < 0], torch.zeros(int((margin < 0).sum()), dtype=torch.long)
    true = (-(x.flatten(1) @ w - 0.05)) / (w.abs().sum() if norm == "linf" else w.norm())
    threat = LinfBall(1.0) if norm == "linf" else L2Ball(10.0)
    res = fab_targeted(model, x, y, threat, steps=20)
    assert bool(res.misclassified.all())
    assert bool((res.distance >= true * (1 - 1e-4)).all())
    assert bool((res.distance <= true * 1.06).all())
    # ε just below the true distance: nothing is broken (FAB never reports a point outside the ball)
    tight = fab_targeted(model, x, y, type(threat)(float(true.min()) * 0.99), steps=20)
    assert not bool(tight.misclassified.any())


# --- the ensembles ---------------------------------------------------------------------------------------
def test_autoattack_runs_all_four_components_on_the_survivors_and_records_them(trained, monkeypatch):
    model, x, y = trained
    calls: list[tuple[str, int]] = []
    for name in ("apgd", "fab_targeted", "square"):
        real = getattr(attacks_mod, name)

        def spy(*a, _real=real, _name=name, **kw):
            res = _real(*a, **kw)
            label = f"apgd-{kw['loss']}" if _name == "apgd" else {"fab_targeted": "fab-t", "square": "square"}[_name]
            calls.append((label, a[1].shape[0]))
            return res
        monkeypatch.setattr(attacks_mod, name, spy)
    report: dict = {}
    threat = LinfBall(0.12)  # a budget where APGD leaves survivors for the later components
    aa = robust_correct(model, x, y, threat, "autoattack", steps=5, queries=50, report=report,
                        generator=runtime.generator(0))
    assert report["components"] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert [c for c, _ in calls] == ["apgd-ce", "apgd-dlr-targeted", "fab-t", "square"]
    counts = [n for _, n in calls]
    assert counts == sorted(counts, reverse=True) and counts[0] == x.shape[0] and counts[-1] > 0
    assert report["survivors"][-1] == int(aa.sum()) and report["survivors"] == sorted(report["survivors"],
                                                                                         reverse=True)
    calls.clear()
    ap = robust_correct(model, x, y, threat, "apgd", steps=5, generator=runtime.generator(0))
    assert [c for c, _ in calls] == ["apgd-ce", "apgd-dlr-targeted"]
    # same seed: APGD-CE and APGD-T see the same draws, so autoattack's survivors are a subset of apgd's
    assert not bool((aa & ~ap).any()) and int(aa.sum()) <= int(ap.sum())


def test_components_per_name_and_class_count():
    assert COMPONENTS["autoattack"] == ("apgd-ce", "apgd-t", "fab-t", "square")
    assert attack_components("autoattack", 10) == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert attack_components("autoattack", 3) == ["apgd-ce", "fab-t", "square"]
    assert attack_components("apgd", 2) == ["apgd-ce"]
    assert attack_components("fab-t", 2) == ["fab-t"]
    with pytest.raises(ValueError, match="apgd-t: the targeted DLR loss needs at least 4 classes, the model has 3"):
        attack_components("apgd-t", 3)
    with pytest.raises(ValueError, match="attack: expected one of pgd, apgd-ce, apgd-t, fab-t, square, apgd, "
                                         "autoattack, got 'fab'"):
        attack_components("fab", 10)


def test_fab_t_on_two_classes_attacks_the_one_other_class():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2)).eval()
    x = torch.rand(12, 1, 4, 4)
    with torch.no_grad():
        y = model(x).argmax(1)
    report: dict = {}
    ok = robust_correct(model, x, y, LinfBall(1.0), "fab-t", steps=10, report=report)
    assert report["components"] == ["fab-t"] and not bool(ok.any())  # ε = 1 covers the whole box


def test_same_seed_same_answer(trained):
    model, x, y = trained
    a = robust_correct(model, x, y, L2Ball(1.0), "square", queries=60, generator=runtime.generator(3))
    b = robust_correct(model, x, y, L2Ball(1.0), "square", queries=60, generator=runtime.generator(3))
    assert torch.equal(a, b)
    s1 = square(model, x, y, L2Ball(1.0), queries=60, generator=runtime.generator(3))
    s2 = square(model, x, y, L2Ball(1.0), queries=60, generator=runtime.generator(4))
    assert not torch.equal(s1.x_adv, s2.x_adv)


def test_bad_options_name_the_option(trained):
    model, x, y = trained
    with pytest.raises(ValueError, match="queries: must be >= 0, got -1"):
        square(model, x, y, LinfBall(0.1), queries=-1)
    with pytest.raises(ValueError, match="p_init: must be in"):
        square(model, x, y, LinfBall(0.1), p_init=0)
    with pytest.raises(ValueError, match="n_target_classes: must be >= 1, got 0"):
        fab_targeted(model, x, y, LinfBall(0.1), n_target_classes=0)
    with pytest.raises(ValueError, match="queries: must be >= 0"):
        robust_correct(model, x, y, LinfBall(0.1), "square", queries=-5)
