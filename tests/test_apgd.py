"""APGD (Croce & Hein, ICML 2020) and the named test-time attacks: feasibility of every iterate, the paper's
step-size schedule, the DLR losses, strength against PGD-20, ε = 0 and seeds."""

from fractions import Fraction

import pytest
import torch
from torch import nn

from delusive import runtime
from delusive.data import make_synthetic
from delusive.evaluation.attacks import ATTACK_NAMES, default_steps, robust_correct
from delusive.perturb import APGDIterate, apgd, checkpoint_fractions, checkpoints, pgd
from delusive.perturb.losses import cross_entropy, dlr, dlr_targeted
from delusive.threat import L2Ball, LinfBall, Masked, half_mask

K = 5


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def trained():
    """An MLP trained (full batch, a second on a CPU) on a 5-class synthetic 8×8 task, and its test split."""
    torch.manual_seed(0)
    train = make_synthetic(500, num_classes=K, shape=(1, 8, 8), seed=3)
    test = make_synthetic(120, num_classes=K, shape=(1, 8, 8), seed=3, sample_seed=1)
    x, y = train.tensors()
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, K))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    model.eval()
    xt, yt = test.tensors()
    return model, xt, yt


class Constant(nn.Module):
    """Logits that ignore the input: the objective never changes and its gradient is zero."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0]]))

    def forward(self, x):
        return self.bias.expand(x.shape[0], -1) + 0 * x.flatten(1).sum(1, keepdim=True)


# --- the step-size schedule --------------------------------------------------------------------------------
def test_checkpoints_follow_the_papers_recursion():
    # p0 = 0, p1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), written out by hand
    assert checkpoint_fractions() == [Fraction(x, 100) for x in (0, 22, 41, 57, 70, 80, 87, 93, 99)]
    assert checkpoints(100) == [0, 22, 41, 57, 70, 80, 87, 93, 99]
    # w_j = ceil(p_j * N): 2.2 -> 3, 4.1 -> 5, 5.7 -> 6, 7, 8, 8.7 -> 9, 9.3 -> 10, 9.9 -> 10 (merged)
    assert checkpoints(10) == [0, 3, 5, 6, 7, 8, 9, 10]
    assert checkpoints(0) == [0]


def _step_sizes(model, x, y, threat, steps, **kw):
    seen: list[APGDIterate] = []
    apgd(model, x, y, threat, steps=steps, callback=seen.append, generator=runtime.generator(0), **kw)
    return torch.stack([it.step_size for it in seen]), [it.k for it in seen]


def test_halving_conditions_on_a_flat_objective():
    """Nothing improves: condition 1 halves at every checkpoint (ρ = 0.75); with ρ = 0 only condition 2 is
    left, and it skips the checkpoint after each halving (η changed there), so halvings alternate."""
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.zeros(3, dtype=torch.long)
    eps, steps = 0.1, 100
    marks = checkpoints(steps)[1:]
    eta, ks = _step_sizes(Constant(), x, y, LinfBall(eps), steps)
    assert ks == list(range(steps + 1))
    expect = [2 * eps / 2 ** sum(m <= k for m in marks) for k in ks]
    assert torch.allclose(eta, torch.tensor(expect)[:, None].expand(-1, 3))
    eta0, _ = _step_sizes(Constant(), x, y, LinfBall(eps), steps, rho=0.0)
    halvings = [j for j in range(1, len(marks) + 1) if j % 2 == 1]  # w1, w3, w5, w7
    expect0 = [2 * eps / 2 ** sum(marks[j - 1] <= k for j in halvings) for k in ks]
    assert torch.allclose(eta0, torch.tensor(expect0)[:, None].expand(-1, 3))
    assert not torch.allclose(eta, eta0)  # the two conditions are different rules


def test_step_size_changes_only_by_halving_at_checkpoints(trained):
    model, x, y = trained
    eta, ks = _step_sizes(model, x[:60], y[:60], LinfBall(0.15), 40)
    marks = set(checkpoints(40)[1:])
    assert torch.all(eta[0] == 0.3)
    for k in range(1, len(ks)):
        changed = eta[k] != eta[k - 1]
        if k not in marks:
            assert not bool(changed.any()), f"step size changed off-checkpoint at k={k}"
        else:
            assert torch.equal(eta[k][changed], eta[k - 1][changed] / 2)
    changed_total = eta[-1] != eta[0]
    assert bool(changed_total.any())  # some samples did halve ...
    assert len(set(eta[-1].tolist())) > 1  # ... and not all by the same number of halvings: per-sample η


def test_each_step_follows_algorithm_1(trained):
    """Replays every step from the recorded iterates: x^(1) = P(x^(0) + η·sign ∇f); then
    x^(k+1) = P(x^(k) + α(z − x^(k)) + (1 − α)(x^(k) − x^(k−1))) with z = P(x^(k) + η·sign ∇f(x^(k))), where a
    sample that halved at checkpoint k has x^(k) replaced by its best point so far (Algorithm 1's restart)."""
    model, x, y = trained
    x, y = x[:40], y[:40]
    threat, alpha = LinfBall(0.15), 0.75
    seen: list[APGDIterate] = []
    apgd(model, x, y, threat, steps=30, alpha=alpha, callback=seen.append, generator=runtime.generator(4))

    def loss_and_grad(z):
        z = z.clone().requires_grad_(True)
        f = cross_entropy(model(z), y)
        return f.detach(), torch.autograd.grad(f.sum(), z)[0]

    losses = torch.stack([loss_and_grad(it.x)[0] for it in seen])
    effective = []  # x^(k) after Algorithm 1 may have replaced it by the best point so far
    for k, it in enumerate(seen):
        best_k = losses[: k + 1].argmax(0)  # first index of the highest loss (the best point moves on strict gains)
        x_best = torch.stack([seen[int(b)].x[i] for i, b in enumerate(best_k)])
        effective.append(torch.where(it.restarted.view(-1, 1, 1, 1), x_best, it.x))
    n_restarted = sum(int(it.restarted.sum()) for it in seen)
    for k in range(len(seen) - 1):
        base, prev = effective[k], effective[max(k - 1, 0)]
        a = 1.0 if k == 0 else alpha
        eta = seen[k].step_size.view(-1, 1, 1, 1)
        z = threat.project(base + eta * loss_and_grad(base)[1].sign(), x)
        expect = threat.project(base + a * (z - base) + (1 - a) * (base - prev), x)
        assert torch.allclose(seen[k + 1].x, expect, atol=1e-6), f"step {k} -> {k + 1}"
    assert n_restarted > 0  # restarts from the best point were exercised


# --- feasibility -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "threat",
    [LinfBall(0.2), L2Ball(1.2), Masked(LinfBall(0.3), half_mask((1, 8, 8), "top"))],
    ids=repr,
)
@pytest.mark.parametrize("loss", ["ce", "dlr-targeted"])
def test_every_iterate_stays_in_the_threat_model(trained, threat, loss):
    model, x, y = trained
    x, y = x[:40], y[:40]
    seen: list[APGDIterate] = []
    res = apgd(model, x, y, threat, steps=12, loss=loss, n_target_classes=2, restarts=2,
               generator=runtime.generator(1), callback=seen.append)
    assert len(seen) >= 13
    moved = 0.0
    for it in seen:
        assert bool(threat.contains(it.x, x[it.index], tol=1e-5).all()), f"run {it.run} iterate {it.k} infeasible"
        moved = max(moved, float(threat.norm(it.x - x[it.index]).max()))
    assert moved > 0.5 * threat.eps  # the iterates do move: the check above is not vacuous
    assert bool(threat.contains(res.x_adv, x, tol=1e-5).all())
    # a sample reported misclassified comes with an x_adv that is misclassified
    with torch.no_grad():
        wrong = model(res.x_adv).argmax(1) != y
    assert bool(res.misclassified.any()) and torch.equal(wrong[res.misclassified], res.misclassified[res.misclassified])


