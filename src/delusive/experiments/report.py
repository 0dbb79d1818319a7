"""Reports of a sweep: Markdown and CSV tables (rows: training method, columns: attacks, mean ± std over
seeds, the clean-data baseline included), a bar chart like the paper's Figure 4, and training curves."""

from __future__ import annotations

import csv
import io
import math
import textwrap
from collections import defaultdict
from pathlib import Path
from typing import Any

from delusive.utils import atomic_write, atomic_write_text

ATTACK_ORDER = ("clean", "L2C", "P1", "P2", "P3", "P4", "P5")


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1; 0 for a single seed)."""
    n = len(values)
    m = sum(values) / n
    if n < 2:
        return m, 0.0
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))


def _order(values: list[str], preferred: tuple[str, ...] = (), ranks: dict[str, int] | None = None) -> list[str]:
    """Distinct values: by the spec's order where known, else ``preferred``, else first appearance."""
    seen: list[str] = []
    for v in values:
        if v not in seen:
            seen.append(v)
    ranks = ranks or {}
    return sorted(seen, key=lambda v: (ranks.get(v, 10**6), preferred.index(v) if v in preferred else
                                       len(preferred), seen.index(v)))


def _rows(records: list[dict[str, Any]]) -> list[str]:
    ranks = {r["defense"]: r["order"]["defense"] for r in records if "order" in r}
    return _order([r["defense"] for r in records], ranks=ranks)


def _cols(records: list[dict[str, Any]]) -> list[str]:
    ranks = {r["attack"]: r["order"]["attack"] for r in records if "order" in r}
    return _order([r["attack"] for r in records], ATTACK_ORDER, ranks)


