"""Finite-sample check of the closed forms: train linear models on sampled D, D-hat-1, D-hat-2 (Eqs. 5-7).

For each ``d`` and repeat, a clean training set ``(x_i, y_i)`` is drawn from D and turned into the two delusive
training sets by the per-example perturbation ``delta_i = y_i (mu_hat - mu)`` -- ``-2 eta y_i`` (D-hat-1) or
``+2 eta y_i`` (D-hat-2) on every non-robust coordinate, so ``||delta_i||_inf = 2 eta`` and the perturbed sets are
exactly samples of D-hat-1 and D-hat-2. Five linear models ``sign(w^T x)`` (no bias: the mixture is symmetric)
are trained, as in Figure 2:

* standard training (logistic regression) on D, D-hat-1, D-hat-2 -> estimates of f_D, f_D1, f_D2;
* l_inf adversarial training with budget ``eps`` on D-hat-1, D-hat-2 -> estimates of f_D1_rob, f_D2_rob.

Adversarial training uses the *exact* inner maximisation of a linear model: the worst ``||delta||_inf <= eps``
lowers the margin ``y w^T x`` by ``eps ||w||_1``, so the adversarial logistic loss is
``mean log(1 + exp(-(y w^T x - eps ||w||_1)))``. Writing ``w = u - v`` with ``u, v >= 0`` makes it smooth
(``||w||_1 = sum(u + v)`` at the optimum), and L-BFGS-B minimises it under the bounds -- an exact optimiser of
the same objective PGD-based AT approximates, without the oscillation of a subgradient method at the kink.
A small L2 term (``l2``, default 0.01) keeps the problem strictly convex and tames the variance of logistic
regression on nearly separable data (D-hat-2's own Bayes accuracy is Phi(sqrt 10) at eta=0.1, d=100); it does
not change the population direction: by Stein's lemma the population gradient lies in span{m, w}, so the ridge-logistic
minimiser is still a multiple of the mean, and for adversarial training the loss depends on w only through
``w^T m - eps ||w||_1`` and ``||w||_2``, so at fixed ``||w||_2`` the soft-threshold direction is still optimal.

Each model is scored on a fresh clean test set from D; the Monte-Carlo error bar is the standard error of the
mean over repeats (training set and test set both resampled). The closed form of :mod:`delusive.theory.gaussian`
is the infinite-data limit: logistic regression's population minimiser is a multiple of the mean (the log-odds
are linear, ``2 m^T x / sigma^2``), and the adversarial logistic loss is minimised along the soft-threshold
direction for the same reason the 0-1 adversarial risk is (see ``robust_classifier``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize
from scipy.special import expit

from delusive.theory import gaussian
from delusive.utils import progress

__all__ = ["SimulationConfig", "SimulationRow", "fit_linear", "format_rows", "run_simulation", "sample_training_sets"]


@dataclass(frozen=True)
class SimulationConfig:
    """Parameters of ``delusive theory simulate``; ``eps=None`` means ``2 eta`` (the attack's budget) and
    ``n_train=None`` means ``100 (d + 1)`` examples, enough that finite-sample loss stays well under a point."""

    sigma: float = 1.0
    eta: float = 0.1
    eps: float | None = None
    ds: tuple[int, ...] = (10, 30, 100, 200)
    n_train: int | None = None
    n_test: int = 20_000
    repeats: int = 5
    seed: int = 0
    l2: float = 1e-2

    @property
    def budget(self) -> float:
        return 2.0 * self.eta if self.eps is None else float(self.eps)

    def train_size(self, d: int) -> int:
        return int(self.n_train) if self.n_train is not None else 100 * (d + 1)

    def validate(self) -> None:
        gaussian.validate_parameters(self.sigma, self.eta, np.asarray(self.ds), self.eps)
        if any(int(d) != d for d in self.ds):
            raise ValueError(f"d must be integers >= 1, got {self.ds!r}")
        for name, value in (("n_train", self.n_train), ("n_test", self.n_test), ("repeats", self.repeats)):
            if value is not None and (int(value) != value or value < 1):
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.l2 < 0:
            raise ValueError(f"l2 must be >= 0, got {self.l2!r}")


@dataclass(frozen=True)
class SimulationRow:
    """One (d, model) cell: closed form vs. simulated clean test accuracy on D."""

    d: int
    model: str
    closed_form: float
    mean: float  # mean clean test accuracy over repeats
    se: float  # Monte-Carlo standard error of ``mean``
    population: float  # mean exact accuracy on D of the learned w (no test-sampling noise)
    accuracies: tuple[float, ...] = field(default_factory=tuple)

    @property
    def gap(self) -> float:
        return self.mean - self.closed_form


def sample_training_sets(d: int, n: int, sigma: float, eta: float, rng: np.random.Generator
                         ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64],
                                    NDArray[np.float64]]:
    """Draw n clean examples of D in R^{d+1} and perturb them into D-hat-1 and D-hat-2.

    Returns ``(y, x, x_hat1, x_hat2)``; ``x_hat_i - x = y (mu_hat_i - mu)`` has l_inf norm ``2 eta``.
    """
    y = rng.choice(np.array([-1.0, 1.0]), size=n)
    mu = gaussian.delusive_means(eta, d)[0].to_array()
    x = y[:, None] * mu[None, :] + sigma * rng.standard_normal((n, d + 1))
    shift = np.full(d + 1, 2.0 * eta)
    shift[0] = 0.0
    x_hat1 = x - y[:, None] * shift[None, :]
    x_hat2 = x + y[:, None] * shift[None, :]
    return y, x, x_hat1, x_hat2


def fit_linear(x: NDArray[np.float64], y: NDArray[np.float64], eps: float = 0.0, l2: float = 1e-2,
               max_iter: int = 500) -> NDArray[np.float64]:
    """Fit ``sign(w^T x)`` by minimising ``mean softplus(-(y w^T x - eps ||w||_1)) + l2/2 ||w||^2``.

    ``eps = 0`` is standard logistic regression; ``eps > 0`` is l_inf adversarial training with the exact inner
    maximum of a linear model. Solved over ``w = u - v``, ``u, v >= 0`` with L-BFGS-B.
    """
    z = y[:, None] * x
    n, p = z.shape

    def objective(theta: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        u, v = theta[:p], theta[p:]
        w = u - v
        margin = z @ w - eps * theta.sum()
        loss = float(np.logaddexp(0.0, -margin).mean() + 0.5 * l2 * (w @ w))
        g_m = -expit(-margin) / n  # d loss / d margin_i
        g_w = z.T @ g_m + l2 * w
        g_s = -eps * g_m.sum()  # d loss / d sum(u + v)
        return loss, np.concatenate([g_w + g_s, -g_w + g_s])

    res = minimize(objective, np.zeros(2 * p), jac=True, method="L-BFGS-B", bounds=[(0.0, None)] * (2 * p),
                   options={"maxiter": max_iter, "gtol": 1e-9, "ftol": 1e-13})
    return res.x[:p] - res.x[p:]


def run_simulation(config: SimulationConfig) -> list[SimulationRow]:
    """Train the five models ``config.repeats`` times for every d and compare with the closed form."""
    config.validate()
    eps = config.budget
    rows: list[SimulationRow] = []
    for d in config.ds:
        d = int(d)
        mu = gaussian.delusive_means(config.eta, d)[0]
        closed = gaussian.five_model_accuracies(config.sigma, config.eta, d, eps)
        acc: dict[str, list[float]] = {m: [] for m in gaussian.MODEL_NAMES}
        pop: dict[str, list[float]] = {m: [] for m in gaussian.MODEL_NAMES}
        for r in progress(range(config.repeats), desc=f"simulate d={d}"):
            rng = np.random.default_rng([config.seed, d, r])
            y, x, x1, x2 = sample_training_sets(d, config.train_size(d), config.sigma, config.eta, rng)
            ws = {
                "f_D": fit_linear(x, y, 0.0, config.l2),
                "f_D1": fit_linear(x1, y, 0.0, config.l2),
                "f_D2": fit_linear(x2, y, 0.0, config.l2),
                "f_D1_rob": fit_linear(x1, y, eps, config.l2),
                "f_D2_rob": fit_linear(x2, y, eps, config.l2),
            }
            y_t, x_t, _, _ = sample_training_sets(d, config.n_test, config.sigma, config.eta, rng)
            for name, w in ws.items():
                acc[name].append(float(np.mean(y_t * (x_t @ w) > 0)))
                pop[name].append(float(gaussian.natural_accuracy(w, mu.to_array(), config.sigma)))
        for name in gaussian.MODEL_NAMES:
            a = np.asarray(acc[name])
            if a.size > 1:
                se = float(a.std(ddof=1) / np.sqrt(a.size))
            else:  # one repeat: only the binomial test-set error is measurable
                se = float(np.sqrt(a[0] * (1.0 - a[0]) / config.n_test))
            rows.append(SimulationRow(d, name, float(closed[name]), float(a.mean()), se,
                                      float(np.mean(pop[name])), tuple(float(v) for v in a)))
    return rows


def format_rows(rows: Sequence[SimulationRow]) -> str:
    """Table: closed form beside simulated clean accuracy (mean +- SE over repeats) and the gap in points."""
    head = f"{'d':>6} {'model':<9} {'closed form':>11} {'simulated':>9} {'± SE':>7} {'learned-w exact':>15} " \
           f"{'gap (pts)':>9}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.d:>6} {r.model:<9} {r.closed_form:>11.4f} {r.mean:>9.4f} {r.se:>7.4f} "
                     f"{r.population:>15.4f} {100 * r.gap:>+9.2f}")
    worst = max(rows, key=lambda r: abs(r.gap))
    lines.append(f"largest |gap|: {100 * abs(worst.gap):.2f} points (d={worst.d}, {worst.model})")
    return "\n".join(lines)
