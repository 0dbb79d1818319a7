"""The one PGD engine: loss goes up when maximising, down when minimising; feasibility; seeds; per-sample
outputs used by FAT and GAIRAT."""

import pytest
import torch
from torch import nn

from delusive.perturb import cross_entropy, pgd
from delusive.threat import L2Ball, LinfBall


def _setup(seed=0):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4)).eval()
    x = torch.rand(16, 1, 8, 8, generator=g)
    y = torch.randint(0, 4, (16,), generator=g)
    return model, x, y


@pytest.mark.parametrize("threat", [LinfBall(0.1), L2Ball(1.0)], ids=repr)
def test_maximising_increases_and_minimising_decreases_loss(threat):
    model, x, y = _setup()
    with torch.no_grad():
        base = cross_entropy(model(x), y)
    up = pgd(model, x, y, threat, steps=10)
    down = pgd(model, x, y, threat, steps=10, maximize=False)
    assert float(up.loss.mean()) > float(base.mean()) + 1e-3
    assert float(down.loss.mean()) < float(base.mean()) - 1e-3
    assert bool((up.loss >= base - 1e-5).all())
    for r in (up, down):
        assert bool(threat.contains(r.x_adv, x).all())


def test_targeted_attack_moves_toward_target():
    model, x, y = _setup(1)
    target = (y + 1) % 4
    with torch.no_grad():
        before = cross_entropy(model(x), target)
    res = pgd(model, x, target, LinfBall(0.3), steps=20, maximize=False)
    assert float(res.loss.mean()) < float(before.mean())


def test_each_restart_starts_from_the_clean_input(monkeypatch):
    model, x, y = _setup(8)
    threat = LinfBall(0.1)
    starts = []
    real = threat.random_init

    def spy(x_clean, generator=None):
        starts.append(x_clean.clone())
        return real(x_clean, generator)

    monkeypatch.setattr(threat, "random_init", spy)
    pgd(model, x, y, threat, steps=4, random_start=True, restarts=3, generator=torch.Generator().manual_seed(0))
    assert len(starts) == 3 and all(torch.equal(s, x) for s in starts)


def test_deterministic_under_seed_and_restarts_keep_the_best():
    model, x, y = _setup(2)
    kw = dict(steps=5, random_start=True, restarts=3)
    a = pgd(model, x, y, LinfBall(0.1), generator=torch.Generator().manual_seed(7), **kw)
    b = pgd(model, x, y, LinfBall(0.1), generator=torch.Generator().manual_seed(7), **kw)
    assert torch.equal(a.x_adv, b.x_adv)
    one = pgd(model, x, y, LinfBall(0.1), steps=5, random_start=True, generator=torch.Generator().manual_seed(7))
    # restarts keep per sample the highest loss, so never worse than the first restart alone
    assert bool((a.loss >= one.loss - 1e-6).all())


def test_parameters_untouched_and_grad_flags_restored():
    model, x, y = _setup(3)
    before = [p.detach().clone() for p in model.parameters()]
    pgd(model, x, y, LinfBall(0.1), steps=3)
    assert all(p.requires_grad for p in model.parameters())
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_zero_steps_and_zero_eps_return_the_clean_input():
    model, x, y = _setup(4)
    assert torch.equal(pgd(model, x, y, LinfBall(0.1), steps=0).x_adv, x)
    assert torch.equal(pgd(model, x, y, LinfBall(0.0), steps=5, random_start=True).x_adv, x)


def test_per_sample_outputs_and_early_stop():
    model, x, y = _setup(5)
    full = pgd(model, x, y, LinfBall(0.5), steps=10)
    with torch.no_grad():
        wrong0 = model(x).argmax(1) != y
    assert torch.equal(full.first_misclassified == 0, wrong0)
    assert bool((full.num_correct <= 10).all()) and bool((full.steps_taken == 10).all())
    # κ counts correct iterates before the first misclassification at least
    never = full.first_misclassified < 0
    assert bool((full.num_correct[never] == 10).all())
    stopped = pgd(model, x, y, LinfBall(0.5), steps=10, early_stop_tau=0)
    hit = full.first_misclassified >= 0
    # with τ = 0 an example stops at its first misclassified iterate
    assert torch.equal(stopped.steps_taken[hit], full.first_misclassified[hit])
    assert bool(stopped.misclassified[hit].all())
    # τ ≥ K never stops anything: identical to plain PGD
    late = pgd(model, x, y, LinfBall(0.5), steps=10, early_stop_tau=10)
    assert torch.equal(late.x_adv, full.x_adv)


