"""Reports of a sweep: Markdown and CSV tables (rows: training method, columns: attacks, mean ± std over
seeds, the clean-data baseline included), a bar chart like the paper's Figure 4 and training curves, plus
the layout of every other study of the paper whose axis the records carry (:mod:`report_studies`). Every
figure takes its colours and order from :mod:`report_style`, so an attack looks the same everywhere."""

from __future__ import annotations

import csv
import io
import textwrap
from collections import defaultdict
from pathlib import Path
from typing import Any

from delusive.experiments.report_defenses import write_defense_report
from delusive.experiments.report_quality import (
    ci_note,
    collapse,
    eval_note,
    figure_caption,
    run_config,
    sample_size,
    seeds_text,
)
from delusive.experiments.report_stats import (
    axes_present,
    collapse_footnote,
    epoch_note,
    format_cell,
    is_standard,
    mean_std,
    robust_note,
    row_label,
    stats_by,
)
from delusive.experiments.report_studies import write_studies
from delusive.experiments.report_style import (
    ATTACK_ORDER,
    attack_colour,
    attack_order,
    collapsed_legend_entry,
    defense_colour,
    defense_order,
    grid,
    legend_outside,
    mark_collapsed_bars,
    pyplot,
    save,
    ylabel_first_column,
)
from delusive.utils import atomic_write_text

__all__ = ["ATTACK_ORDER", "aggregate", "figure_bars", "figure_curves", "format_cell", "groups", "mean_std",
           "plot_bars", "plot_curves", "table_csv", "table_markdown", "train_time", "write_report"]


def _rows(records: list[dict[str, Any]]) -> list[str]:
    """Row labels: defenses in the fixed order, then the study-axis values in ascending order."""
    axes = axes_present(records)
    drank = {d: i for i, d in enumerate(defense_order(records))}
    keys: dict[str, tuple[Any, ...]] = {}
    for r in records:
        keys.setdefault(row_label(r, axes), (drank[r["defense"]], *[r.get(a, -1) for a in axes]))
    return sorted(keys, key=lambda k: keys[k])


def _cols(records: list[dict[str, Any]]) -> list[str]:
    return attack_order(records)


