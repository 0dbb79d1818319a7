"""The defense comparison (issue 23, preset ``defenses-fmnist``): per attack, natural accuracy under every
defense, robust accuracy for the defenses that claim robustness (those trained against a threat model: the
AT variants), training time relative to standard training, and a **best known defense** row; one heat map
(attacks × defenses) a reader takes in at a glance.

Written as ``defenses.md``, ``defenses.csv`` and ``defenses.png`` beside the sweep's other report files, only
when the records hold a defense beyond AT (a training-set transform, UEraser, mixup, cutmix or cutout), so
every other study's report is unchanged. Attack and defense colours come from :mod:`report_style`.
Runs marked ``collapsed`` (the loop's collapse monitor) are left out of the means and counted in the cell.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from pathlib import Path
from typing import Any

from delusive.experiments.report_quality import collapse
from delusive.experiments.report_stats import format_cell, stats_by
from delusive.experiments.report_style import (
    attack_colour,
    attack_order,
    defense_colour,
    pyplot,
    save,
    suptitle,
)
from delusive.utils import atomic_write_text

#: objectives that are defenses "beyond AT" (training-set transforms count too, by their ``+`` name)
BEYOND_AT = ("ueraser", "ueraser_lite", "mixup", "cutmix", "cutout")
__all__ = ["BEYOND_AT", "defense_rows", "is_defense_study", "write_defense_report"]


def _components(name: str | None) -> tuple[list[str], str]:
    from delusive.defenses import split_defense

    try:
        return split_defense(name or "standard")
    except ValueError:
        return [], name or "?"


def is_defense_study(records: list[dict[str, Any]]) -> bool:
    """Whether the records compare defenses beyond AT (a transform or a loss defense among them)."""
    for r in records:
        head, obj = _components(r.get("defense_name"))
        if head or obj in BEYOND_AT:
            return True
    return False


def claims_robustness(r: dict[str, Any]) -> bool:
    """A defense trained against a threat model (it has one in its recorded identity): the AT variants."""
    return bool(((r.get("config") or {}).get("defense") or {}).get("threat"))


def _ok(r: dict[str, Any]) -> bool:
    """Not collapsed: neither the record (its ``collapsed`` flag or the plateau rule, ``collapse``) nor its
    selected epoch's history row says so (sweep records may carry only the history)."""
    if r.get("collapsed") or collapse(r) is not None:
        return False
    chosen = [h for h in r.get("history", []) if h.get("epoch") == r.get("selected_epoch")]
    return not (chosen and chosen[0].get("collapsed"))


def _time(r: dict[str, Any]) -> float:
    epochs = [float(h["epoch_time_s"]) for h in r.get("history", []) if "epoch_time_s" in h]
    return (sum(epochs) if epochs else float(r.get("train_time_s") or 0.0)) + float(r.get("transform_time_s") or 0.0)


def defense_rows(records: list[dict[str, Any]]) -> list[str]:
    """Defense labels in the spec's order (standard training first)."""
    order: dict[str, tuple[int, int]] = {}
    for i, r in enumerate(records):
        rank = (0 if r.get("defense_name") == "standard" else 1, int((r.get("order") or {}).get("defense", i)))
        order.setdefault(r["defense"], rank)
    return sorted(order, key=lambda k: order[k])


def _relative_times(records: list[dict[str, Any]], rows: list[str]) -> dict[str, float | None]:
    """Mean training time (loop + training-set transform) of each defense over the mean of standard training."""
    times: dict[str, list[float]] = defaultdict(list)
    for r in records:
        times[r["defense"]].append(_time(r))
    base_rows = [row for row in rows if any(r.get("defense_name") == "standard" and r["defense"] == row
                                            for r in records)]
    base = sum(times[base_rows[0]]) / len(times[base_rows[0]]) if base_rows else 0.0
    return {row: (sum(times[row]) / len(times[row]) / base if base > 0 and times[row] else None) for row in rows}


