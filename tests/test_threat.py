"""Threat-model properties: projection feasible, idempotent, identity on feasible points; norms match numpy."""

import numpy as np
import pytest
import torch

from delusive.threat import L2Ball, LinfBall, Masked, half_mask, make_threat

SHAPE = (6, 1, 8, 8)


def _balls():
    return [LinfBall(0.1), L2Ball(0.5), Masked(LinfBall(0.3), half_mask((1, 8, 8), "top")),
            Masked(L2Ball(0.7), half_mask((1, 8, 8), "left"))]


@pytest.fixture
def xs():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(SHAPE, generator=g)
    far = x + 2.0 * torch.randn(SHAPE, generator=g)
    return x, far


@pytest.mark.parametrize("threat", _balls(), ids=repr)
def test_projection_is_feasible_and_idempotent(threat, xs):
    x, far = xs
    p = threat.project(far, x)
    assert bool(threat.contains(p, x).all())
    assert torch.equal(threat.project(p, x), p)
    assert float(p.min()) >= 0 and float(p.max()) <= 1


@pytest.mark.parametrize("threat", _balls(), ids=repr)
def test_projection_is_identity_on_feasible_points(threat, xs):
    x, _ = xs
    inside = threat.random_init(x, torch.Generator().manual_seed(1))
    assert bool(threat.contains(inside, x).all())
    assert torch.allclose(threat.project(inside, x), inside, atol=1e-7)


@pytest.mark.parametrize("threat", _balls(), ids=repr)
def test_random_init_is_feasible_and_seeded(threat, xs):
    x, _ = xs
    a = threat.random_init(x, torch.Generator().manual_seed(3))
    b = threat.random_init(x, torch.Generator().manual_seed(3))
    c = threat.random_init(x, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert bool(threat.contains(a, x).all())


def test_norms_match_numpy():
    d = torch.randn(SHAPE, generator=torch.Generator().manual_seed(5))
    flat = d.numpy().reshape(SHAPE[0], -1)
    np.testing.assert_allclose(LinfBall(1).norm(d).numpy(), np.abs(flat).max(1), rtol=1e-6)
    np.testing.assert_allclose(L2Ball(1).norm(d).numpy(), np.linalg.norm(flat, axis=1), rtol=1e-5)


def test_directions_have_unit_norm_and_ascend():
    g = torch.randn(SHAPE, generator=torch.Generator().manual_seed(6))
    assert torch.equal(LinfBall(1).direction(g), g.sign())
    np.testing.assert_allclose(L2Ball(1).norm(L2Ball(1).direction(g)).numpy(), 1.0, rtol=1e-5)
    for t in (LinfBall(1), L2Ball(1)):
        assert bool(((t.direction(g) * g).flatten(1).sum(1) > 0).all())


def test_l2_projection_scales_to_radius_when_box_inactive():
    x = torch.full((2, 1, 4, 4), 0.5)
    delta = torch.full_like(x, 0.1)  # norm 0.4
    p = L2Ball(0.2).project(x + delta, x)
    np.testing.assert_allclose(L2Ball(1).norm(p - x).numpy(), 0.2, rtol=1e-5)


def test_masked_never_moves_outside_mask(xs):
    x, far = xs
    mask = half_mask((1, 8, 8), "top")
    t = Masked(LinfBall(0.3), mask)
    p = t.project(far, x)
    assert torch.equal(p[:, :, 4:], x[:, :, 4:])
    moved = p.clone()
    moved[:, :, 6, 6] += 0.01
    assert not bool(t.contains(moved.clamp(0, 1), x).any())


def test_make_threat_parses_fractions_and_rejects_bad_values():
    t = make_threat("linf", "8/255")
    assert t.eps == pytest.approx(8 / 255) and t.eps_text == "8/255"
    assert isinstance(make_threat("l2", 0.5), L2Ball)
    with pytest.raises(ValueError, match="norm: expected one of linf, l2, got 'l3'"):
        make_threat("l3", 0.1)
    with pytest.raises(ValueError, match="eps"):
        make_threat("linf", "-1")
    with pytest.raises(ValueError, match="eps"):
        make_threat("linf", "8/0")
    with pytest.raises(ValueError, match="mask: values must be 0 or 1"):
        Masked(LinfBall(0.1), torch.full((1, 4, 4), 0.5))