def groups(records: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Records split by (dataset, model): each group gets its own table."""
    out: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        out[(r.get("dataset", "?"), r.get("model", "?"))].append(r)
    return [(f"{d}, {m}", rs) for (d, m), rs in out.items()]


def aggregate(records: list[dict[str, Any]], metric: str) -> dict[tuple[str, str], dict[str, float]]:
    """(row label, attack) → {mean, std, n} of ``metric`` (a fraction) over seeds, in percent. The row label
    is the defense label, with the study-axis values appended when the records carry an axis.

    Records must come from one (dataset, model) group (see :func:`groups`); a seed seen twice for the same
    cell is an error rather than an extra sample.
    """
    axes = axes_present(records)
    return stats_by(records, lambda r: (row_label(r, axes), r["attack"]),
                    lambda r: None if r.get(metric) is None else float(r[metric]))


def train_time(record: dict[str, Any]) -> float:
    """Seconds in the training loop alone: the sum of the per-epoch times in the history (so records
    written before ``train_time_s`` excluded evaluation report the same quantity), else ``train_time_s``."""
    epochs = [float(h["epoch_time_s"]) for h in record.get("history", []) if "epoch_time_s" in h]
    return sum(epochs) if epochs else float(record.get("train_time_s", 0.0))


P1_P5 = ["P1", "P2", "P3", "P4", "P5"]


def mean_header(poisoned: list[str]) -> str:
    """The mean column's name, exact about what it averages: ``mean P1–P5`` only when all five ran."""
    if all(p in poisoned for p in P1_P5):
        others = [p for p in poisoned if p not in P1_P5]
        return "mean " + ", ".join([*others, "P1–P5"])
    return "mean of " + ", ".join(poisoned)


def _mean_of_means(stats: list[dict[str, Any] | None]) -> str:
    """Mean of a row's cell means (each over the seeds that trained); "—" when a cell is missing (a partial
    sweep) or every seed of a cell collapsed; † when a cell lost some seeds to a collapse."""
    if any(st is None or st["n"] == 0 for st in stats):
        return "—"
    means = [st["mean"] for st in stats if st is not None]
    partial = any(st is not None and st["n"] < st.get("total", st["n"]) for st in stats)
    return f"{sum(means) / len(means):.2f}" + ("†" if partial else "")


def table_markdown(records: list[dict[str, Any]], metric: str = "natural_accuracy", title: str = "") -> str:
    """A Markdown table of ``metric`` (rows training method with the study-axis values, columns attacks), its
    caption (seeds, epoch, the evaluation spec verbatim, the 95% Wilson half-width of one cell) and a footnote
    listing every collapsed cell left out of the means."""
    rows, cols = _rows(records), _cols(records)
    stats = aggregate(records, metric)
    axes = axes_present(records)
    times: dict[str, list[float]] = defaultdict(list)
    for r in records:
        times[row_label(r, axes)].append(train_time(r))
    lines = []
    if title:
        lines += [f"**{title}**", ""]
    poisoned = [c for c in cols if c != "clean"]
    with_mean = len(poisoned) >= 2
    head = cols + ([mean_header(poisoned)] if with_mean else [])
    lines.append("| training | " + " | ".join(head) + " | train time / run (s) |")
    lines.append("|---|" + "---|" * len(head) + "---|")
    one_seed = len({r["seed"] for r in records}) == 1
    ci_n = _single_n(records, metric) if one_seed and "robust" in metric else None
    for row in rows:
        t = times[row]
        cells = [format_cell(stats.get((row, c)), ci_n) for c in cols]
        if with_mean:
            cells.append(_mean_of_means([stats.get((row, c)) for c in poisoned]))
        lines.append(f"| {row} | " + " | ".join(cells) + f" | {sum(t) / len(t):.0f} |")
    what = "Robust accuracy (under the attack named above)" if "robust" in metric else "Accuracy"
    means = [st["mean"] for st in stats.values() if st["n"] > 0]
    caption = (f"{what} in % on the clean test set, {seeds_text(records)}."
               + (f" The mean column averages the row's poisoned-data cells ({', '.join(poisoned)}; Table 2's "
                  "summary of a defense)." if with_mean else "")
               + " Train time is the training loop alone, without the per-epoch test evaluation. "
               + eval_note(records))
    ci = ci_note(records, metric, means)
    if ci_n:
        ci += " One seed: each cell shows its 95% Wilson interval in brackets."
    foot = collapse_footnote(stats, lambda k: f"{k[0]} on {k[1]}", order=[(r, c) for r in rows for c in cols])
    lines += ["", caption + (f" {ci}" if ci else "")] + (["", foot] if foot else [])
    return "\n".join(lines) + "\n"


def _single_n(records: list[dict[str, Any]], metric: str) -> int | None:
    """The one sample size of ``metric`` over the records (None when unknown or mixed)."""
    ns = {sample_size(r, metric) for r in records}
    return ns.pop() if len(ns) == 1 else None


def table_csv(records: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["training", "attack", "metric", "mean_percent", "std_percent", "n_seeds", "n_collapsed"])
    for metric in ("natural_accuracy", "robust_accuracy", "last_natural_accuracy", "best_natural_accuracy"):
        stats = aggregate(records, metric)
        for row in _rows(records):
            for col in _cols(records):
                s = stats.get((row, col))
                if s:
                    w.writerow([row, col, metric, "" if s["n"] == 0 else f"{s['mean']:.4f}", f"{s['std']:.4f}",
                                s["n"], s["total"] - s["n"]])
    return buf.getvalue()


def plot_bars(records: list[dict[str, Any]], title: str = "", ax: Any = None, metric: str = "natural_accuracy",
              baseline: bool = True) -> Any:
    """Grouped bars of ``metric`` per attack (x) and training method (colour); the dashed line is clean
    standard training (the paper's Figure 4). Bars are means over the seeds that trained, with sample-std
    error bars only when two or more did; collapsed seeds are marked (†, hatched where all collapsed). Draws
    into ``ax`` when given, else into a new figure (returned). ``title``: a short title (the caption goes
    in the Markdown)."""
    plt = pyplot()
    axes = axes_present(records)
    rows, cols = _rows(records), _cols(records)
    stats = aggregate(records, metric)
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(1.4 + 1.1 * len(cols), 3.6))
    label_of = {row_label(r, axes): r for r in records}
    shade = _shades(rows, label_of)
    width = 0.8 / max(len(rows), 1)
    marked = False
    for i, row in enumerate(rows):
        xs = [j + (i - (len(rows) - 1) / 2) * width for j in range(len(cols))]
        cells = [stats.get((row, c)) for c in cols]
        means = [st["mean"] if st and st["n"] > 0 else float("nan") for st in cells]
        errs = [st["std"] if st and st["n"] > 1 else 0.0 for st in cells]
        r0 = label_of[row]
        colour = defense_colour(r0["defense"], r0.get("defense_name"))
        ax.bar(xs, means, width, yerr=errs if any(st and st["n"] > 1 for st in cells) else None, capsize=2,
               label=row, alpha=shade[row], color=colour)
        marked |= mark_collapsed_bars(ax, xs, cells, width, colour)
    if marked:
        collapsed_legend_entry(ax)
    standard = [r for r in records if is_standard(r)]
    base = stats.get((row_label(standard[0], axes), "clean")) if standard and baseline else None
    if base and base["n"] > 0:
        ax.axhline(base["mean"], color="black", ls="--", lw=1, label=f"{row_label(standard[0], axes)} on clean data")
    ax.set_xticks(range(len(cols)), cols)
    ax.set_ylabel("natural test accuracy (%)" if metric == "natural_accuracy" else f"{metric} (%)")
    ax.set_ylim(0, 100)
    if title:
        ax.set_title("\n".join(textwrap.wrap(title, 60)), fontsize=9)
    if fig is not None:
        legend_outside(fig, [ax])
    return fig