def test_bad_arguments_are_rejected():
    model, x, y = _setup()
    with pytest.raises(ValueError, match="steps"):
        pgd(model, x, y, LinfBall(0.1), steps=-1)
    with pytest.raises(ValueError, match="restarts"):
        pgd(model, x, y, LinfBall(0.1), steps=1, restarts=0)
    with pytest.raises(ValueError, match="loss"):
        pgd(model, x, y, LinfBall(0.1), steps=1, loss="nope")


def test_restarts_from_a_fixed_x_init_are_refused(synth_model, synth):
    x, y = synth.tensors()
    x, y = x[:8], y[:8]
    with pytest.raises(ValueError, match="every restart would begin at x_init"):
        pgd(synth_model, x, y, LinfBall(0.1), steps=2, rel_step_size=0.25, restarts=3, x_init=x)
    one = pgd(synth_model, x, y, LinfBall(0.1), steps=2, rel_step_size=0.25, restarts=1, x_init=x)
    assert float((one.x_adv - x).abs().max()) <= 0.1 + 1e-6


def _fat_reference(model, x, y, threat, steps, alpha, tau, generator):
    """PGD-K-τ written out naively: every example forwarded at every step, frozen ones masked (the engine
    before it learned to forward only the running examples)."""
    from delusive import runtime

    x_adv = threat.random_init(x, generator)
    active = runtime.ones(x.shape[0], dtype=torch.bool)
    mis = runtime.zeros(x.shape[0], dtype=torch.long)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        logits = model(x_adv)
        wrong = logits.argmax(1) != y
        stop = wrong & active & (mis >= tau)
        mis += (wrong & active).long()
        active &= ~stop
        (g,) = torch.autograd.grad(torch.nn.functional.cross_entropy(logits, y, reduction="sum"), x_adv)
        stepped = threat.project(x_adv.detach() + alpha * threat.direction(g), x)
        x_adv = torch.where(active.view(-1, 1, 1, 1), stepped, x_adv.detach())
    return x_adv.detach()


@pytest.mark.parametrize("tau", [0, 1, 2])
def test_fat_forwarding_only_running_examples_matches_the_naive_masked_run(tau):
    from delusive import runtime
    from delusive.models import create_model

    torch.manual_seed(0)
    model = create_model("small-cnn", 3, 1, 12, seed=1).eval()
    x, y = torch.rand(40, 1, 12, 12), torch.arange(40) % 3
    threat = LinfBall(0.3)
    res = pgd(model, x, y, threat, steps=6, step_size=0.05, random_start=True, early_stop_tau=tau,
              generator=runtime.generator(5), final_eval=False)
    ref = _fat_reference(model, x, y, threat, 6, 0.05, tau, runtime.generator(5))
    assert torch.allclose(res.x_adv, ref, atol=1e-6)
    assert bool((res.steps_taken < 6).any()) and bool((res.steps_taken > 0).any())  # a mix: some stop early
    full = pgd(model, x, y, threat, steps=6, step_size=0.05, random_start=True, generator=runtime.generator(5),
               final_eval=False)
    assert not torch.allclose(full.x_adv, ref, atol=1e-6)  # control: without the early stop the result differs


