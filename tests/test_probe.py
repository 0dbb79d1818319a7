"""Linear probe (paper Sec. 5.2): the hooked features, the regularised logistic regression against an
independent numpy/scipy fit of the same objective, and an end-to-end probe of a trained model."""

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from scipy.special import logsumexp
from torch import nn

from delusive.data import ArrayDataset, make_synthetic
from delusive.evaluation.probe import fit_logistic, last_linear, linear_probe, penultimate_features


def _problem(n=240, d=6, k=3, seed=0):
    """Overlapping Gaussian classes with features on very different scales (so standardisation matters)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    centres = rng.normal(0, 1.0, (k, d))
    x = (centres[y] + rng.normal(0, 1.2, (n, d))) * np.array([1, 10, 0.1, 3, 1, 50]) + 5
    return x, y


def _reference(x, y, k, l2, constant_ok=False):
    """Same objective, written independently: mean CE + l2/2 ||W||^2 on standardised features, scipy L-BFGS-B."""
    std = x.std(0)
    assert constant_ok or (std > 0).all()
    z = (x - x.mean(0)) / np.where(std > 0, std, 1)
    n, d = z.shape
    onehot = np.eye(k)[y]

    def f(theta):
        w, b = theta[: d * k].reshape(d, k), theta[d * k :]
        s = z @ w + b
        lse = logsumexp(s, axis=1)
        loss = np.mean(lse - s[np.arange(n), y]) + 0.5 * l2 * np.sum(w * w)
        p = np.exp(s - lse[:, None])
        gs = (p - onehot) / n
        return loss, np.concatenate([(z.T @ gs + l2 * w).ravel(), gs.sum(0)])

    res = minimize(f, np.zeros(d * k + k), jac=True, method="L-BFGS-B",
                   options={"maxiter": 20000, "gtol": 1e-12, "ftol": 0.0})
    return res.x[: d * k].reshape(d, k), res.x[d * k :], z


def test_fit_matches_an_independent_scipy_fit_of_the_same_objective():
    x, y = _problem()
    l2 = 0.05
    w_ref, b_ref, z = _reference(x, y, 3, l2)
    probe = fit_logistic(torch.from_numpy(x).float(), torch.from_numpy(y), 3, l2=l2, tol=1e-10)
    assert probe.grad_max < 1e-8 and probe.iterations > 3
    w = probe.weight.cpu().numpy()
    np.testing.assert_allclose(w, w_ref, atol=2e-5)
    # the bias is fixed only up to a common shift (softmax is shift-invariant): compare centred
    b = probe.bias.cpu().numpy()
    np.testing.assert_allclose(b - b.mean(), b_ref - b_ref.mean(), atol=2e-5)
    x_new, _ = _problem(seed=1)
    z_new = (x_new - x.mean(0)) / x.std(0)
    assert probe.predict(torch.from_numpy(x_new).float()).tolist() == (z_new @ w_ref + b_ref).argmax(1).tolist()
    # control: a tenfold penalty gives clearly different (smaller) weights, far beyond the tolerance above
    stronger = fit_logistic(torch.from_numpy(x).float(), torch.from_numpy(y), 3, l2=10 * l2, tol=1e-10)
    gap = np.abs(stronger.weight.cpu().numpy() - w_ref).max()
    assert gap > 1e-2 and np.linalg.norm(stronger.weight.cpu().numpy()) < np.linalg.norm(w_ref)


def test_standardisation_makes_the_fit_invariant_to_feature_scale_and_keeps_constant_features():
    x, y = _problem()
    x = np.concatenate([x, np.full((len(x), 1), 3.0)], axis=1)  # a constant (e.g. dead ReLU) feature
    a = fit_logistic(torch.from_numpy(x), torch.from_numpy(y), 3, l2=0.05, tol=1e-10)
    b = fit_logistic(torch.from_numpy(x * 7 - 2), torch.from_numpy(y), 3, l2=0.05, tol=1e-10)
    assert torch.isfinite(a.weight).all() and float(a.weight[-1].abs().max()) < 1e-8
    torch.testing.assert_close(a.weight, b.weight, atol=1e-7, rtol=0)
    with pytest.raises(ValueError, match="l2: must be > 0"):
        fit_logistic(torch.from_numpy(x), torch.from_numpy(y), 3, l2=0)


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5))
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.body(x))


def test_features_are_the_input_of_the_last_linear_in_eval_mode():
    torch.manual_seed(0)
    net = _Net()
    net.body[2].running_mean.fill_(0.3)
    net.body[2].running_var.fill_(2.0)
    net.train()
    x = torch.rand(10, 1, 4, 4)
    feats = penultimate_features(net, x, batch_size=3)
    assert last_linear(net)[0] == "head" and feats.shape == (10, 8)  # not the first Linear's 16 inputs
    with torch.no_grad():
        net.eval()
        expected = net.body(x)
        net.train()
    torch.testing.assert_close(feats, expected)
    assert net.training  # the caller's mode is restored
    with torch.no_grad():  # control: train mode (batch statistics, dropout) gives other activations
        assert not torch.allclose(net.body(x), expected)
    with pytest.raises(ValueError, match="has no nn.Linear layer"):
        penultimate_features(nn.Sequential(nn.Flatten()), x)


def test_probe_of_a_trained_model(synth, synth_model):
    test = make_synthetic(200, num_classes=4, shape=(1, 16, 16), seed=0, sample_seed=1)
    res = linear_probe(synth_model, synth, test)
    assert res["layer"] == "classifier.3" and res["feature_dim"] == 128 and res["n_train"] == len(synth)
    assert res["test_accuracy"] > 0.9 and res["train_accuracy"] > 0.9 and res["grad_max"] < 1e-4
    assert res["test_accuracy"] == float(np.mean(_manual_predictions(synth_model, synth, test) == test.y))
    # control: the same features with shuffled training labels carry no signal for the test labels
    shuffled = ArrayDataset(synth.x, np.random.default_rng(0).permutation(synth.y), 4)
    assert linear_probe(synth_model, shuffled, test, l2=1e-2)["test_accuracy"] < 0.5


def _manual_predictions(model, train, test):
    """The probe's pipeline by hand: features = input of the last Linear, standardise, fit, predict."""
    feats = {}
    for name, ds in (("train", train), ("test", test)):
        x, _ = ds.tensors()
        with torch.no_grad():
            feats[name] = model.classifier[:3](model.features(x)).double().numpy()
    w, b, _ = _reference(feats["train"], train.y, train.num_classes, 1e-4, constant_ok=True)
    mean, std = feats["train"].mean(0), feats["train"].std(0)
    z = (feats["test"] - mean) / np.where(std > 0, std, 1)
    return (z @ w + b).argmax(1)
