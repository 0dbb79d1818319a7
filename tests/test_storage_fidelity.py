"""Storage keeps the poison that was crafted, and the statistics describe it: realised norm statistics
(min is the smallest realised norm), ℓ2 poisons keep >= 99% of their float norm in every storage mode and the
manifest says how much was kept; masked-ℓ2 random starts are uniform in the masked ball; ``covers`` accounts
for masks."""

import numpy as np
import pytest
import torch

from delusive.attacks import build_artifact, create_attack, load_artifact, quantise_toward_clean, save_artifact
from delusive.attacks.artifact import default_storage, quantise_nearest_l2
from delusive.data import ArrayDataset, make_synthetic
from delusive.threat import L2Ball, LinfBall, Masked, covers, half_mask


@pytest.fixture(scope="module")
def cifar_like():
    """Random 3×32×32 uint8 images: P5's δ meets the [0,1] box everywhere, as on CIFAR-10."""
    rng = np.random.default_rng(0)
    return ArrayDataset(rng.integers(0, 256, (200, 3, 32, 32)).astype(np.uint8), np.arange(200) % 10, 10)


def _realised_norms(images, clean, threat):
    xp = images.astype(np.float64) / (255.0 if images.dtype == np.uint8 else 1.0)
    d = xp - clean.x.astype(np.float64) / 255.0
    if isinstance(threat, Masked):
        d = d * threat.mask.numpy()
    flat = d.reshape(len(d), -1)
    base = threat.base if isinstance(threat, Masked) else threat
    return np.linalg.norm(flat, axis=1) if isinstance(base, L2Ball) else np.abs(flat).max(1)


def _build(clean, x, threat, storage=None):
    return build_artifact(clean, x, threat, attack="P5", attack_params={}, dataset="s", seed=0, storage=storage)


def test_norm_stats_min_is_the_smallest_realised_norm(cifar_like, tmp_path):
    threat = L2Ball(0.5)
    x = create_attack("P5").craft(cifar_like, threat, None, seed=0).x
    art = load_artifact(save_artifact(_build(cifar_like, x, threat), tmp_path))
    norms = _realised_norms(art.images, cifar_like, threat)
    st = art.manifest["norm_stats"]
    assert norms.min() > 0.4  # every image moved, so a min of 0 would be wrong
    assert st["min"] == pytest.approx(norms.min(), rel=1e-5) and st["max"] == pytest.approx(norms.max(), rel=1e-5)
    assert st["min"] < st["mean"] < st["max"]


def test_l2_poison_defaults_to_float32_and_keeps_its_norm(cifar_like, tmp_path):
    threat = L2Ball(0.5)
    x = create_attack("P5").craft(cifar_like, threat, None, seed=0).x
    art = load_artifact(save_artifact(_build(cifar_like, x, threat), tmp_path))
    assert art.manifest["storage"] == "float32" and art.images.dtype == np.float32
    float_norms = _realised_norms(x, cifar_like, threat)
    kept = _realised_norms(art.images, cifar_like, threat).mean() / float_norms.mean()
    assert kept >= 0.99
    st = art.manifest["norm_stats"]
    assert st["retained_fraction"] == pytest.approx(kept, rel=1e-5) and st["retained_fraction"] >= 0.99
    assert st["float_mean"] == pytest.approx(float_norms.mean(), rel=1e-5)


def test_l2_uint8_rounds_to_nearest_within_budget_and_reports_what_it_kept(cifar_like):
    threat = L2Ball(0.5)
    x = create_attack("P5").craft(cifar_like, threat, None, seed=0).x
    float_mean = _realised_norms(x, cifar_like, threat).mean()
    art = _build(cifar_like, x, threat, "uint8")
    norms = _realised_norms(art.images, cifar_like, threat)
    assert art.images.dtype == np.uint8 and norms.max() <= 0.5 + 1e-9  # repaired back into the ball
    assert norms.mean() / float_mean >= 0.99
    assert art.manifest["norm_stats"]["retained_fraction"] == pytest.approx(norms.mean() / float_mean, rel=1e-5)
    # control: rounding toward zero, the ℓ∞ rule, loses far more of an ℓ2 poison (~16% on this data)
    toward = _realised_norms(quantise_toward_clean(cifar_like.x, x), cifar_like, threat).mean() / float_mean
    assert toward < 0.9
    # and nearest rounding without the repair would leave the ball
    unrepaired = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
    assert _realised_norms(unrepaired, cifar_like, threat).max() > 0.5


def test_repair_changes_only_what_is_needed():
    clean = np.full((1, 1, 1, 3), 100, np.uint8)
    # δ in levels (2.6, 1.9, −0.55): nearest (3, 2, −1) has ‖·‖² = 14 > 13.5 = (ε·255)², the float δ 10.67
    x = ((clean + np.array([2.6, 1.9, -0.55]).reshape(1, 1, 1, 3)) / 255.0).astype(np.float32)
    q = quantise_nearest_l2(clean, x, L2Ball(13.5**0.5 / 255)).astype(int) - 100
    # one pixel goes toward zero, the one whose toward-zero level was nearly as close (−0.55 → 0), not 2.6 → 2
    assert q.ravel().tolist() == [3, 2, 0]
    # control: within budget the nearest levels are kept as they are
    q = quantise_nearest_l2(clean, x, L2Ball(14.5**0.5 / 255)).astype(int) - 100
    assert q.ravel().tolist() == [3, 2, -1]


