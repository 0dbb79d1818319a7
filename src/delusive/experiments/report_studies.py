"""The layouts of the paper's other studies, each chosen only when the result records carry its axis:

- ``figure5``: natural accuracy against the defender's budget ε (``defender_eps``; ε = 0 is standard training),
  one line per attack with a ± std band over seeds (Section 5.1, "What if the threat model is not specified?");
- ``figure6``: natural and adversarial accuracy against the number of extra clean examples (``extra_clean``),
  standard and adversarial training ("A simple countermeasure");
- ``partial``: natural accuracy against the poisoned fraction of the training set (``poison_fraction``);
- ``figure8``: grouped bars per victim model, training method against attack (transferability; several models);
- ``table3``: accuracy on the test split and on the other test splits of ``split_accuracy`` (Section 5.3,
  MNIST-CIFAR and MNIST-randomized), rows training method × model;
- ``figure9``: rotation self-supervised learning, pretext accuracy and downstream linear-probe accuracy
  (``probe_accuracy``; Section 5.2);
- ``table1``: the attacks' cost, training what an attack needs and generating the poison, with standard
  training's natural accuracy (``poison.crafting_train_time_s`` / ``poison.generate_time_s``).

Each writes a Markdown and a CSV table (mean ± sample std over the seeds that trained, collapsed cells
marked and listed) and, except the tables, a PNG whose caption is in the Markdown. A sweep may combine study
axes (a defender-ε list with ``extra_clean`` and ``poison_fraction``): each layout then gets one table per value
of the other axes, and its figure one row of panels per value (at most three panels a row)."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from delusive.experiments.report_quality import (
    ci_note,
    eval_note,
    figure_caption,
    sample_size,
    seeds_text,
)
from delusive.experiments.report_stats import (
    AXIS_TEXT,
    axes_present,
    collapse_footnote,
    epoch_note,
    field,
    format_cell,
    is_standard,
    robust_note,
    stats_by,
)
from delusive.experiments.report_style import (
    attack_colour,
    attack_order,
    collapsed_legend_entry,
    defense_colour,
    defense_order,
    defense_style,
    grid,
    legend_outside,
    mark_collapsed_bars,
    save,
    suptitle,
    ylabel_first_column,
)

STUDIES = ("figure5", "figure6", "partial", "figure8", "table3", "figure9", "table1")
TIME_FIELDS = ("poison.crafting_train_time_s", "poison.generate_time_s")
CSV_HEAD = ["group", "row", "column", "metric", "mean", "std", "n_seeds", "n_collapsed"]
# the axis each line study plots on x; the other study axes split its tables and panels
STUDY_AXIS = {"figure5": "defender_eps", "figure6": "extra_clean", "partial": "poison_fraction"}

Record = dict[str, Any]
Stats = dict[Any, dict[str, float]]


def layouts(records: list[Record]) -> list[str]:
    """The study layouts whose axis the records carry, in :data:`STUDIES` order."""
    def has(key: str) -> bool:
        return any(field(key)(r) is not None if "." in key else key in r for r in records)

    def varies(key: str) -> bool:  # a budget axis is a study only when the sweep varies it
        return len({r[key] for r in records if key in r}) > 1

    present = {
        "figure5": varies("defender_eps"),
        "figure6": has("extra_clean"),
        "partial": has("poison_fraction"),
        "figure8": len({r.get("model") for r in records}) > 1,
        "table3": has("split_accuracy"),
        "figure9": has("probe_accuracy"),
        "table1": any(has(k) for k in TIME_FIELDS) and any(r.get("attack") != "clean" for r in records),
    }
    return [s for s in STUDIES if present[s]]


def _by(records: list[Record], key: Callable[[Record], Any]) -> list[tuple[Any, list[Record]]]:
    out: dict[Any, list[Record]] = defaultdict(list)
    for r in records:
        out[key(r)].append(r)
    return list(out.items())


def _groups(records: list[Record], with_model: bool) -> list[tuple[str, list[Record]]]:
    """Records split by dataset (and model unless the model is the study's axis)."""
    key = (lambda r: (r.get("dataset", "?"), r.get("model", "?"))) if with_model else (
        lambda r: (r.get("dataset", "?"),))
    return [(", ".join(map(str, k)), rs) for k, rs in _by(records, key)]


def combos(records: list[Record], axis: str | None = None) -> list[tuple[str, list[Record]]]:
    """Records split by every study axis they vary (:data:`report_stats.AXES`) except ``axis`` (the one the
    layout plots), in ascending order of the values; one unnamed group when no other axis varies. A record
    without a value on an axis (standard training has no defender ε) joins every group of that axis: it is
    the baseline each of them is compared with. A cell's identity in a layout is thus (group, combo, row,
    column, seed): no two cells of a sweep fall together."""
    others = [a for a in axes_present(records) if a != axis]
    if not others:
        return [("", records)]

    def key(r: Record) -> tuple[Any, ...]:
        return tuple(r.get(a) for a in others)

    full = [k for k in dict.fromkeys(key(r) for r in records) if None not in k]
    targets = full or list(dict.fromkeys(key(r) for r in records))
    targets.sort(key=lambda k: tuple((v is None, v if v is not None else 0) for v in k))

    def matches(r: Record, target: tuple[Any, ...]) -> bool:
        return all(v is None or v == t for v, t in zip(key(r), target, strict=True))

    def label(k: tuple[Any, ...]) -> str:
        return " ".join(AXIS_TEXT[a].format(_num(v)) for a, v in zip(others, k, strict=True) if v is not None)

    return [(label(t), [r for r in records if matches(r, t)]) for t in targets]


def _shared_axes_label(rs: list[Record], axis: str, among: list[Record]) -> str:
    """The values of the other varying study axes that every record of ``rs`` has (``+100 clean``); an axis
    the records lack (standard training's defender ε) is left out."""
    parts = []
    for a in axes_present(among):
        values = {r.get(a) for r in rs}
        if a != axis and len(values) == 1 and None not in values:
            parts.append(AXIS_TEXT[a].format(_num(values.pop())))
    return " ".join(parts)


def _with(group: str, combo: str) -> str:
    return f"{group}, {combo}" if combo else group


def _acc(metric: str) -> Callable[[Record], float | None]:
    return lambda r: None if r.get(metric) is None else float(r[metric])


def _num(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


class _Table:
    """A Markdown pivot table (rows × columns of mean ± std over the seeds that trained), its caption and
    collapse footnote, and its CSV rows."""

    def __init__(self, title: str, head: str, rows: list[Any], cols: list[Any], stats: Stats, note: str,
                 group: str, metric: str, row_text: Callable[[Any], str] = str,
                 col_text: Callable[[Any], str] = str, records: list[Record] | None = None) -> None:
        self.title, self.head, self.rows, self.cols, self.stats, self.note = title, head, rows, cols, stats, note
        self.group, self.metric, self.row_text, self.col_text = group, metric, row_text, col_text
        self.records = records or []

    def markdown(self) -> str:
        head_cols = self.head.count("|") + 1  # a row label may span several columns ("training | model")
        lines = [f"**{self.title}**", "", f"| {self.head} | " + " | ".join(self.col_text(c) for c in self.cols) + " |",
                 "|" + "---|" * (head_cols + len(self.cols))]
        one_seed = len({r["seed"] for r in self.records}) == 1
        ns = {sample_size(r, self.metric) for r in self.records}
        ci_n = ns.pop() if one_seed and "robust" in self.metric and len(ns) == 1 else None
        for row in self.rows:
            if any((row, c) in self.stats for c in self.cols):
                cells = [format_cell(self.stats.get((row, c)), ci_n) for c in self.cols]
                lines.append(f"| {self.row_text(row)} | " + " | ".join(cells) + " |")
        note = self.note
        if self.records:
            ci = ci_note(self.records, self.metric, [st["mean"] for st in self.stats.values() if st["n"] > 0])
            note += f" {ci}" if ci else ""
            note += " One seed: each cell shows its 95% Wilson interval in brackets." if ci_n else ""
        foot = collapse_footnote(self.stats, lambda k: f"{self.row_text(k[0])}, {self.col_text(k[1])}",
                                 order=[(r, c) for r in self.rows for c in self.cols])
        return "\n".join(lines + ["", note] + (["", foot] if foot else [])) + "\n"

    def csv_rows(self) -> list[list[Any]]:
        out = []
        for row in self.rows:
            for c in self.cols:
                s = self.stats.get((row, c))
                if s:
                    out.append([self.group, self.row_text(row), self.col_text(c), self.metric,
                                "" if s["n"] == 0 else f"{s['mean']:.4f}", f"{s['std']:.4f}", s["n"],
                                s.get("total", s["n"]) - s["n"]])
        return out


def _seeds(records: list[Record]) -> str:
    return seeds_text(records)


def _note(records: list[Record], what: str, robust: bool = False) -> str:
    text = f"{what} in % on the clean test set, {_seeds(records)}; numbers {epoch_note(records)}."
    text += f" Robust accuracy under {robust_note(records)}." if robust else ""
    return f"{text} {eval_note(records)}"


def _pairs(records: list[Record]) -> list[tuple[str, str]]:
    """(defense label, attack) in the fixed orders."""
    present = {(r["defense"], r["attack"]) for r in records}
    return [(d, a) for d in defense_order(records) for a in attack_order(records) if (d, a) in present]


# --- line studies: Figure 5, Figure 6, partial poisoning ----------------------------------------------------

def _plot_lines(ax: Any, records: list[Record], axis: str, metric: str, label_defense: bool) -> bool:
    """One line per (defense, attack): colour of the attack, style of the defense, through the means over the
    seeds that trained; a ± std band only where two or more seeds trained; × where every seed of a point
    collapsed (at the collapsed seeds' mean), † above a point that lost some seeds. True when it marked one."""
    names = {r["defense"]: r.get("defense_name") for r in records}
    marked = False
    for d, a in _pairs(records):
        rs = [r for r in records if r["defense"] == d and r["attack"] == a and axis in r]
        st = stats_by(rs, lambda r: r[axis], _acc(metric))
        xs = sorted(x for x in st if st[x]["n"] > 0)
        colour = attack_colour(a)
        label = f"{a}, {d}" if label_defense else a
        if xs:
            m = [st[x]["mean"] for x in xs]
            ax.plot(xs, m, marker="o", ms=3, lw=1.3, color=colour, ls=defense_style(names[d]), label=label)
            band = [x for x in xs if st[x]["n"] > 1]
            if band:
                lo = [st[x]["mean"] - st[x]["std"] for x in band]
                hi = [st[x]["mean"] + st[x]["std"] for x in band]
                ax.fill_between(band, lo, hi, color=colour, alpha=0.15, lw=0)
        for x, cell in st.items():
            if not cell["collapsed"]:
                continue
            marked = True
            if cell["n"] == 0:
                ax.plot([x], [cell["collapsed_mean"]], ls="none", marker="x", ms=6, mew=1.5, color=colour,
                        label="_collapsed")
            else:
                ax.annotate("†", (x, cell["mean"]), textcoords="offset points", xytext=(3, 3), fontsize=8,
                            color=colour)
    return marked


AXIS_LABEL = {"defender_eps": "defender's budget ε", "extra_clean": "number of extra clean examples",
              "poison_fraction": "fraction of the training set poisoned"}
METRIC_LABEL = {"natural_accuracy": "natural test accuracy (%)", "robust_accuracy": "adversarial test accuracy (%)",
                "probe_accuracy": "downstream (linear probe) accuracy (%)",
                }


def _common_ylabel(metrics: tuple[str, ...]) -> str:
    labels = {METRIC_LABEL.get(m, m) for m in metrics}
    return labels.pop() if len(labels) == 1 else "test accuracy (%)"


def plot_lines(records: list[Record], axis: str, metrics: tuple[str, ...], per_defense: bool,
               title: str = "") -> Any:
    """Panels of accuracy against ``axis`` in a grid of at most three a row with shared axes: one per defense
    (``per_defense``) or one per metric (the defenses told apart by line style), repeated for each value of
    the other study axes the records vary. ``title``: a short title; the caption goes in the Markdown."""
    recs = [r for r in records if axis in r]
    panels: list[tuple[str, list[Record], str]] = []
    groups = combos(recs, axis)
    seen: dict[tuple[Any, ...], int] = {}
    for combo, crs in groups:
        where = f" — {combo}" if combo else ""
        if per_defense:
            for d in defense_order(crs):
                rs = [r for r in crs if r["defense"] == d]
                for m in metrics:
                    key = (d, m, tuple(id(r) for r in rs))
                    if key in seen:  # a baseline without a value on some axis (ST): one panel, not one per value
                        continue
                    seen[key] = len(panels)
                    own = _shared_axes_label(rs, axis, recs)
                    panels.append((d + (f" — {own}" if own else "") + (f" ({_metric_name(m)})" if len(metrics) > 1
                                                                         else ""), rs, m))
        else:
            panels += [(f"{_metric_name(m)}{where}", crs, m) for m in metrics]
    per_combo = len(panels) // max(len(groups), 1)
    regular = per_combo * len(groups) == len(panels)
    ncol = per_combo if regular and 1 < per_combo <= 3 else min(3, len(panels))  # a row per value of the other axes
    fig, axes = grid(len(panels), panel=(3.4, 2.9), max_cols=ncol)
    several = len({r["defense"] for r in recs}) > 1 and not per_defense
    ticks = sorted({r[axis] for r in recs})
    marked = False
    for ax, (name, rs, m) in zip(axes, panels, strict=True):
        marked |= _plot_lines(ax, rs, axis, m, several)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(AXIS_LABEL.get(axis, axis))
        ax.set_ylim(0, 100)
        ax.set_xticks(ticks)
        ax.tick_params(axis="x", labelsize=7)
    ylabel_first_column(axes, _common_ylabel(metrics), ncol)
    if marked:
        axes[0].plot([], [], ls="none", marker="x", color="black", label="all seeds collapsed († some)")
    suptitle(fig, title, fontsize=9)
    legend_outside(fig, axes)
    return fig


def _metric_name(metric: str) -> str:
    return METRIC_LABEL.get(metric, metric).split(" (")[0]


def _line_tables(records: list[Record], axis: str, metrics: tuple[str, ...], group: str, name: str) -> list[_Table]:
    recs = [r for r in records if axis in r]
    xs = sorted({r[axis] for r in recs})
    one = len({r["defense"] for r in recs}) == 1
    out = []
    for m in metrics:
        st = stats_by(recs, lambda r: ((r["defense"], r["attack"]), r[axis]), _acc(m))
        what = METRIC_LABEL.get(m, m).split(" (")[0].capitalize()
        out.append(_Table(f"{name}: {what} against the {AXIS_LABEL[axis]} — {group}",
                          "attack" if one else "training, attack", _pairs(recs), xs, st,
                          _note(recs, what, robust=m == "robust_accuracy"), group, m,
                          row_text=(lambda p: p[1]) if one else (lambda p: f"{p[0]}, {p[1]}"),
                          col_text=lambda x: f"{AXIS_LABEL[axis].split(' ')[-1]}={_num(x)}" if axis ==
                          "defender_eps" else _num(x), records=recs))
    return out


# --- bar studies: Figure 8, Figure 9 ------------------------------------------------------------------------

def _bars(ax: Any, records: list[Record], metric: str, baseline: bool = True) -> bool:
    """Grouped bars: attacks on x, one bar per defense in its colour, the mean over the seeds that trained
    (error bars only where two or more did; collapsed seeds marked); dashed line = ST on clean data. True when
    a collapse mark was drawn."""
    ds, atts = defense_order(records), attack_order(records)
    names = {r["defense"]: r.get("defense_name") for r in records}
    st = stats_by(records, lambda r: (r["defense"], r["attack"]), _acc(metric))
    width = 0.8 / max(len(ds), 1)
    marked = False
    for i, d in enumerate(ds):
        xs = [j + (i - (len(ds) - 1) / 2) * width for j in range(len(atts))]
        cells = [st.get((d, a)) for a in atts]
        colour = defense_colour(d, names[d])
        ax.bar(xs, [c["mean"] if c and c["n"] > 0 else float("nan") for c in cells], width,
               yerr=[c["std"] if c and c["n"] > 1 else 0.0 for c in cells] if any(c and c["n"] > 1 for c in cells)
               else None, capsize=2, label=d, color=colour)
        marked |= mark_collapsed_bars(ax, xs, cells, width, colour)
    std_labels = [d for d in ds if names[d] == "standard"]
    base = st.get((std_labels[0], "clean")) if baseline and std_labels else None
    if base and base["n"] > 0:
        ax.axhline(base["mean"], color="black", ls="--", lw=1, label=f"{std_labels[0]} on clean data")
    ax.set_xticks(range(len(atts)), atts)
    ax.set_ylim(0, 100)
    return marked


def model_order(records: list[Record]) -> list[str]:
    """Victim models in the spec's order (the figure's panels and the table's rows agree)."""
    return sorted({r["model"] for r in records}, key=lambda m: next(
        (r["order"]["model"] for r in records if r["model"] == m and "order" in r), 0))


def plot_victims(records: list[Record], title: str = "") -> Any:
    """Figure 8: one panel per victim model (spec order; repeated per value of any other study axis), in a
    grid of at most three a row with a shared y axis: natural accuracy per attack and defense."""
    panels = [(f"victim {m}" + (f" — {combo}" if combo else ""), [r for r in crs if r["model"] == m])
              for combo, crs in combos(records) for m in model_order(crs)]
    fig, axes = grid(len(panels), panel=(1.0 + 0.55 * len(attack_order(records)), 2.9))
    marked = False
    for ax, (name, rs) in zip(axes, panels, strict=True):
        marked |= _bars(ax, rs, "natural_accuracy")
        ax.set_title(name, fontsize=9)
    ylabel_first_column(axes, METRIC_LABEL["natural_accuracy"], min(3, len(axes)))
    if marked:
        collapsed_legend_entry(axes[0])
    suptitle(fig, title, fontsize=9)
    legend_outside(fig, axes)
    return fig


def _crafting_arch(r: Record) -> str | None:
    info = (r.get("poison") or {}).get("crafting_model")
    return str(info["arch"]) if isinstance(info, dict) and info.get("arch") else None


def plot_ssl(records: list[Record], title: str = "") -> Any:
    """Figure 9: (a) pretext (rotation) accuracy, (b) downstream linear-probe accuracy (a pair of panels per
    value of any other study axis), shared y axis."""
    panels = []
    for combo, crs in combos(records):
        where = f" — {combo}" if combo else ""
        panels += [(f"(a) pretext task{where}", crs, "natural_accuracy"),
                   (f"(b) downstream task{where}", crs, "probe_accuracy")]
    fig, axes = grid(len(panels), panel=(1.2 + 0.55 * len(attack_order(records)), 2.9), max_cols=2)
    marked = False
    for ax, (name, rs, metric) in zip(axes, panels, strict=True):
        marked |= _bars(ax, [r for r in rs if metric in r], metric)
        ax.set_title(name, fontsize=9)
    for i, ax in enumerate(axes):
        if i % 2 == 0:
            ax.set_ylabel("accuracy (%)")
    if marked:
        collapsed_legend_entry(axes[0])
    suptitle(fig, title, fontsize=9)
    legend_outside(fig, axes)
    return fig


def _bar_table(records: list[Record], metric: str, group: str, title: str, row: Callable[[Record], Any],
               rows: list[Any], head: str, row_text: Callable[[Any], str], what: str) -> _Table:
    st = stats_by(records, lambda r: (row(r), r["attack"]), _acc(metric))
    return _Table(title, head, rows, attack_order(records), st, _note(records, what), group, metric,
                  row_text=row_text, records=records)


# --- tables: Table 3, Table 1 -------------------------------------------------------------------------------

def _split_tables(records: list[Record], group: str) -> list[_Table]:
    recs = [r for r in records if "split_accuracy" in r]
    splits = ["test"] + sorted({s for r in recs for s in r["split_accuracy"]} - {"test"})
    several_attacks = len({r["attack"] for r in recs}) > 1
    models = list(dict.fromkeys(r["model"] for r in recs))
    rows = [(d, m, a) for d in defense_order(recs) for m in models for a in attack_order(recs)]
    vals: dict[Any, dict[str, float]] = {}
    for s in splits:
        get = _acc("natural_accuracy") if s == "test" else (lambda r, s=s: r["split_accuracy"].get(s))
        for k, v in stats_by(recs, lambda r: (r["defense"], r["model"], r["attack"]), get).items():
            vals[(k, s)] = v
    text = (lambda k: f"{k[0]} | {k[1]} | {k[2]}") if several_attacks else (lambda k: f"{k[0]} | {k[1]}")
    head = "training | model" + (" | attack" if several_attacks else "")
    return [_Table(f"Table 3 layout: accuracy per test split — {group}", head, rows, splits, vals,
                   _note(recs, "Accuracy") + " `test` is the dataset's test split; the other columns are the "
                   "named test splits (e.g. test-randomized: the simple features randomised).", group,
                   "split_accuracy", row_text=text, records=recs)]


def _time_table(records: list[Record], group: str) -> list[_Table]:
    """Per attack: training what it needs (crafting model / L2C generator; 0 for P5), generating the poison,
    their sum (seconds; one sample per artifact), and standard training's natural accuracy on it."""
    per_artifact: dict[Any, Record] = {}
    for r in records:
        p = r.get("poison") or {}
        if any(field(k)(r) is not None for k in TIME_FIELDS):
            per_artifact.setdefault((p.get("payload_sha256") or (r["attack"], r["seed"]), r["seed"]), r)
    arts = list(per_artifact.values())
    if any(r["attack"] != "clean" for r in arts):  # Table 1 lists the attacks; the clean set costs nothing
        arts = [r for r in arts if r["attack"] != "clean"]
    cols = ["train (s)", "generate (s)", "total (s)", "ST natural accuracy (%)"]
    vals: dict[Any, dict[str, float]] = {}
    getters: dict[str, Callable[[Record], float | None]] = {
        "train (s)": field(TIME_FIELDS[0]), "generate (s)": field(TIME_FIELDS[1]),
        "total (s)": lambda r: (field(TIME_FIELDS[0])(r) or 0.0) + (field(TIME_FIELDS[1])(r) or 0.0)}
    for c, get in getters.items():
        for k, v in stats_by(arts, lambda r: r["attack"], get, scale=1.0, exclude_collapsed=False).items():
            vals[(k, c)] = v
    # standard training on the full poison as crafted: no extra clean data, every example poisoned, first model
    first_model = next((r.get("model") for r in records), None)
    st_recs = [r for r in records if is_standard(r)
               and not r.get("extra_clean") and r.get("poison_fraction", 1.0) == 1.0 and r.get("model") == first_model]
    labels = defense_order(st_recs)  # one standard row: the first (ST, or AT at defender ε 0), never two
    st_recs = [r for r in st_recs if labels and r["defense"] == labels[0]]
    for k, v in stats_by(st_recs, lambda r: r["attack"], _acc("natural_accuracy")).items():
        vals[(k, cols[3])] = v
    rows = attack_order(arts or records)
    return [_Table(f"Table 1 layout: cost of the attacks — {group}", "attack", rows, cols, vals,
                   f"Seconds, {_seeds(arts)}, one sample per poison artifact: `train` is training what the attack "
                   "needs (the crafting model for P1–P4, the generator for L2C, nothing for P5), `generate` is "
                   "crafting the poisoned set. ST natural accuracy: standard training on that poison, "
                   f"{epoch_note(st_recs or records)}.", group, "time_s")]


# --- writing ------------------------------------------------------------------------------------------------

def _csv(tables: list[_Table]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_HEAD)
    for t in tables:
        w.writerows(t.csv_rows())
    return buf.getvalue()


def study_tables(records: list[Record], study: str) -> list[_Table]:
    """The tables of one study layout: one per dataset / model group and per value of the other study axes
    the records vary (Table 1 summarises the attacks over all of them)."""
    out: list[_Table] = []
    for group0, grs in _groups(records, with_model=study not in ("figure8", "table3")):
        if study == "table1":
            out += _time_table(grs, group0)
            continue
        for combo, rs in combos(grs, STUDY_AXIS.get(study)):
            group = _with(group0, combo)
            if study == "figure5":
                out += _line_tables(rs, "defender_eps", ("natural_accuracy",), group, "Figure 5")
            elif study == "figure6":
                out += _line_tables(rs, "extra_clean", ("natural_accuracy", "robust_accuracy"), group, "Figure 6")
            elif study == "partial":
                out += _line_tables(rs, "poison_fraction", ("natural_accuracy",), group, "Partial poisoning")
            elif study == "figure8":
                rows = [(m, d) for m in model_order(rs) for d in defense_order(rs)]
                out.append(_bar_table(rs, "natural_accuracy", group, "Figure 8: natural accuracy per victim model "
                                      f"— {group}", lambda r: (r["model"], r["defense"]), rows, "victim | training",
                                      lambda k: f"{k[0]} | {k[1]}", "Natural accuracy"))
            elif study == "figure9":
                for metric, what in (("natural_accuracy", "Pretext (rotation) accuracy"),
                                     ("probe_accuracy", "Downstream linear-probe accuracy")):
                    out.append(_bar_table([r for r in rs if metric in r], metric, group,
                                          f"Figure 9: {what} — {group}", lambda r: r["defense"], defense_order(rs),
                                          "training", str, what))
            elif study == "table3":
                out += _split_tables(rs, group)
    return out


FIGURE_TEXT = {
    "figure5": ("Figure 5", "Natural test accuracy against the defender's budget ε (ε = 0 is standard training), one "
                "panel per training method, one line per attack", ("natural_accuracy",), "bands"),
    "figure6": ("Figure 6", "Natural and adversarial test accuracy against the number of extra clean training "
                "examples, one line per attack and training method (line style)",
                ("natural_accuracy", "robust_accuracy"), "bands"),
    "partial": ("Partial poisoning", "Natural test accuracy against the fraction of the training set carrying the "
                "poison, one panel per training method, one line per attack", ("natural_accuracy",), "bands"),
    "figure8": ("Figure 8", "Natural test accuracy per victim model, bars per attack and training method; dashed: "
                "standard training on clean data", ("natural_accuracy",), "error bars"),
    "figure9": ("Figure 9", "Rotation self-supervised learning: (a) pretext (rotation) accuracy, (b) downstream "
                "linear-probe accuracy, per attack and training method", ("natural_accuracy", "probe_accuracy"),
                "error bars"),
}


def study_caption(records: list[Record], study: str) -> str:
    """The Markdown caption of a study's figure (the first dataset / model group, every axis value)."""
    group, rs = _groups(records, with_model=study != "figure8")[0]
    name, what, metrics, kind = FIGURE_TEXT[study]
    if study == "figure8":
        crafted = {_crafting_arch(r) for r in rs} - {None}
        what += f"; poisons crafted on {', '.join(sorted(map(str, crafted)))}" if crafted else ""
    several = len(_groups(records, with_model=study != "figure8")) > 1
    return f"*{study}.png* ({name}; {group}" + ("; the other groups are in the tables" if several else "") + \
        ") — " + figure_caption(rs, what, metrics, kind)


def study_figure(records: list[Record], study: str, title: str = "") -> Any:
    """The figure of one study layout (first dataset / model group; a row of panels per value of the other
    study axes), or None for the table-only layouts. The short title is the group unless ``title`` is given."""
    group, rs = _groups(records, with_model=study != "figure8")[0]
    head = title or group
    if study == "figure5":
        return plot_lines(rs, "defender_eps", ("natural_accuracy",), per_defense=True, title=head)
    if study == "figure6":
        return plot_lines(rs, "extra_clean", ("natural_accuracy", "robust_accuracy"), per_defense=False, title=head)
    if study == "partial":
        return plot_lines(rs, "poison_fraction", ("natural_accuracy",), per_defense=True, title=head)
    if study == "figure8":
        return plot_victims(rs, head)
    if study == "figure9":
        return plot_ssl([r for r in rs if "probe_accuracy" in r], head)
    return None


def write_studies(records: list[Record], out: Path, title: str = "") -> tuple[dict[str, Path], list[str], list[str]]:
    """Write ``<study>.md``, ``<study>.csv`` and ``<study>.png`` for every layout present; return the paths
    (keys ``<study>_md``, ``<study>_csv``, ``<study>``), the Markdown table sections for table.md and the
    figure captions (image link and caption, for table.md's "Figures" section)."""
    from delusive.utils import atomic_write_text

    paths: dict[str, Path] = {}
    sections: list[str] = []
    captions: list[str] = []
    for study in layouts(records):
        tables = study_tables(records, study)
        md = "\n".join(t.markdown() for t in tables)
        sections.append(md)
        paths[f"{study}_md"] = out / f"{study}.md"
        paths[f"{study}_csv"] = out / f"{study}.csv"
        fig = study_figure(records, study)
        figure_md = ""
        if fig is not None:
            paths[study] = save(fig, out / f"{study}.png")
            figure_md = f"![{FIGURE_TEXT[study][0]}]({study}.png)\n\n{study_caption(records, study)}\n"
            captions.append(figure_md)
        atomic_write_text(paths[f"{study}_md"], f"# {title or 'Sweep report'}: {study}\n\n{md}\n{figure_md}")
        atomic_write_text(paths[f"{study}_csv"], _csv(tables))
    return paths, sections, captions