def _stats(records: list[dict[str, Any]], metric: str) -> dict[tuple[str, str], dict[str, float]]:
    return stats_by([r for r in records if _ok(r)], lambda r: (r["defense"], r["attack"]),
                    lambda r: None if r.get(metric) is None else float(r[metric]))


def _collapsed(records: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = defaultdict(int)
    for r in records:
        if not _ok(r):
            out[(r["defense"], r["attack"])] += 1
    return out


def best_defenses(records: list[dict[str, Any]], metric: str = "natural_accuracy"
                  ) -> dict[str, tuple[str, dict[str, float]]]:
    """attack → (defense label, stats) of the highest mean ``metric``; ties go to the cheaper defense."""
    stats = _stats(records, metric)
    rows = defense_rows(records)
    rel = _relative_times(records, rows)
    out = {}
    for attack in attack_order(records):
        cands = [(row, stats[(row, attack)]) for row in rows if (row, attack) in stats]
        if cands:
            out[attack] = max(cands, key=lambda c: (round(c[1]["mean"], 6), -(rel.get(c[0]) or 0.0)))
    return out


def table_markdown(records: list[dict[str, Any]], title: str = "") -> str:
    rows, cols = defense_rows(records), attack_order(records)
    nat, rob = _stats(records, "natural_accuracy"), _stats(records, "robust_accuracy")
    rel, lost = _relative_times(records, rows), _collapsed(records)
    poisoned = [c for c in cols if c != "clean"]

    def cell(stats: dict[tuple[str, str], dict[str, float]], row: str, col: str) -> str:
        text = format_cell(stats.get((row, col)))
        return text + (f" †{lost[(row, col)]}" if lost.get((row, col)) else "")

    def mean_poisoned(stats: dict[tuple[str, str], dict[str, float]], row: str) -> str:
        ms = [stats[(row, c)]["mean"] for c in poisoned if (row, c) in stats]
        return f"{sum(ms) / len(ms):.2f}" if ms and len(ms) == len(poisoned) else "—"

    head = cols + (["mean poisoned"] if poisoned else [])
    lines = [f"**{title or 'Defense comparison'}: natural accuracy (%)**", "",
             "| defense | " + " | ".join(head) + " | train time vs ST |", "|---|" + "---|" * (len(head) + 1)]
    for row in rows:
        cells = [cell(nat, row, c) for c in cols] + ([mean_poisoned(nat, row)] if poisoned else [])
        t = rel.get(row)
        lines.append(f"| {row} | " + " | ".join(cells) + f" | {'—' if t is None else f'{t:.2f}×'} |")
    best = best_defenses(records)
    best_cells = [f"**{best[c][0]}** ({best[c][1]['mean']:.2f})" if c in best else "—" for c in cols]
    lines.append("| **best known defense** | " + " | ".join(best_cells) + (" | " if poisoned else "") + " | |")
    robust_rows = [row for row in rows if any(r["defense"] == row and claims_robustness(r) for r in records)]
    if robust_rows:
        lines += ["", f"**{title or 'Defense comparison'}: robust accuracy (%) of the defenses that claim "
                  "robustness**", "", "| defense | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
        for row in robust_rows:
            lines.append(f"| {row} | " + " | ".join(cell(rob, row, c) for c in cols) + " |")
    seeds = sorted({r["seed"] for r in records})
    spread = (f"One seed ({seeds[0]}): no spread over seeds, a first reading" if len(seeds) == 1 else
              f"Mean ± sample std over seeds {', '.join(map(str, seeds))}")
    lines += ["", f"{spread}, on the clean test set. *Train time vs ST*: mean time in "
              "the training loop plus the defense's one-off training-set transform, over standard training's "
              "(same attacks and seeds). *Best known defense*: the highest mean natural accuracy per attack "
              "(ties: the cheaper defense)." + (" † n: n runs collapsed and are left out of the mean."
                                                 if lost else "")]
    return "\n".join(lines) + "\n"


def table_csv(records: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["defense", "attack", "metric", "mean_percent", "std_percent", "n_seeds", "train_time_vs_st"])
    rows = defense_rows(records)
    rel = _relative_times(records, rows)
    for metric in ("natural_accuracy", "robust_accuracy"):
        stats = _stats(records, metric)
        for row in rows:
            if metric == "robust_accuracy" and not any(r["defense"] == row and claims_robustness(r) for r in records):
                continue
            for col in attack_order(records):
                s = stats.get((row, col))
                if s:
                    t = rel.get(row)
                    w.writerow([row, col, metric, f"{s['mean']:.4f}", f"{s['std']:.4f}", s["n"],
                                "" if t is None else f"{t:.4f}"])
    return buf.getvalue()


def plot_heatmap(records: list[dict[str, Any]], title: str = "") -> Any:
    """Natural accuracy, defenses (rows) × attacks (columns), each cell annotated (``†n``: n of its runs
    collapsed and are left out of the mean); the best defense of each attack is outlined; tick labels take
    the attack's and the defense's colours of every other figure."""
    plt = pyplot()
    from matplotlib.patches import Rectangle

    rows, cols = defense_rows(records), attack_order(records)
    nat = _stats(records, "natural_accuracy")
    names = {r["defense"]: r.get("defense_name") for r in records}
    grid = [[nat[(row, c)]["mean"] if (row, c) in nat else float("nan") for c in cols] for row in rows]
    lost = _collapsed(records)
    fig, ax = plt.subplots(figsize=(1.6 + 0.85 * len(cols), 1.0 + 0.42 * len(rows)))
    im = ax.imshow(grid, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    for i in range(len(rows)):
        for j in range(len(cols)):
            v = grid[i][j]
            if v == v:  # not NaN
                n_lost = lost.get((rows[i], cols[j]), 0)  # some seeds collapsed: the mean is of the others
                ax.text(j, i, f"{v:.0f}" + (f" †{n_lost}" if n_lost else ""), ha="center", va="center", fontsize=7,
                        color="black" if v > 60 else "white")
            elif any(r["defense"] == rows[i] and r["attack"] == cols[j] for r in records):  # every run collapsed
                ax.text(j, i, "collapsed", ha="center", va="center", fontsize=6, color="black")
    best = best_defenses(records)
    for j, c in enumerate(cols):
        if c in best:
            i = rows.index(best[c][0])
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", lw=1.6))
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right")  # long labels (L2C (CPU schedule)) never overlap
    ax.set_yticks(range(len(rows)), rows)
    for t, c in zip(ax.get_xticklabels(), cols, strict=True):
        t.set_color(attack_colour(c))
    for t, row in zip(ax.get_yticklabels(), rows, strict=True):
        t.set_color(defense_colour(row, names.get(row)))
    ax.set_xlabel("attack")
    fig.colorbar(im, ax=ax, label="natural test accuracy (%)", fraction=0.04)
    suptitle(fig, title or "Defenses against each attack (red box: best known defense)")
    return fig


def write_defense_report(records: list[dict[str, Any]], out: str | Path, title: str = "") -> dict[str, Path]:
    """``defenses.md``, ``defenses.csv`` and ``defenses.png`` per (dataset, model) of a defense comparison;
    nothing (an empty mapping) for other studies."""
    if not is_defense_study(records):
        return {}
    out = Path(out)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[(r.get("dataset", "?"), r.get("model", "?"))].append(r)
    paths: dict[str, Path] = {}
    parts, csvs = [], []
    for k, ((dataset, model), rs) in enumerate(groups.items()):
        suffix = "" if len(groups) == 1 else f"-{k}"
        parts.append(table_markdown(rs, f"{dataset}, {model}"))
        csvs.append(table_csv(rs) if not csvs else table_csv(rs).split("\n", 1)[1])
        paths[f"defenses_figure{suffix}"] = save(plot_heatmap(rs, f"{title} — {dataset}, {model}" if title
                                                             else ""), out / f"defenses{suffix}.png")
    paths["defenses_md"], paths["defenses_csv"] = out / "defenses.md", out / "defenses.csv"
    atomic_write_text(paths["defenses_md"], "\n".join(parts))
    atomic_write_text(paths["defenses_csv"], "".join(csvs))
    return paths