def test_masked_l2_uint8_keeps_outside_the_mask_and_the_budget(cifar_like):
    threat = Masked(L2Ball(0.5), half_mask((3, 32, 32), "top"))
    x = create_attack("P5").craft(cifar_like, threat, None, seed=0).x
    art = _build(cifar_like, x, threat, "uint8")
    assert np.array_equal(art.images[:, :, 16:], cifar_like.x[:, :, 16:])
    norms = _realised_norms(art.images, cifar_like, threat)
    assert norms.max() <= 0.5 + 1e-9 and art.manifest["norm_stats"]["retained_fraction"] >= 0.99
    assert default_storage(threat, cifar_like) == "float32"


def test_linf_default_stays_uint8_toward_zero_and_records_retention():
    clean = make_synthetic(100, num_classes=4, shape=(1, 8, 8), seed=0)
    threat = LinfBall(0.1)  # 25.5 levels: every δ_i is cut to at most 25 levels
    x = create_attack("P5").craft(clean, threat, None, seed=0).x
    art = _build(clean, x, threat)
    assert art.manifest["storage"] == "uint8"
    assert np.array_equal(art.images, quantise_toward_clean(clean.x, x))
    d_float = x.astype(np.float64) * 255 - clean.x
    d_q = art.images.astype(np.float64) - clean.x
    assert (np.abs(d_q) <= np.abs(d_float) + 1e-4).all()  # |δ_q| ≤ |δ| per pixel
    kept = _realised_norms(art.images, clean, threat).mean() / _realised_norms(x, clean, threat).mean()
    assert 0.9 < kept < 1.0  # truncation loses a little here, and the manifest says exactly how much
    assert art.manifest["norm_stats"]["retained_fraction"] == pytest.approx(kept, rel=1e-5)


# ---------------------------------------------------------------- masked random starts


def _radii(threat, shape, n=4000, seed=0):
    g = torch.Generator().manual_seed(seed)
    like = torch.zeros(n, *shape)
    return threat.sample_delta(like, g)


def test_masked_l2_random_start_is_uniform_in_the_masked_ball():
    shape, eps = (3, 8, 8), 0.7
    mask = half_mask(shape, "left")
    threat = Masked(L2Ball(eps), mask)
    d_m = int(mask.sum())
    delta = _radii(threat, shape)
    assert float((delta * (1 - mask)).abs().max()) == 0.0
    r = delta.flatten(1).norm(dim=1)
    assert float(r.max()) <= eps + 1e-6
    median = eps * 0.5 ** (1 / d_m)
    assert abs(float((r <= median).float().mean()) - 0.5) < 0.03
    q90 = eps * 0.9 ** (1 / d_m)  # and the upper tail: P(r ≤ ε·0.9^(1/d_m)) = 0.9
    assert abs(float((r <= q90).float().mean()) - 0.9) < 0.02
    # control: masking a full-image uniform sample (the old rule) puts nearly all mass far inside
    old = L2Ball(eps).project_delta(L2Ball(eps).sample_delta(torch.zeros(4000, *shape),
                                                             torch.Generator().manual_seed(0)) * mask)
    assert float((old.flatten(1).norm(dim=1) <= median).float().mean()) > 0.95


def test_masked_linf_random_start_is_uniform_on_the_masked_cube():
    shape, eps = (1, 4, 4), 0.2
    mask = half_mask(shape, "top")
    delta = _radii(Masked(LinfBall(eps), mask), shape)
    inside = delta[:, mask.bool()]
    assert float((delta * (1 - mask)).abs().max()) == 0.0
    assert float(inside.abs().max()) <= eps
    assert abs(float((inside.abs() <= eps / 2).float().mean()) - 0.5) < 0.02


# ---------------------------------------------------------------- covers with masks


def test_covers_accounts_for_masks():
    shape = (3, 8, 8)
    dim = 3 * 8 * 8
    top, left = half_mask(shape, "top"), half_mask(shape, "left")
    everything = torch.ones(shape)
    l2, linf = L2Ball(0.5), LinfBall(0.1)
    # same mask, radii decide
    assert covers(Masked(L2Ball(0.5), top), Masked(L2Ball(0.4), top), dim)
    assert not covers(Masked(L2Ball(0.3), top), Masked(L2Ball(0.4), top), dim)
    # attack's mask inside the defense's: covered; not inside: not covered, whatever the radii
    assert covers(Masked(L2Ball(1.0), top), Masked(L2Ball(0.4), top * left), dim)
    assert not covers(Masked(L2Ball(1.0), top), Masked(L2Ball(0.4), left), dim)
    # unmasked attack vs masked defense: only if the mask is everything
    assert not covers(Masked(L2Ball(1.0), top), l2, dim)
    assert covers(Masked(L2Ball(1.0), everything), l2, dim)
    # masked attack vs unmasked defense: the base balls, with ℓ∞→ℓ2 over the attack's own d_a coordinates
    assert covers(l2, Masked(L2Ball(0.5), top), dim)
    d_a = dim // 2
    assert covers(L2Ball(0.1 * d_a**0.5), Masked(linf, top), dim)
    assert not covers(L2Ball(0.1 * d_a**0.5), linf, dim)  # the full ℓ∞ cube needs √dim
    # a 2-D (H×W) mask broadcasts over channels
    assert covers(Masked(L2Ball(1.0), top[0]), Masked(L2Ball(0.4), top), dim)
    assert not covers(Masked(L2Ball(1.0), left[0]), Masked(L2Ball(0.4), top), dim)