def groups(records: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Records split by (dataset, model): each group gets its own table."""
    out: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        out[(r.get("dataset", "?"), r.get("model", "?"))].append(r)
    return [(f"{d}, {m}", rs) for (d, m), rs in out.items()]


def aggregate(records: list[dict[str, Any]], metric: str) -> dict[tuple[str, str], dict[str, float]]:
    """(defense label, attack) → {mean, std, n} of ``metric`` (a fraction) over seeds, in percent.

    Records must come from one (dataset, model) group (see :func:`groups`); a seed seen twice for the same
    cell is an error rather than an extra sample.
    """
    groups: dict[tuple[str, str], list[float]] = defaultdict(list)
    seen: set[tuple[str, str, int]] = set()
    for r in records:
        key = (r["defense"], r["attack"], r["seed"])
        if key in seen:
            raise ValueError(f"two results for {r['defense']} on {r['attack']} with seed {r['seed']}: "
                             "the records mix configurations")
        seen.add(key)
        groups[(r["defense"], r["attack"])].append(100.0 * float(r[metric]))
    out = {}
    for key, vals in groups.items():
        m, s = mean_std(vals)
        out[key] = {"mean": m, "std": s, "n": len(vals)}
    return out


def train_time(record: dict[str, Any]) -> float:
    """Seconds in the training loop alone: the sum of the per-epoch times in the history (so records
    written before ``train_time_s`` excluded evaluation report the same quantity), else ``train_time_s``."""
    epochs = [float(h["epoch_time_s"]) for h in record.get("history", []) if "epoch_time_s" in h]
    return sum(epochs) if epochs else float(record.get("train_time_s", 0.0))


def _mean_of_means(stats: list[dict[str, float] | None]) -> str:
    """Mean of a row's cell means; "—" when a cell is missing (a partial sweep)."""
    means = [st["mean"] for st in stats if st is not None]
    return f"{sum(means) / len(means):.2f}" if len(means) == len(stats) else "—"


def format_cell(stat: dict[str, float] | None) -> str:
    if stat is None:
        return "—"
    if stat["n"] < 2:
        return f"{stat['mean']:.2f}"
    return f"{stat['mean']:.2f} ± {stat['std']:.2f}"


def table_markdown(records: list[dict[str, Any]], metric: str = "natural_accuracy", title: str = "") -> str:
    rows, cols = _rows(records), _cols(records)
    stats = aggregate(records, metric)
    times: dict[str, list[float]] = defaultdict(list)
    for r in records:
        times[r["defense"]].append(train_time(r))
    lines = []
    if title:
        lines += [f"**{title}**", ""]
    poisoned = [c for c in cols if c != "clean"]
    with_mean = len(poisoned) >= 2
    head = cols + ([f"mean {poisoned[0]}–{poisoned[-1]}"] if with_mean else [])
    lines.append("| training | " + " | ".join(head) + " | train time / run (s) |")
    lines.append("|---|" + "---|" * len(head) + "---|")
    for row in rows:
        t = times[row]
        cells = [format_cell(stats.get((row, c))) for c in cols]
        if with_mean:
            cells.append(_mean_of_means([stats.get((row, c)) for c in poisoned]))
        lines.append(f"| {row} | " + " | ".join(cells) + f" | {sum(t) / len(t):.0f} |")
    seeds = sorted({r["seed"] for r in records})
    what = "Robust accuracy (under the attack named above)" if "robust" in metric else "Accuracy"
    lines += ["", f"{what} in % on the clean test set, mean ± sample std over seeds {seeds}."
              + (" The mean column averages the row's poisoned-data cells (Table 2's summary of a defense)."
                 if with_mean else "")
              + " Train time is the training loop alone, without the per-epoch test evaluation."]
    return "\n".join(lines) + "\n"


def table_csv(records: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["training", "attack", "metric", "mean_percent", "std_percent", "n_seeds"])
    for metric in ("natural_accuracy", "robust_accuracy", "best_natural_accuracy"):
        stats = aggregate(records, metric)
        for row in _rows(records):
            for col in _cols(records):
                s = stats.get((row, col))
                if s:
                    w.writerow([row, col, metric, f"{s['mean']:.4f}", f"{s['std']:.4f}", s["n"]])
    return buf.getvalue()


def figure_bars(records: list[dict[str, Any]], out: Path, title: str = "") -> Path:
    """Grouped bars of natural accuracy per attack and training method; the line is clean standard training
    (the paper's Figure 4)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = _rows(records), _cols(records)
    stats = aggregate(records, "natural_accuracy")
    fig, ax = plt.subplots(figsize=(1.4 + 1.1 * len(cols), 3.6))
    width = 0.8 / max(len(rows), 1)
    for i, row in enumerate(rows):
        xs = [j + (i - (len(rows) - 1) / 2) * width for j in range(len(cols))]
        means = [stats.get((row, c), {"mean": float("nan")})["mean"] for c in cols]
        errs = [stats.get((row, c), {"std": 0.0})["std"] for c in cols]
        ax.bar(xs, means, width, yerr=errs, capsize=2, label=row)
    standard = [r["defense"] for r in records if r.get("defense_name") == "standard"]
    baseline = stats.get((standard[0], "clean")) if standard else None
    if baseline:
        ax.axhline(baseline["mean"], color="black", ls="--", lw=1, label=f"{standard[0]} on clean data")
    ax.set_xticks(range(len(cols)), cols)
    ax.set_ylabel("natural test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("\n".join(textwrap.wrap(title, 90)), fontsize=8)
    fig.tight_layout()
    with atomic_write(out, "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)
    return out


def figure_curves(records: list[dict[str, Any]], out: Path) -> Path:
    """Clean-test natural accuracy per epoch, one panel per training method, one line per attack and seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _rows(records)
    fig, axes = plt.subplots(1, len(rows), figsize=(3.4 * len(rows), 3), squeeze=False)
    for ax, row in zip(axes[0], rows, strict=True):
        for r in records:
            if r["defense"] != row:
                continue
            h = r["history"]
            ax.plot([e["epoch"] for e in h], [100 * e["test_natural_accuracy"] for e in h], marker=".",
                    label=f"{r['attack']} s{r['seed']}")
        ax.set_title(row, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("natural test accuracy (%)")
        ax.legend(fontsize=6)
    fig.tight_layout()
    with atomic_write(out, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
    return out


def write_report(records: list[dict[str, Any]], out_dir: str | Path, title: str = "") -> dict[str, Path]:
    if not records:
        raise ValueError(f"{out_dir}: no finished cells to report")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parts = [f"# {title or 'Sweep report'}\n"]
    multi = len(groups(records)) > 1
    for name, rs in groups(records):
        suffix = f" — {name}" if multi else ""
        parts.append(table_markdown(rs, "natural_accuracy", f"Natural accuracy (final epoch){suffix}"))
        parts.append(table_markdown(rs, "robust_accuracy", f"Robust accuracy (PGD, {_threat_text(rs)}, first "
                                    f"{rs[0].get('robust_subset', '?')} test images, final epoch){suffix}"))
        if any(r.get("selection") == "val_natural_accuracy" for r in rs):
            parts.append(table_markdown(rs, "best_natural_accuracy", "Natural accuracy at the epoch chosen on a "
                                        f"held-out split of the training set{suffix}"))
    md = "\n".join(parts)
    paths = {"table_md": out / "table.md", "table_csv": out / "table.csv", "figure": out / "figure.png",
             "curves": out / "curves.png"}
    atomic_write_text(paths["table_md"], md)
    atomic_write_text(paths["table_csv"], table_csv(records))
    first = groups(records)[0][1]
    figure_bars(first, paths["figure"], title)
    figure_curves(first, paths["curves"])
    return paths


def _threat_text(records: list[dict[str, Any]]) -> str:
    t = records[0].get("eval_threat") or {}
    return f"{t.get('norm', '?')} ε={t.get('eps_text', '?')}"