def _shades(rows: list[str], label_of: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Opacity per row: rows of one defense that differ on a study axis share its colour, more opaque as the
    axis value grows; a defense with one row is fully opaque."""
    out = {}
    for row in rows:
        same = [x for x in rows if label_of[x]["defense"] == label_of[row]["defense"]]
        out[row] = 0.35 + 0.65 * (same.index(row) + 1) / len(same) if len(same) > 1 else 1.0
    return out


def figure_bars(records: list[dict[str, Any]], out: Path, title: str = "") -> Path:
    """:func:`plot_bars` written to ``out`` (PNG)."""
    return save(plot_bars(records, title), out)


def plot_curves(records: list[dict[str, Any]]) -> Any:
    """Clean-test natural accuracy per epoch, one panel per training method (row of the table) in a grid of
    at most three panels a row with a shared y axis, one line per attack and seed, coloured by attack; a
    collapsed run is dotted; one legend (attacks) outside the panels."""
    from matplotlib.ticker import MaxNLocator

    axes_ = axes_present(records)
    rows = _rows(records)
    fig, panels = grid(len(rows), panel=(3.2, 2.8))
    any_collapsed = False
    for ax, row in zip(panels, rows, strict=True):
        for attack in _cols(records):
            first = True
            for r in sorted(records, key=lambda r: r["seed"]):
                if row_label(r, axes_) != row or r["attack"] != attack:
                    continue
                h = [e for e in r.get("history", []) if "test_natural_accuracy" in e]
                bad = collapse(r) is not None
                any_collapsed |= bad
                ax.plot([e["epoch"] for e in h], [100 * e["test_natural_accuracy"] for e in h], marker=".",
                        color=attack_colour(attack), lw=1, ls=":" if bad else "-", alpha=0.6 if bad else 1.0,
                        label=attack if first else "_" + attack)
                first = False
        ax.set_title(row, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylim(0, 100)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ylabel_first_column(panels, "natural test accuracy (%)", min(3, len(panels)))
    if any_collapsed:
        panels[0].plot([], [], color="grey", ls=":", label="† collapsed run (dotted)")
    legend_outside(fig, panels)
    return fig


def figure_curves(records: list[dict[str, Any]], out: Path) -> Path:
    """:func:`plot_curves` written to ``out`` (PNG)."""
    return save(plot_curves(records), out, dpi=110)


def spec_position(record: dict[str, Any]) -> tuple[int, ...]:
    """Where a record's cell sits in its spec (dataset, model, defense, attack, then seed); records without
    the runner's ``order`` keep their place under a stable sort."""
    order = record.get("order") or {}
    return (*(int(order.get(k, 0)) for k in ("dataset", "model", "defense", "attack")), int(record.get("seed") or 0))


def with_attack_label(record: dict[str, Any]) -> dict[str, Any]:
    """The record with ``attack`` as tables show it (:func:`delusive.attacks.defaults.attack_label`)."""
    from delusive.attacks.defaults import attack_label

    params = ((record.get("config") or {}).get("poison") or {}).get("params")
    label = attack_label(str(record.get("attack")), params)
    return record if label == record.get("attack") else {**record, "attack": label}


def write_report(records: list[dict[str, Any]], out_dir: str | Path, title: str = "") -> dict[str, Path]:
    """table.md / table.csv / figure.png (Figure 4) / curves.png for every sweep, and the files of each study
    layout whose axis the records carry (see :func:`report_studies.write_studies`); returns every path.

    ``title`` heads table.md (a spec's name); the configuration line under it and every caption are
    resolved from the records, so a run with ``--set`` overrides is described as it ran. Figures carry short
    titles; their captions are in the Markdown (section "Figures")."""
    if not records:
        raise ValueError(f"{out_dir}: no finished cells to report")
    records = sorted(records, key=spec_position)   # tables and panels in the spec's order, not finish order
    records = [with_attack_label(r) for r in records]  # "L2C (CPU schedule)" is not the authors' L2C
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parts = [f"# {title or 'Sweep report'}\n", f"Configuration (from the records): {run_config(records)}.\n"]
    multi = len(groups(records)) > 1
    for name, rs in groups(records):
        suffix = f" — {name}" if multi else ""
        parts.append(table_markdown(rs, "natural_accuracy", f"Natural accuracy, {epoch_note(rs)}{suffix}"))
        if any(r.get("robust_accuracy") is not None for r in rs):
            parts.append(table_markdown(rs, "robust_accuracy", f"Robust accuracy ({robust_note(rs)}), "
                                        f"{epoch_note(rs)}{suffix}"))
        if any(r.get("selection", "last") != "last" for r in rs) and any(
                r.get("last_natural_accuracy") is not None for r in rs):
            parts.append(table_markdown(rs, "last_natural_accuracy", f"Natural accuracy at the final epoch{suffix}"))
    paths = {"table_md": out / "table.md", "table_csv": out / "table.csv", "figure": out / "figure.png",
             "curves": out / "curves.png"}
    studies, sections, captions = write_studies(records, out)
    first_name, first = groups(records)[0]
    figure_bars(first, paths["figure"], first_name)
    figure_curves(first, paths["curves"])
    studies.update(write_defense_report(records, out, title))  # the defense comparison, if any
    shown = f" ({first_name}; the other groups are in the tables)" if multi else ""
    figs = ["## Figures", "", "![Figure 4 layout](figure.png)", "",
            "*figure.png* — " + figure_caption(first, "Natural test accuracy per attack (x) and training method "
                                               f"(colour){shown}; dashed: standard training on clean data"), "",
            "![training curves](curves.png)", "",
            "*curves.png* — " + figure_caption(first, "Clean-test natural accuracy per epoch, one panel per table "
                                               f"row, one line per attack and seed{shown}", kind="spread"), ""]
    atomic_write_text(paths["table_md"], "\n".join(parts + sections + figs + captions))
    atomic_write_text(paths["table_csv"], table_csv(records) if not multi else _csv_groups(records))
    return {**paths, **studies}


def _csv_groups(records: list[dict[str, Any]]) -> str:
    """table.csv of a sweep over several datasets or models: one block per group, a group column first."""
    lines = ["dataset_model,training,attack,metric,mean_percent,std_percent,n_seeds,n_collapsed"]
    for name, rs in groups(records):
        lines += [f'"{name}",{line}' for line in table_csv(rs).splitlines()[1:]]
    return "\n".join(lines) + "\n"