# --- losses ----------------------------------------------------------------------------------------------
def test_dlr_losses_equal_their_formulas_on_hand_made_logits():
    z = torch.tensor([[1.0, 4.0, 2.5, -1.0, 3.0]])
    y, t = torch.tensor([0]), torch.tensor([2])
    # sorted: 4, 3, 2.5, 1, -1 -> π1 = 4, π3 = 2.5, π4 = 1
    assert dlr_targeted(z, y, t).item() == pytest.approx(-(1.0 - 2.5) / (4.0 - (2.5 + 1.0) / 2))
    assert dlr(z, y).item() == pytest.approx(-(1.0 - 4.0) / (4.0 - 2.5))
    # invariant to shifting and positive scaling of the logits; cross-entropy is not (the control)
    z2 = 3.0 * z + 7.0
    assert dlr_targeted(z2, y, t).item() == pytest.approx(dlr_targeted(z, y, t).item())
    assert dlr(z2, y).item() == pytest.approx(dlr(z, y).item())
    assert cross_entropy(z2, y).item() != pytest.approx(cross_entropy(z, y).item())
    with pytest.raises(ValueError, match="dlr-targeted.*at least 4 classes.*3"):
        dlr_targeted(z[:, :3], y, t)
    with pytest.raises(ValueError, match="at least 3 classes"):
        dlr(z[:, :2], y)


def test_apgd_t_runs_one_target_per_class_capped_at_k_minus_1(trained):
    model, x, y = trained
    with torch.no_grad():
        ok = model(x).argmax(1) == y
    xs, ys = x[ok][:10], y[ok][:10]
    for n_targets, runs in ((9, K - 1), (2, 2)):
        seen: list[APGDIterate] = []
        apgd(model, xs, ys, LinfBall(0.0), steps=2, loss="dlr-targeted", n_target_classes=n_targets,
             callback=seen.append)
        assert len({it.run for it in seen}) == runs