def test_final_eval_off_saves_one_forward_and_keeps_x_adv():
    from delusive import runtime

    calls = []

    class Counting(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(16, 3)

        def forward(self, z):
            calls.append(z.shape[0])
            return self.lin(z.flatten(1))

    model = Counting().eval()
    x, y = torch.rand(8, 1, 4, 4), torch.arange(8) % 3
    a = pgd(model, x, y, LinfBall(0.1), steps=3, random_start=True, generator=runtime.generator(0))
    n_with = len(calls)
    b = pgd(model, x, y, LinfBall(0.1), steps=3, random_start=True, generator=runtime.generator(0), final_eval=False)
    assert n_with == 4 and len(calls) - n_with == 3  # K forwards, not K + 1
    assert torch.equal(a.x_adv, b.x_adv)
    with pytest.raises(ValueError, match="restarts > 1 needs final_eval"):
        pgd(model, x, y, LinfBall(0.1), steps=3, restarts=2, random_start=True, final_eval=False)


class _Wavy(nn.Module):
    """Class 0 iff cos(30·x) > 0: a fixed-step ascent can cross a trough and land on the right class again."""

    def forward(self, x):
        z = torch.cos(30 * x.flatten(1).sum(1))
        return torch.stack([z, -z], 1)


def test_keep_fooled_returns_the_first_fooling_iterate_where_the_last_one_is_classified_right_again():
    model = _Wavy()
    x0 = torch.linspace(0.3, 0.7, 400).view(-1, 1, 1, 1)
    x = x0[torch.cos(30 * x0.flatten()) > 0.2]  # correctly classified (label 0) clean points
    y = torch.zeros(x.shape[0], dtype=torch.long)
    threat = LinfBall(0.2)
    kwargs = {"steps": 6, "rel_step_size": 0.6, "random_start": True, "y_true": y}
    last = pgd(model, x, y, threat, generator=torch.Generator().manual_seed(0), **kwargs)
    fooled = pgd(model, x, y, threat, generator=torch.Generator().manual_seed(0), keep="fooled", **kwargs)
    some_iterate = last.first_misclassified >= 0
    with torch.no_grad():
        wrong_last = model(last.x_adv).argmax(1) != y
        wrong_fooled = model(fooled.x_adv).argmax(1) != y
    # live control: the last iterate is right again for some examples an earlier iterate fooled
    assert bool((some_iterate & ~wrong_last).any())
    assert torch.equal(wrong_fooled, some_iterate) and torch.equal(fooled.misclassified, some_iterate)
    assert torch.equal(fooled.x_adv[~some_iterate], last.x_adv[~some_iterate])  # never fooled: the last iterate
    assert bool(threat.contains(fooled.x_adv, x, tol=1e-6).all())
    with pytest.raises(ValueError, match="keep"):
        pgd(model, x, y, threat, steps=2, keep="best")


def test_the_api_pgd_images_give_the_any_iterate_robust_accuracy(synth_model, synth):
    import delusive
    from delusive import runtime
    from delusive.evaluation.attacks import robust_correct

    x, y = synth.tensors()
    x, y = x[:200], y[:200]
    adv = delusive.PGD(synth_model, eps=0.3, steps=5, seed=0)(x, y)
    with torch.no_grad():
        api = (synth_model(adv).argmax(1) == y).float().mean()
    engine = robust_correct(synth_model, x, y, LinfBall(0.3), "pgd", steps=5, rel_step_size=0.5,
                            generator=runtime.generator(0)).float().mean()
    assert float(api) == pytest.approx(float(engine), abs=1 / 200)


def test_the_api_pgd_returns_an_already_misclassified_image_as_it_is():
    import delusive

    model = _Wavy()
    x = torch.linspace(0.3, 0.7, 400).view(-1, 1, 1, 1)
    y = torch.zeros(x.shape[0], dtype=torch.long)
    wrong = torch.cos(30 * x.flatten()) < 0  # class 1 predicted: misclassified before any attack
    adv = delusive.PGD(model, eps=0.2, steps=6, rel_step_size=0.6, seed=0)(x, y)
    assert torch.equal(adv[wrong], x[wrong])
    with torch.no_grad():
        assert bool((model(adv).argmax(1) != y)[wrong].all())


def test_the_api_attacks_work_when_called_under_no_grad(synth_model, synth):
    import delusive

    x, y = (t[:20] for t in synth.tensors())
    for attack in (delusive.PGD(synth_model, eps=0.3, steps=2), delusive.APGD(synth_model, eps=0.3, steps=2),
                   delusive.AutoAttack(synth_model, eps=0.3, steps=2)):
        with torch.no_grad():
            adv = attack(x, y)
        assert adv.shape == x.shape and not adv.requires_grad and float((adv - x).abs().amax()) > 0
