"""Closed forms of delusive.theory.gaussian: known values, Monte-Carlo agreement, large-d stability."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import norm

from delusive.theory import gaussian as g


def test_known_values_of_figure2_at_d_1e4():
    acc = g.five_model_accuracies(1.0, 0.01, 10_000)
    assert acc["f_D"] == pytest.approx(norm.cdf(np.sqrt(2.0)), abs=1e-12)
    assert acc["f_D"] == pytest.approx(0.9214, abs=5e-5)
    assert acc["f_D1"] == pytest.approx(0.5, abs=1e-12)  # w^T mu = 1 - d eta^2 = 0
    assert acc["f_D1_rob"] == pytest.approx(norm.cdf(1.0), abs=1e-12)
    assert acc["f_D1_rob"] == pytest.approx(0.8413, abs=5e-5)
    assert acc["f_D2"] == pytest.approx(norm.cdf(4 / np.sqrt(10)), abs=1e-12)  # (1 + 3t) / sqrt(1 + 9t), t = 1
    assert acc["f_D2_rob"] == pytest.approx(norm.cdf(1.98 / np.sqrt(0.98**2 + 1)), abs=1e-12)


def test_classifiers_are_the_mean_and_its_soft_threshold():
    clf = g.five_classifiers(0.1, 4)
    np.testing.assert_allclose(clf["f_D"].to_array(), [1, 0.1, 0.1, 0.1, 0.1])
    np.testing.assert_allclose(clf["f_D1"].to_array(), [1, -0.1, -0.1, -0.1, -0.1])
    np.testing.assert_allclose(clf["f_D2"].to_array(), [1, 0.3, 0.3, 0.3, 0.3])
    np.testing.assert_allclose(clf["f_D1_rob"].to_array(), [0.8, 0, 0, 0, 0], atol=1e-15)  # flipped features gone
    np.testing.assert_allclose(clf["f_D2_rob"].to_array(), [0.8, 0.1, 0.1, 0.1, 0.1])  # shrunk from 3 eta to eta
    dense = g.robust_classifier(np.array([1.0, -0.3, 0.05, 0.2]), 0.1)
    np.testing.assert_allclose(dense, [0.9, -0.2, 0.0, 0.1])


def test_block_vector_matches_dense_vectors():
    rng = np.random.default_rng(1)
    for _ in range(20):
        d = int(rng.integers(1, 40))
        w = g.BlockVector(rng.normal(), rng.normal(), d)
        m = g.BlockVector(rng.normal(), rng.normal(), d)
        sigma, eps = rng.uniform(0.2, 3), rng.uniform(0, 0.5)
        assert g.natural_z(w, m, sigma) == pytest.approx(g.natural_z(w.to_array(), m.to_array(), sigma), rel=1e-12)
        assert g.adversarial_z(w, m, sigma, eps) == pytest.approx(
            g.adversarial_z(w.to_array(), m.to_array(), sigma, eps), rel=1e-12, abs=1e-12)


def test_soft_threshold_maximises_the_adversarial_z_score():
    rng = np.random.default_rng(2)
    m = np.array([1.0, 0.3, -0.15, 0.05, -0.4, 0.0])
    eps, sigma = 0.1, 0.7
    best = g.adversarial_z(g.robust_classifier(m, eps), m, sigma, eps)
    s = g.robust_classifier(m, eps)
    candidates = np.concatenate([rng.normal(size=(2000, m.size)), s + 0.05 * rng.normal(size=(2000, m.size)), [m]])
    z = np.array([g.adversarial_z(w, m, sigma, eps) for w in candidates])
    assert z.max() <= best + 1e-12


def test_zero_classifier_is_a_coin_flip():
    w = g.robust_classifier(g.BlockVector(0.5, 0.1, 10), 1.0)  # everything thresholded away
    assert g.natural_z(w, g.BlockVector(1.0, 0.1, 10), 1.0) == 0.0
    assert g.natural_accuracy(w, g.BlockVector(1.0, 0.1, 10), 1.0) == 0.5


def test_large_d_accuracies_round_to_one_but_z_and_log_risk_keep_the_order():
    z = g.five_model_z(1.0, 0.01, 1e8)
    acc = {k: g.accuracy_from_z(v) for k, v in z.items()}
    assert acc["f_D"] == acc["f_D2"] == acc["f_D2_rob"] == 1.0  # useless for comparisons
    assert z["f_D"] > z["f_D2_rob"] > z["f_D2"] > z["f_D1_rob"] > z["f_D1"]
    log_risk = {k: g.log_risk_from_z(v) for k, v in z.items()}
    assert np.isfinite(log_risk["f_D"]) and log_risk["f_D"] < -5000
    assert log_risk["f_D"] < log_risk["f_D2"] < log_risk["f_D1"]


def test_validation_names_the_parameter():
    with pytest.raises(ValueError, match="sigma must be finite and > 0, got -1"):
        g.five_model_z(-1.0, 0.1, 10)
    with pytest.raises(ValueError, match="d must be finite and >= 1"):
        g.five_model_z(1.0, 0.1, 0)


N_MC = 1_000_000
CHUNK = 100_000


def _mc_full(sigma: float, eta: float, d: int, seed: int) -> tuple[dict[str, float], dict[str, float]]:
    """Direct Monte Carlo with full (d+1)-vectors: natural accuracy on D, and adversarial accuracy on D-hat-1 /
    D-hat-2 with the explicit worst-case perturbation delta = -eps y sign(w) applied to every sample."""
    rng = np.random.default_rng(seed)
    eps = 2 * eta
    clf = g.five_classifiers(eta, d)
    names = list(clf)
    W = np.stack([clf[k].to_array() for k in names], axis=1)  # (d+1, 5)
    mu, mu1, mu2 = (m.to_array() for m in g.delusive_means(eta, d))
    nat = np.zeros(len(names))
    adv = {"D1": np.zeros(len(names)), "D2": np.zeros(len(names))}
    for _ in range(N_MC // CHUNK):
        y = rng.choice([-1.0, 1.0], size=CHUNK)
        noise = sigma * rng.standard_normal((CHUNK, d + 1))
        nat += ((y[:, None] * ((y[:, None] * mu + noise) @ W)) > 0).sum(0)
        for key, m_hat in (("D1", mu1), ("D2", mu2)):
            x_hat = y[:, None] * m_hat + noise
            for j in range(len(names)):
                x_adv = x_hat - eps * y[:, None] * np.sign(W[:, j])[None, :]
                adv[key][j] += (y * (x_adv @ W[:, j]) > 0).sum()
    return ({k: nat[j] / N_MC for j, k in enumerate(names)},
            {f"{key}:{k}": adv[key][j] / N_MC for key in adv for j, k in enumerate(names)})


@pytest.mark.parametrize(("sigma", "eta", "d"), [(1.0, 0.1, 1), (0.7, 0.2, 8), (1.5, 0.12, 30)])
def test_closed_forms_match_full_vector_monte_carlo(sigma, eta, d):
    nat_mc, adv_mc = _mc_full(sigma, eta, d, seed=d)
    clf = g.five_classifiers(eta, d)
    mu, mu1, mu2 = g.delusive_means(eta, d)
    for k, w in clf.items():
        p = float(g.natural_accuracy(w, mu, sigma))
        se = np.sqrt(p * (1 - p) / N_MC)
        assert abs(nat_mc[k] - p) < 3 * se, (k, nat_mc[k], p, se)
        for key, m_hat in (("D1", mu1), ("D2", mu2)):
            q = float(g.adversarial_accuracy(w, m_hat, sigma, 2 * eta))
            se = np.sqrt(q * (1 - q) / N_MC)
            assert abs(adv_mc[f"{key}:{k}"] - q) < 3 * se, (key, k, adv_mc[f"{key}:{k}"], q, se)


@pytest.mark.parametrize(("sigma", "eta", "d"), [(1.0, 0.01, 10_000), (2.0, 0.01, 3_000), (1.0, 0.003, 10**6)])
def test_closed_forms_match_projected_monte_carlo_at_large_d(sigma, eta, d):
    """At large d, sample the 1-D projection w^T x | y ~ N(y w^T m, sigma^2 ||w||^2) (exact in distribution)."""
    rng = np.random.default_rng(d)
    mu = g.delusive_means(eta, d)[0]
    for k, w in g.five_classifiers(eta, d).items():
        y = rng.choice([-1.0, 1.0], size=N_MC)
        score = y * float(w.dot(mu)) + sigma * float(w.norm2()) * rng.standard_normal(N_MC)
        p_mc = float(np.mean(y * score > 0))
        p = float(g.natural_accuracy(w, mu, sigma))
        assert abs(p_mc - p) < 3 * np.sqrt(p * (1 - p) / N_MC), (k, p_mc, p)


def test_theory_imports_neither_torch_nor_matplotlib():
    code = ("import sys, delusive.theory, delusive.theory.checks, delusive.theory.simulate, delusive.theory.figure;"
            "bad = [m for m in ('torch', 'matplotlib') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
