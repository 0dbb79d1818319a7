"""What produced a number: the evaluation spec recorded beside every robust accuracy, and its one-line form.

``eval_spec`` (contract 3 of issue 19) says which attack ran and how (components, steps, restarts, step size,
Square's queries), on how many test images chosen how, in which precision, and the Wilson 95% confidence
intervals of the robust and natural accuracies. Reports print :func:`describe_eval_spec` verbatim.
"""

from __future__ import annotations

import math
from typing import Any

from delusive.evaluation.attacks import DEFAULT_QUERIES

_STEP_SIZE = {"apgd-ce": "APGD adaptive", "apgd-t": "APGD adaptive", "fab-t": "FAB (eta 1.05, alpha_max 0.1, "
              "beta 0.9)", "square": "Square (p_init 0.8)"}
NOT_RECORDED = "evaluation spec not recorded"


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion ``k / n`` (Wilson 1927): the 95% interval for z = 1.96.

    Unlike the normal approximation it stays inside [0, 1] and is not empty at k = 0 or k = n. ``n`` = 0 gives
    the uninformative [0, 1]."""
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"wilson_interval: need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def step_size_text(components: list[str], steps: int | None, rel_step_size: float | None) -> str:
    """How the step size was set, per component kind: ``2.5ε/20`` for PGD, else the attack's own rule."""
    parts: list[str] = []
    for comp in components:
        if comp == "pgd":
            k = max(int(steps or 1), 1)
            rel = rel_step_size if rel_step_size is not None else 2.5 / k
            text = f"{rel * k:.4g}ε/{k}"
        else:
            text = _STEP_SIZE[comp]
        if text not in parts:
            parts.append(text)
    return "; ".join(parts)


def build_eval_spec(*, attack: str, components: list[str], norm: str, eps: str, steps: int | None, restarts: int,
                    rel_step_size: float | None, queries: int | None, n: int, n_correct: int, subset: str,
                    natural_n: int, natural_correct: int) -> dict[str, Any]:
    """The ``eval_spec`` record of one robust evaluation (keys of contract 3)."""
    uses_steps = any(c != "square" for c in components)
    return {
        "attack": attack, "components": list(components), "norm": norm, "eps": eps,
        "steps": int(steps) if uses_steps and steps is not None else None, "restarts": int(restarts),
        "step_size": step_size_text(components, steps, rel_step_size),
        "queries": (DEFAULT_QUERIES if queries is None else int(queries)) if "square" in components else None,
        "n": int(n), "subset": subset, "precision": "fp32",
        "robust_ci95": list(wilson_interval(n_correct, n)),
        "natural_n": int(natural_n), "natural_ci95": list(wilson_interval(natural_correct, natural_n)),
    }


def describe_eval_spec(spec: dict[str, Any] | None) -> str:
    """One line that says what produced a robust accuracy, e.g. ``autoattack (apgd-ce → apgd-t → fab-t →
    square), linf ε=0.2, 100 steps, 1 restart, step APGD adaptive; …, 5000 queries, fp32, n=1000 test images
    (seeded class-stratified, seed 0), robust 95% CI [51.2, 57.4]%, natural 95% CI [88.1, 89.3]% (n=10000)``.
    An old record without a spec gives "evaluation spec not recorded"."""
    if not spec:
        return NOT_RECORDED
    parts = [f"{spec.get('attack')} ({' → '.join(spec.get('components') or [])})",
             f"{spec.get('norm')} ε={spec.get('eps')}"]
    if spec.get("steps") is not None:
        parts.append(f"{spec['steps']} steps")
    restarts = spec.get("restarts")
    if restarts is not None:
        parts.append(f"{restarts} restart{'s' if restarts != 1 else ''}")
    if spec.get("step_size"):
        parts.append(f"step {spec['step_size']}")
    if spec.get("queries") is not None:
        parts.append(f"{spec['queries']} queries")
    parts.append(str(spec.get("precision", "?")))
    parts.append(f"n={spec.get('n')} test images ({spec.get('subset')})")
    if spec.get("robust_ci95"):
        lo, hi = spec["robust_ci95"]
        parts.append(f"robust 95% CI [{100 * lo:.1f}, {100 * hi:.1f}]%")
    if spec.get("natural_ci95"):
        lo, hi = spec["natural_ci95"]
        parts.append(f"natural 95% CI [{100 * lo:.1f}, {100 * hi:.1f}]% (n={spec.get('natural_n')})")
    return ", ".join(parts)
