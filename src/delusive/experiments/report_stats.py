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


def format_cell(stat: dict[str, Any] | None, ci_n: int | None = None) -> str:
    """``mean ± std`` over the seeds that trained (the mean alone for one seed), ``(k/n)†`` when only k of n
    seeds trained (the rest collapsed, listed in the table's footnote), ``collapsed (0/n)†`` when none did.
    ``ci_n``: a one-seed accuracy measured on that many images also shows its 95% Wilson interval."""
    if stat is None:
        return "—"
    total = int(stat.get("total", stat["n"]))
    if stat["n"] == 0:
        return f"collapsed (0/{total})†"
    text = f"{stat['mean']:.2f}" if stat["n"] < 2 else f"{stat['mean']:.2f} ± {stat['std']:.2f}"
    if ci_n and stat["n"] == 1:
        from delusive.experiments.report_quality import ci_text

        text += f" {ci_text(stat['mean'], ci_n)}"
    return text + (f" ({stat['n']}/{total})†" if stat["n"] < total else "")


def stats_by(records: list[dict[str, Any]], key: Callable[[dict[str, Any]], Hashable],
             value: Callable[[dict[str, Any]], float | None], scale: float = 100.0,
             exclude_collapsed: bool = True) -> dict[Any, dict[str, Any]]:
    """key → {mean, std, n, total, collapsed} of ``value`` × ``scale`` over seeds; records whose value is None
    are left out. A seed seen twice under one key is an error rather than an extra sample (the records mix
    configurations).

    Collapsed cells (:func:`report_quality.collapse`) never enter the mean: ``n`` counts the seeds that
    trained, ``total`` all of them, ``collapsed`` lists the collapsed records (with ``collapsed_mean`` their
    mean, for a figure to mark). ``exclude_collapsed=False`` for quantities a collapse does not affect
    (crafting times)."""
    from delusive.experiments.report_quality import collapse

    vals: dict[Any, list[float]] = defaultdict(list)
    bad: dict[Any, list[tuple[float, dict[str, Any]]]] = defaultdict(list)
    seen: set[tuple[Any, int]] = set()
    for r in records:
        v = value(r)
        if v is None:
            continue
        k = key(r)
        if (k, r["seed"]) in seen:
            raise ValueError(f"two results for {k} with seed {r['seed']}: the records mix configurations")
        seen.add((k, r["seed"]))
        if exclude_collapsed and collapse(r) is not None:
            bad[k].append((scale * float(v), r))
        else:
            vals[k].append(scale * float(v))
    out: dict[Any, dict[str, Any]] = {}
    for k in list(dict.fromkeys([*vals, *bad])):
        vs, cs = vals.get(k, []), bad.get(k, [])
        m, s = mean_std(vs) if vs else (float("nan"), 0.0)
        cs = sorted(cs, key=lambda vr: vr[1]["seed"])
        out[k] = {"mean": m, "std": s, "n": len(vs), "total": len(vs) + len(cs),
                  "collapsed": [r for _, r in cs], "collapsed_values": [v for v, _ in cs]}
        if cs:
            out[k]["collapsed_mean"] = sum(v for v, _ in cs) / len(cs)
    return out


def collapse_footnote(stats: dict[Any, dict[str, Any]], name: Callable[[Any], str],
                      order: list[Any] | None = None) -> str:
    """``† collapsed to a constant predictor, left out of the means: PGD-AT on P1: seed 1 (epoch 1); ...``
    (empty when no cell collapsed). ``name`` renders a stats key."""
    from delusive.experiments.report_quality import collapse_text

    keys = [k for k in (order or []) if k in stats] + [k for k in stats if order is None or k not in order]
    items = [f"{name(k)}: " + ", ".join(f"{collapse_text(r)} {v:.2f}" for r, v in
                                        zip(stats[k]["collapsed"], stats[k]["collapsed_values"], strict=True))
             for k in keys if stats[k].get("collapsed")]
    if not items:
        return ""
    return ("† collapsed to a constant predictor (training loss at ln K, or accuracy at chance, at the reported "
            "epoch or for most epochs after the first), left out of the means; (k/n): k of n seeds trained. "
            "Collapsed cells, with the value each measured: "
            + "; ".join(items) + ".")


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
