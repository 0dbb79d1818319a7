"""Statistics over seeds and the provenance lines every report carries: mean ± sample std (the design
guide's pitfall 8), the sweep axes a set of result records varies, and which epoch and which attack the
numbers come from."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Hashable
from typing import Any

# the study axes a result record carries only when its spec uses them (Figures 5 and 6, partial poisoning)
AXES = ("defender_eps", "extra_clean", "poison_fraction")
AXIS_TEXT = {"defender_eps": "defender ε={}", "extra_clean": "+{} clean", "poison_fraction": "poisoned {}"}


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1; 0 for a single seed)."""
    n = len(values)
    m = sum(values) / n
    if n < 2:
        return m, 0.0
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))


def format_cell(stat: dict[str, float] | None) -> str:
    if stat is None:
        return "—"
    if stat["n"] < 2:
        return f"{stat['mean']:.2f}"
    return f"{stat['mean']:.2f} ± {stat['std']:.2f}"


def stats_by(records: list[dict[str, Any]], key: Callable[[dict[str, Any]], Hashable],
             value: Callable[[dict[str, Any]], float | None], scale: float = 100.0) -> dict[Any, dict[str, float]]:
    """key → {mean, std, n} of ``value`` × ``scale`` over seeds; records whose value is None are left out. A seed
    seen twice under one key is an error rather than an extra sample (the records mix configurations)."""
    vals: dict[Any, list[float]] = defaultdict(list)
    seen: set[tuple[Any, int]] = set()
    for r in records:
        v = value(r)
        if v is None:
            continue
        k = key(r)
        if (k, r["seed"]) in seen:
            raise ValueError(f"two results for {k} with seed {r['seed']}: the records mix configurations")
        seen.add((k, r["seed"]))
        vals[k].append(scale * float(v))
    out = {}
    for k, vs in vals.items():
        m, s = mean_std(vs)
        out[k] = {"mean": m, "std": s, "n": len(vs)}
    return out


def field(name: str) -> Callable[[dict[str, Any]], float | None]:
    """A record's value at a dotted path (``poison.generate_time_s``), or None where it is missing."""
    def get(r: dict[str, Any]) -> float | None:
        cur: Any = r
        for part in name.split("."):
            if not isinstance(cur, dict) or part not in cur:
                return None
            cur = cur[part]
        return None if cur is None else float(cur)
    return get


def axes_present(records: list[dict[str, Any]]) -> list[str]:
    """The study axes (:data:`AXES`) that the records vary (a value every record shares is no axis: a single
    defender ε stays out of the row labels)."""
    return [a for a in AXES if len({str(r[a]) for r in records if a in r}) > 1]


def axis_values(records: list[dict[str, Any]], axis: str) -> list[Any]:
    """The distinct values of ``axis`` in ascending order (records without it left out)."""
    return sorted({r[axis] for r in records if axis in r})


def row_label(r: dict[str, Any], axes: list[str]) -> str:
    """A table row's name: the defense label plus the record's values on the study axes, so cells that
    differ only in an axis never collapse into one mean."""
    extra = [AXIS_TEXT[a].format(_num(r[a])) for a in axes if a in r]
    return " ".join([r["defense"], *extra])


def _num(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def is_standard(r: dict[str, Any]) -> bool:
    """Standard training: the ``standard`` objective, or any defense at defender budget ε = 0 (Figure 5)."""
    return r.get("defense_name") == "standard" or ("defender_eps" in r and float(r["defender_eps"]) == 0.0)


def epoch_note(records: list[dict[str, Any]]) -> str:
    """Which epoch the numbers are: the one selected on the held-out training split, or the last."""
    by_sel: dict[str, set[str]] = defaultdict(set)
    axes = axes_present(records)
    for r in records:
        by_sel[str(r.get("selection", "last"))].add(row_label(r, axes))
    if set(by_sel) <= {"last"}:
        return "at the final epoch (no held-out split)"
    val = sorted({int(r["val_size"]) for r in records if r.get("val_size")})
    parts = []
    for sel, labels in sorted(by_sel.items()):
        what = "the final epoch" if sel == "last" else f"best {sel}"
        parts.append(f"{what} ({', '.join(sorted(labels))})")
    held = f"{'/'.join(map(str, val))} held-out training images" if val else "a held-out training split"
    return f"at the epoch selected on {held}: " + "; ".join(parts)


def robust_note(records: list[dict[str, Any]]) -> str:
    """Which attack produced the robust numbers (the records' ``robust_attack``)."""
    seen: list[str] = []
    for r in records:
        ra = r.get("robust_attack") or {}
        if not ra:
            continue
        t = ra.get("threat") or r.get("eval_threat") or {}
        bits = [str(ra.get("attack", "?")), f"{t.get('norm', '?')} ε={t.get('eps_text', t.get('eps', '?'))}"]
        if ra.get("attack") == "pgd":
            bits.append(f"{ra.get('steps')} steps, {ra.get('restarts')} restart(s)")
        size = (ra.get("subset") or {}).get("size", r.get("robust_subset"))
        text = f"{', '.join(bits)}, {size} test images"
        if text not in seen:
            seen.append(text)
    return "; ".join(seen) if seen else "no robust evaluation recorded"