# --- strength, composition, ε = 0, seeds -----------------------------------------------------------------
def test_apgd_ce_at_least_as_strong_as_pgd20_and_autoattack_strongest(trained):
    model, x, y = trained
    threat = LinfBall(0.2)
    with torch.no_grad():
        clean = model(x).argmax(1) == y
    acc = {a: robust_correct(model, x, y, threat, a, generator=runtime.generator(0), batch_size=64, queries=300)
           for a in ATTACK_NAMES}
    n = {a: int(v.sum()) for a, v in acc.items()}
    assert n["apgd-ce"] <= n["pgd"]
    assert n["autoattack"] <= n["apgd"] <= n["apgd-ce"] <= int(clean.sum())
    assert n["apgd"] <= n["apgd-t"] and n["autoattack"] <= min(n["fab-t"], n["square"])
    assert 0 < n["apgd-ce"] < int(clean.sum())  # a budget where the comparison means something
    for v in acc.values():  # robust implies clean-correct, per example
        assert not bool((v & ~clean).any())
    # the ensembles' first stage is this same APGD-CE run, so their survivors are a subset of APGD-CE's
    assert not bool((acc["autoattack"] & ~acc["apgd-ce"]).any()) and not bool((acc["apgd"] & ~acc["apgd-ce"]).any())
    assert not bool((acc["autoattack"] & ~acc["apgd"]).any())


def test_pgd_attack_is_the_engines_any_iterate_protocol(trained):
    """``pgd``: every restart runs on the whole batch from a random start, drawing from one generator, and an
    example survives only if clean-correct and no iterate of any restart is misclassified."""
    model, x, y = trained
    threat = LinfBall(0.2)
    got = robust_correct(model, x, y, threat, "pgd", steps=10, rel_step_size=0.25, restarts=2,
                         generator=runtime.generator(9), batch_size=50)
    gen = runtime.generator(9)
    expect = []
    for i in range(0, x.shape[0], 50):
        xb, yb = x[i : i + 50], y[i : i + 50]
        with torch.no_grad():
            alive = model(xb).argmax(1) == yb
        for _ in range(2):
            res = pgd(model, xb, yb, threat, steps=10, rel_step_size=0.25, random_start=True, generator=gen)
            alive &= res.first_misclassified < 0
        expect.append(alive)
    assert torch.equal(got, torch.cat(expect))
    control = robust_correct(model, x, y, threat, "apgd-t", steps=10, batch_size=50)
    assert not torch.equal(got, control)


def test_eps_zero_changes_nothing_and_a_positive_eps_does(trained):
    model, x, y = trained
    x, y = x[:60], y[:60]
    with torch.no_grad():
        clean = model(x).argmax(1) == y
    for attack in ATTACK_NAMES:
        ok = robust_correct(model, x, y, LinfBall(0.0), attack, steps=5, queries=20)
        assert torch.equal(ok, clean), attack
    res = apgd(model, x, y, L2Ball(0.0), steps=5)
    assert torch.equal(res.x_adv, x) and not bool(res.misclassified[clean].any())
    control = robust_correct(model, x, y, LinfBall(0.2), "apgd-ce", steps=5)
    assert int(control.sum()) < int(clean.sum())


def test_same_seed_same_result_and_another_seed_differs(trained):
    model, x, y = trained
    x, y = x[:30], y[:30]
    kw = dict(steps=8, restarts=2)
    a = apgd(model, x, y, L2Ball(0.5), generator=runtime.generator(5), **kw)
    b = apgd(model, x, y, L2Ball(0.5), generator=runtime.generator(5), **kw)
    c = apgd(model, x, y, L2Ball(0.5), generator=runtime.generator(6), **kw)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.misclassified, b.misclassified)
    assert not torch.equal(a.x_adv, c.x_adv)
    r1 = robust_correct(model, x, y, LinfBall(0.1), "autoattack", steps=8, queries=40, generator=runtime.generator(2))
    r2 = robust_correct(model, x, y, LinfBall(0.1), "autoattack", steps=8, queries=40, generator=runtime.generator(2))
    assert torch.equal(r1, r2)


def test_parameters_untouched_and_grad_flags_restored(trained):
    model, x, y = trained
    before = [p.detach().clone() for p in model.parameters()]
    flags = [p.requires_grad for p in model.parameters()]
    apgd(model, x[:8], y[:8], LinfBall(0.1), steps=3, loss="dlr-targeted", n_target_classes=2)
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_bad_options_name_the_option(trained):
    model, x, y = trained
    with pytest.raises(ValueError, match="attack: expected one of pgd, apgd-ce, apgd-t, fab-t, square, apgd, "
                                         "autoattack, got 'fab'"):
        robust_correct(model, x, y, LinfBall(0.1), "fab")
    with pytest.raises(ValueError, match="loss: expected one of ce, dlr, dlr-targeted, got 'margin'"):
        apgd(model, x, y, LinfBall(0.1), loss="margin")
    with pytest.raises(ValueError, match="target: only used with loss='dlr-targeted'"):
        apgd(model, x, y, LinfBall(0.1), target=y)
    assert default_steps("pgd") == 20 and default_steps("apgd-ce") == default_steps("autoattack") == 100
