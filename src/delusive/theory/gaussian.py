"""Closed forms for linear classifiers on the mixture-Gaussian setting of Section 3.2 (Eqs. 5-7).

The data model: ``y`` uniform in {-1, +1} and ``x ~ N(y * m, sigma^2 I)`` in R^{d+1}. For a linear classifier
``f(x) = sign(w^T x)`` the signed score ``y w^T x`` is a 1-D Gaussian with mean ``w^T m`` and standard deviation
``sigma * ||w||_2``, so every accuracy here is ``Phi(z)`` for a *z-score* ``z``:

* natural accuracy        ``Phi(w^T m / (sigma ||w||_2))``;
* l_inf adversarial accuracy ``Phi((w^T m - eps ||w||_1) / (sigma ||w||_2))``, because the worst perturbation in
  the l_inf ball of radius ``eps`` is ``delta = -eps * y * sign(w)``, which lowers every margin by
  ``eps ||w||_1`` (Hoelder's inequality is tight there).

Comparisons between classifiers are made on the z-scores (or on ``log Phi(-z)``, the log risk), never on the
rounded probabilities: at large ``d`` every good classifier has accuracy 1.0 in float64 although the orderings of
Theorems 2 and 3 still hold.

The means of the paper have one robust coordinate and ``d`` equal non-robust ones, so they -- and every
classifier derived from them -- are stored as a :class:`BlockVector` ``(head, tail, ..., tail)``; this keeps
``d = 10^9`` as cheap as ``d = 1`` and lets every function broadcast over numpy arrays of parameters.
Plain numpy vectors are accepted wherever a vector is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import norm

__all__ = [
    "MODEL_LABELS",
    "MODEL_NAMES",
    "BlockVector",
    "Vector",
    "accuracy_from_z",
    "adversarial_accuracy",
    "adversarial_z",
    "bayes_classifier",
    "delusive_means",
    "five_classifiers",
    "five_model_accuracies",
    "five_model_z",
    "log_risk_from_z",
    "natural_accuracy",
    "natural_z",
    "robust_classifier",
    "validate_parameters",
]


@dataclass(frozen=True)
class BlockVector:
    """The vector ``(head, tail, ..., tail)`` in R^{d+1}: one robust coordinate and ``d`` equal non-robust ones.

    ``head``, ``tail`` and ``d`` may be scalars or broadcastable numpy arrays (one vector per element), which is
    how the figure and the theorem checks evaluate many parameter points at once.
    """

    head: ArrayLike
    tail: ArrayLike
    d: ArrayLike

    def _parts(self) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        return (np.asarray(self.head, dtype=np.float64), np.asarray(self.tail, dtype=np.float64),
                np.asarray(self.d, dtype=np.float64))

    def dot(self, other: BlockVector) -> NDArray[np.float64]:
        """``self^T other``; both must describe vectors of the same dimension ``d + 1``."""
        h, t, d = self._parts()
        oh, ot, _ = other._parts()
        return h * oh + d * t * ot

    def norm2(self) -> NDArray[np.float64]:
        h, t, d = self._parts()
        return np.sqrt(h * h + d * t * t)

    def norm1(self) -> NDArray[np.float64]:
        h, t, d = self._parts()
        return np.abs(h) + d * np.abs(t)

    def soft_threshold(self, eps: ArrayLike) -> BlockVector:
        """Coordinate-wise ``sign(v_i) * max(|v_i| - eps, 0)``."""
        h, t, _ = self._parts()
        e = np.asarray(eps, dtype=np.float64)
        return BlockVector(np.sign(h) * np.maximum(np.abs(h) - e, 0.0),
                           np.sign(t) * np.maximum(np.abs(t) - e, 0.0), self.d)

    def to_array(self) -> NDArray[np.float64]:
        """The dense vector (scalar fields and a modest integer ``d`` only)."""
        h, t, d = self._parts()
        if h.ndim or t.ndim or d.ndim:
            raise ValueError("to_array: only a BlockVector with scalar head, tail and d can be made dense")
        n = int(d)
        if n != d or n < 0:
            raise ValueError(f"to_array: d must be a non-negative integer, got {float(d)!r}")
        out = np.full(n + 1, float(t))
        out[0] = float(h)
        return out


#: A vector argument: a :class:`BlockVector` or anything ``np.asarray`` makes a 1-D float array of.
Vector: TypeAlias = BlockVector | NDArray[np.floating] | Sequence[float]


def _dot(a: Vector, b: Vector) -> NDArray[np.float64]:
    if isinstance(a, BlockVector) and isinstance(b, BlockVector):
        return a.dot(b)
    return np.asarray(np.dot(_dense(a), _dense(b)), dtype=np.float64)


def _dense(v: Vector) -> NDArray[np.float64]:
    return v.to_array() if isinstance(v, BlockVector) else np.asarray(v, dtype=np.float64)


def _norm2(v: Vector) -> NDArray[np.float64]:
    return v.norm2() if isinstance(v, BlockVector) else np.asarray(np.linalg.norm(_dense(v), 2))


def _norm1(v: Vector) -> NDArray[np.float64]:
    return v.norm1() if isinstance(v, BlockVector) else np.asarray(np.abs(_dense(v)).sum())


def _safe_ratio(num: NDArray[np.float64], den: NDArray[np.float64]) -> NDArray[np.float64]:
    """``num / den`` with ``0`` where ``den == 0``: the zero classifier predicts sign(0) and is scored as a coin
    flip (accuracy 1/2, z = 0), the only convention under which its risk is defined."""
    num, den = np.broadcast_arrays(np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64))
    out = np.zeros(num.shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out if out.ndim else out[()]


def natural_z(w: Vector, mean: Vector, sigma: ArrayLike) -> NDArray[np.float64]:
    """z-score of the natural accuracy of ``sign(w^T x)`` on ``N(y * mean, sigma^2 I)``: ``w^T m / (sigma ||w||)``.

    ``y w^T x ~ N(w^T m, sigma^2 ||w||_2^2)``, so the classifier is right with probability ``Phi(z)``.
    """
    return _safe_ratio(_dot(w, mean), np.asarray(sigma, dtype=np.float64) * _norm2(w))


def adversarial_z(w: Vector, mean: Vector, sigma: ArrayLike, eps: ArrayLike) -> NDArray[np.float64]:
    """z-score of the l_inf adversarial accuracy: ``(w^T m - eps ||w||_1) / (sigma ||w||_2)``.

    ``min_{||delta||_inf <= eps} y w^T (x + delta) = y w^T x - eps ||w||_1`` (attained at
    ``delta = -eps y sign(w)``), so the adversary shifts the Gaussian score by ``-eps ||w||_1``. This is the
    adversarial risk ``R_adv(f, D)`` of Theorem 1 for a linear ``f``.
    """
    margin = _dot(w, mean) - np.asarray(eps, dtype=np.float64) * _norm1(w)
    return _safe_ratio(margin, np.asarray(sigma, dtype=np.float64) * _norm2(w))


def accuracy_from_z(z: ArrayLike) -> NDArray[np.float64]:
    """``Phi(z)``; rounds to 1.0 in float64 once ``z > 8.3`` -- compare z-scores, not these."""
    return norm.cdf(z)


def log_risk_from_z(z: ArrayLike) -> NDArray[np.float64]:
    """``log(1 - Phi(z)) = log Phi(-z)``, the log 0-1 risk, accurate even where ``Phi(z)`` rounds to 1."""
    return norm.logsf(z)


def natural_accuracy(w: Vector, mean: Vector, sigma: ArrayLike) -> NDArray[np.float64]:
    """Natural accuracy ``Phi(w^T m / (sigma ||w||_2))`` of ``sign(w^T x)`` on the Gaussian mixture."""
    return accuracy_from_z(natural_z(w, mean, sigma))


def adversarial_accuracy(w: Vector, mean: Vector, sigma: ArrayLike, eps: ArrayLike) -> NDArray[np.float64]:
    """l_inf adversarial accuracy ``Phi((w^T m - eps ||w||_1) / (sigma ||w||_2))`` of ``sign(w^T x)``."""
    return accuracy_from_z(adversarial_z(w, mean, sigma, eps))


def bayes_classifier(mean: Vector) -> Vector:
    """The Bayes-optimal (0-1 loss) classifier of ``N(y * m, sigma^2 I)`` with uniform labels: ``w = m``.

    The log-odds are ``2 m^T x / sigma^2``, so ``sign(m^T x)`` is optimal for every ``sigma`` (Section 3.2).
    """
    return mean


def robust_classifier(mean: Vector, eps: ArrayLike) -> Vector:
    """The optimal linear l_inf-robust classifier of ``N(y * m, sigma^2 I)``: the soft-threshold of ``m`` by eps.

    For any ``w``, ``w^T m - eps ||w||_1 <= sum_i |w_i| (|m_i| - eps)_+ <= ||w||_2 ||s||_2`` with
    ``s = sign(m) (|m| - eps)_+``, with equality iff ``w`` is a positive multiple of ``s``; so ``s`` maximises the
    adversarial z-score and minimises the adversarial 0-1 risk over linear classifiers (the argument of
    Tsipras et al. 2019 and of the paper's Appendix C.3). For ``eps >= 2 eta`` this zeroes every non-robust
    coordinate of D-hat-1 and shrinks those of D-hat-2 from ``3 eta`` to ``3 eta - eps``.
    """
    if isinstance(mean, BlockVector):
        return mean.soft_threshold(eps)
    m = _dense(mean)
    return np.sign(m) * np.maximum(np.abs(m) - float(np.asarray(eps)), 0.0)


def delusive_means(eta: ArrayLike, d: ArrayLike) -> tuple[BlockVector, BlockVector, BlockVector]:
    """The means of D (Eq. 5), D-hat-1 (Eq. 6) and D-hat-2 (Eq. 7).

    ``mu = (1, eta, ..., eta)``, ``mu1 = (1, -eta, ..., -eta)``, ``mu2 = (1, 3 eta, ..., 3 eta)``; both shifted
    means differ from ``mu`` by ``2 eta`` in every non-robust coordinate, so ``W_inf(D, D-hat-i) <= 2 eta``.
    """
    e = np.asarray(eta, dtype=np.float64)
    one = np.ones_like(e)
    return BlockVector(one, e, d), BlockVector(one, -e, d), BlockVector(one, 3.0 * e, d)


#: The five models of Figure 2, in the paper's order.
MODEL_NAMES: tuple[str, ...] = ("f_D", "f_D1", "f_D2", "f_D1_rob", "f_D2_rob")
MODEL_LABELS: dict[str, str] = {
    "f_D": r"$f_{\mathcal{D}}$",
    "f_D1": r"$f_{\widehat{\mathcal{D}}_1}$",
    "f_D2": r"$f_{\widehat{\mathcal{D}}_2}$",
    "f_D1_rob": r"$f_{\widehat{\mathcal{D}}_1,\mathrm{rob}}$",
    "f_D2_rob": r"$f_{\widehat{\mathcal{D}}_2,\mathrm{rob}}$",
}


def validate_parameters(sigma: ArrayLike, eta: ArrayLike, d: ArrayLike, eps: ArrayLike | None = None) -> None:
    """Raise ``ValueError`` naming the parameter, the bad value and what is allowed."""
    checks = [("sigma", sigma, "> 0", lambda a: a > 0), ("eta", eta, "> 0", lambda a: a > 0),
              ("d", d, ">= 1", lambda a: a >= 1)]
    if eps is not None:
        checks.append(("eps", eps, ">= 0", lambda a: a >= 0))
    for name, value, allowed, ok in checks:
        a = np.asarray(value, dtype=np.float64)
        bad = ~(np.isfinite(a) & ok(a))
        if np.any(bad):
            raise ValueError(f"{name} must be finite and {allowed}, got {float(a[bad].flat[0]):g}")


def five_classifiers(eta: ArrayLike, d: ArrayLike, eps: ArrayLike | None = None) -> dict[str, BlockVector]:
    """The five linear classifiers of Figure 2: Bayes-optimal for D, D-hat-1, D-hat-2 and l_inf-robust (budget
    ``eps``, default ``2 eta``, the attack's budget) for D-hat-1 and D-hat-2."""
    mu, mu1, mu2 = delusive_means(eta, d)
    e = 2.0 * np.asarray(eta, dtype=np.float64) if eps is None else eps
    return {
        "f_D": bayes_classifier(mu),
        "f_D1": bayes_classifier(mu1),
        "f_D2": bayes_classifier(mu2),
        "f_D1_rob": robust_classifier(mu1, e),
        "f_D2_rob": robust_classifier(mu2, e),
    }  # type: ignore[return-value]


def five_model_z(sigma: ArrayLike, eta: ArrayLike, d: ArrayLike,
                 eps: ArrayLike | None = None) -> dict[str, NDArray[np.float64]]:
    """Natural z-scores on D of the five models of Figure 2 (broadcast over array arguments)."""
    validate_parameters(sigma, eta, d, eps)
    mu = delusive_means(eta, d)[0]
    return {name: natural_z(w, mu, sigma) for name, w in five_classifiers(eta, d, eps).items()}


def five_model_accuracies(sigma: ArrayLike, eta: ArrayLike, d: ArrayLike,
                          eps: ArrayLike | None = None) -> dict[str, NDArray[np.float64]]:
    """Natural accuracies on D of the five models of Figure 2, e.g. at sigma=1, eta=0.01, d=10^4:
    ``f_D`` -> Phi(sqrt 2) = 0.9214, ``f_D1`` -> 0.5, ``f_D1_rob`` -> Phi(1) = 0.8413."""
    return {name: accuracy_from_z(z) for name, z in five_model_z(sigma, eta, d, eps).items()}
