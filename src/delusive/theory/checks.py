"""Theorems 1-3 of Section 3 as executable checks over a grid of (eta, d, sigma).

Every inequality is checked on Gaussian z-scores (accuracy = Phi(z), risk = Phi(-z), so a lower risk is a
higher z), never on the rounded probabilities, which all equal 1.0 in float64 once z > 8.3 (e.g. d = 10^8).

* Theorem 2 (strict): ``R(f_D, D) < R(f_D2, D) < R(f_D1, D)``, i.e. ``z_D > z_D2 > z_D1``.
* Theorem 3 (strict, 0 < eta < 1/3, eps = 2 eta): ``R(f_Di, D) > R(f_Di_rob, D)``, i.e. ``z_Di_rob > z_Di``.
* Theorem 1 (non-strict): for each of the five classifiers ``f`` and each delusive ``D-hat in {D-hat-1, D-hat-2}``
  (both within ``W_inf`` distance ``eps = 2 eta`` of D), ``R_nat(f, D) <= R_adv(f, D-hat)`` with the same eps,
  i.e. ``natural_z(w, mu) >= adversarial_z(w, mu_hat, eps)``; a float tolerance of ``1e-12 (1 + |z|)`` is allowed.

The z-score formulas are injectable (``natural_z_fn``, ``adversarial_z_fn``) so that a test can feed a wrong
formula and see the check fail; by default they are looked up in :mod:`delusive.theory.gaussian` at call time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from delusive.theory import gaussian

__all__ = ["CheckReport", "InequalityResult", "check_theorems", "d_values", "default_grid", "format_report"]

ZFn = Callable[..., NDArray[np.float64]]

#: Relative float tolerance of the non-strict inequality of Theorem 1.
THEOREM1_TOL = 1e-12


@dataclass(frozen=True)
class InequalityResult:
    """One inequality checked at every grid point: ``margin = lhs_z - rhs_z`` must be > 0 (strict) or >= -tol."""

    theorem: str
    statement: str
    strict: bool
    n_points: int
    n_violations: int
    min_margin: float
    worst_point: tuple[float, float, float]  # (eta, d, sigma) of the smallest margin

    @property
    def ok(self) -> bool:
        return self.n_violations == 0


@dataclass(frozen=True)
class CheckReport:
    n_points: int
    results: list[InequalityResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def n_violations(self) -> int:
        return sum(r.n_violations for r in self.results)


def d_values(d_max: float = 1e9) -> list[float]:
    """d = 1, 2, 5, 10, 20, 50, ... up to ``d_max``."""
    return [m * 10.0**k for k in range(40) for m in (1, 2, 5) if m * 10.0**k <= d_max]


def default_grid(n_eta: int = 24, ds: Sequence[float] | None = None,
                 sigmas: Sequence[float] = (0.1, 0.3, 1.0, 3.0, 10.0), eta_min: float = 1e-3,
                 eta_max: float = 0.33) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """The (eta, d, sigma) grid, flattened: ``n_eta`` values of eta log-spaced in [eta_min, eta_max] (inside
    (0, 1/3)), d in ``ds`` (default 1, 2, 5, 10, ..., 10^9) and the given sigmas. The default has
    24 * 28 * 5 = 3,360 points.

    The smallest signal ``t = d eta^2 = 1e-6`` keeps every z-margin (the smallest, Theorem 2's
    ``z_D2 - z_D1 ~ 16 t^2 / sigma``, is ~1.6e-12 at sigma = 10) four orders of magnitude above float64 rounding.
    """
    if ds is None:
        ds = d_values()
    etas = np.geomspace(eta_min, eta_max, n_eta)
    e, d, s = np.meshgrid(etas, np.asarray(ds, dtype=np.float64), np.asarray(sigmas, dtype=np.float64),
                          indexing="ij")
    return e.ravel(), d.ravel(), s.ravel()


def _result(theorem: str, statement: str, margin: NDArray[np.float64], strict: bool, scale: NDArray[np.float64],
            points: tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]) -> InequalityResult:
    margin = np.asarray(margin, dtype=np.float64)
    bad = ~(margin > 0) if strict else ~(margin >= -THEOREM1_TOL * (1.0 + scale))
    i = int(np.nanargmin(np.where(np.isnan(margin), -np.inf, margin)))
    eta, d, sigma = (float(np.asarray(a).ravel()[i]) for a in points)
    return InequalityResult(theorem, statement, strict, int(margin.size), int(bad.sum()),
                            float(margin.ravel()[i]), (eta, d, sigma))


def check_theorems(eta: NDArray[np.float64] | Sequence[float], d: NDArray[np.float64] | Sequence[float],
                   sigma: NDArray[np.float64] | Sequence[float], *,
                   natural_z_fn: ZFn | None = None, adversarial_z_fn: ZFn | None = None) -> CheckReport:
    """Check Theorems 1-3 at the points ``(eta[i], d[i], sigma[i])`` with ``eps = 2 eta`` (the paper's budget).

    ``eta`` must lie in (0, 1/3) (the hypothesis of Theorem 3), ``d >= 1``, ``sigma > 0``; a ``ValueError``
    names the first bad value. Returns a :class:`CheckReport`; ``report.ok`` is False on any violation.
    """
    nat = natural_z_fn if natural_z_fn is not None else gaussian.natural_z
    adv = adversarial_z_fn if adversarial_z_fn is not None else gaussian.adversarial_z
    eta_a, d_a, sigma_a = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64).ravel() for a in (eta, d, sigma)))
    gaussian.validate_parameters(sigma_a, eta_a, d_a)
    if np.any(eta_a >= 1.0 / 3.0):
        raise ValueError(f"eta must be in (0, 1/3), got {float(eta_a[eta_a >= 1 / 3][0])!r}")
    eps = 2.0 * eta_a
    points = (eta_a, d_a, sigma_a)
    mu, mu1, mu2 = gaussian.delusive_means(eta_a, d_a)
    clf = gaussian.five_classifiers(eta_a, d_a, eps)
    z = {name: nat(w, mu, sigma_a) for name, w in clf.items()}
    zero = np.zeros_like(eta_a)

    results = [
        _result("Thm 2", "R(f_D, D) < R(f_D2, D)", z["f_D"] - z["f_D2"], True, zero, points),
        _result("Thm 2", "R(f_D2, D) < R(f_D1, D)", z["f_D2"] - z["f_D1"], True, zero, points),
        _result("Thm 3", "R(f_D1, D) > R(f_D1_rob, D)", z["f_D1_rob"] - z["f_D1"], True, zero, points),
        _result("Thm 3", "R(f_D2, D) > R(f_D2_rob, D)", z["f_D2_rob"] - z["f_D2"], True, zero, points),
    ]
    for hat_name, mu_hat in (("D1", mu1), ("D2", mu2)):
        for name in gaussian.MODEL_NAMES:
            z_adv = adv(clf[name], mu_hat, sigma_a, eps)
            results.append(_result("Thm 1", f"R_nat({name}, D) <= R_adv({name}, {hat_name}, eps)",
                                   z[name] - z_adv, False, np.abs(z[name]), points))
    return CheckReport(int(eta_a.size), results)


def format_report(report: CheckReport) -> str:
    """A fixed-width table: one row per inequality, with the smallest z-margin and where it occurs."""
    head = f"{'theorem':<7} {'inequality (checked on z-scores)':<48} {'points':>7} {'violations':>10} " \
           f"{'min z-margin':>13}  {'at (eta, d, sigma)'}"
    lines = [head, "-" * len(head)]
    for r in report.results:
        eta, d, sigma = r.worst_point
        lines.append(f"{r.theorem:<7} {r.statement:<48} {r.n_points:>7} {r.n_violations:>10} "
                     f"{r.min_margin:>13.3e}  ({eta:.4g}, {d:.4g}, {sigma:.4g})")
    verdict = "all theorems hold" if report.ok else f"VIOLATED: {report.n_violations} failing (point, inequality)"
    lines.append(f"{report.n_points} grid points, {len(report.results)} inequalities: {verdict}")
    return "\n".join(lines)
