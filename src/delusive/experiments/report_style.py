"""One colour, one line style and one order per attack and per training method, shared by every figure and
table of every report, so that P3 is the same green in Figure 4's bars, in the training curves and in the
defender-budget lines of Figure 5; legends sit outside the axes so they never cover a line."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path
from typing import Any

from delusive.utils import atomic_write

# the paper's column order (Table 2): the clean baseline, L2C (Feng et al. 2019), then P1-P5 (Section 4)
ATTACK_ORDER = ("clean", "L2C", "P1", "P2", "P3", "P4", "P5")
ATTACK_COLOURS = {
    "clean": "#000000", "L2C": "#8c564b", "P1": "#1f77b4", "P2": "#ff7f0e", "P3": "#2ca02c", "P4": "#d62728",
    "P5": "#9467bd",
}
# training methods, in Table 2's row order; a spec's label is matched first, then the objective's name
DEFENSE_ORDER = ("standard", "random_noise", "pgd_at", "trades", "gairat", "fat", "fast_at")
DEFENSE_COLOURS = {
    "ST": "#7f7f7f", "RandNoise": "#bcbd22", "PGD-AT": "#17becf", "AT": "#17becf", "TRADES": "#e377c2",
    "GAIRAT": "#aec7e8", "FAT": "#98df8a", "fast AT": "#ffbb78",
}
DEFENSE_BY_NAME = {"standard": "ST", "random_noise": "RandNoise", "pgd_at": "PGD-AT", "trades": "TRADES",
                   "gairat": "GAIRAT", "fat": "FAT", "fast_at": "fast AT"}
DEFENSE_STYLES = {"standard": "-", "random_noise": ":", "pgd_at": "--", "trades": "-.", "gairat": (0, (5, 1, 1, 1)),
                  "fat": (0, (3, 1, 1, 1, 1, 1)), "fast_at": (0, (1, 2))}
# names outside the fixed tables draw from this set by a hash of the name: the same everywhere, every run
EXTRA_COLOURS = ("#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354",
                 "#756bb1", "#636363")


def _hashed(name: str) -> str:
    return EXTRA_COLOURS[int(hashlib.sha256(name.encode()).hexdigest(), 16) % len(EXTRA_COLOURS)]


def attack_colour(attack: str) -> str:
    """The colour of an attack in every figure."""
    return ATTACK_COLOURS.get(attack) or _hashed("attack:" + attack)


def defense_colour(label: str, name: str | None = None) -> str:
    """The colour of a training method (by its label; a label outside the table by a hash of the label, so
    two differently labelled methods of one objective stay apart)."""
    if label in DEFENSE_COLOURS:
        return DEFENSE_COLOURS[label]
    if name is not None and label == name and name in DEFENSE_BY_NAME:
        return DEFENSE_COLOURS[DEFENSE_BY_NAME[name]]
    return _hashed("defense:" + label)


def defense_style(name: str | None) -> Any:
    """The line style of a training method's objective (standard solid, PGD-AT dashed, ...)."""
    return DEFENSE_STYLES.get(name or "", (0, (4, 1, 1, 1, 1, 1, 1, 1)))


def _dedupe(values: list[str]) -> list[str]:
    seen: list[str] = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return seen


def attack_order(records: list[dict[str, Any]]) -> list[str]:
    """The attacks of ``records`` in the fixed order; others after them in the spec's order."""
    ranks = {r["attack"]: r["order"]["attack"] for r in records if "order" in r}
    seen = _dedupe([r["attack"] for r in records])
    fixed = {a: i for i, a in enumerate(ATTACK_ORDER)}
    return sorted(seen, key=lambda a: (fixed.get(a, len(fixed)), ranks.get(a, 10**6), seen.index(a)))


def defense_order(records: list[dict[str, Any]]) -> list[str]:
    """Defense labels in the fixed order of their objectives (ST, RandNoise, PGD-AT, TRADES, GAIRAT, FAT,
    fast AT), labels of one objective by the spec's order; unknown objectives after them."""
    ranks = {r["defense"]: r["order"]["defense"] for r in records if "order" in r}
    names = {r["defense"]: r.get("defense_name") for r in records}
    fixed = {n: i for i, n in enumerate(DEFENSE_ORDER)}
    by_label = {lab: DEFENSE_ORDER.index(n) for n, lab in DEFENSE_BY_NAME.items()}
    seen = _dedupe([r["defense"] for r in records])

    def rank(label: str) -> tuple[int, int, int]:
        known = fixed.get(names.get(label) or "", by_label.get(label, len(fixed)))
        return known, ranks.get(label, 10**6), seen.index(label)

    return sorted(seen, key=rank)


def defense_names(records: list[dict[str, Any]]) -> dict[str, str | None]:
    """Label → objective name of the records' defenses."""
    return {r["defense"]: r.get("defense_name") for r in records}


def legend_outside(fig: Any, axes: list[Any], handles: list[Any] | None = None,
                   labels: list[str] | None = None) -> Any:
    """One legend for the whole figure, never over a line or bar: in the empty last cell of a grid when there
    is one, else to the right of every axes."""
    if handles is None or labels is None:
        handles, labels = [], []
        for ax in axes:
            for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
                if lab not in labels and not lab.startswith("_"):
                    handles.append(h)
                    labels.append(lab)
    if not handles:
        return None
    spare = [ax for ax in fig.axes if not ax.get_visible()]
    if spare and len(handles) <= 14:  # a grid's empty last cell holds the legend: no wide margin on the right
        slot = spare[-1]
        slot.set_visible(True)
        slot.axis("off")
        return slot.legend(handles, labels, loc="center", fontsize=7, frameon=False)
    return fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, frameon=False)


def suptitle(fig: Any, title: str, fontsize: int = 8) -> None:
    """The figure's short title, wrapped to the figure's width and cut to two lines: a long text must not
    widen the saved image (``bbox_inches="tight"`` grows the canvas to fit one long line) nor push the panels
    down; what a figure shows in full belongs in its Markdown caption."""
    if not title:
        return
    width_chars = max(40, int(fig.get_figwidth() * 72 / (0.55 * fontsize)))
    fig.suptitle("\n".join(textwrap.wrap(title, width_chars, max_lines=2, placeholder=" …")), fontsize=fontsize)


MAX_COLS = 3  # panels per row of a figure grid: a paper's column, not a strip
COLLAPSED_MARK = "†"


def grid(n: int, panel: tuple[float, float] = (3.4, 3.0), sharey: bool = True, max_cols: int = MAX_COLS) -> tuple[
        Any, list[Any]]:
    """A figure of ``n`` panels in rows of at most ``max_cols`` (shared y axis where panels are compared),
    the unused cells of the last row hidden; returns the figure and the ``n`` axes in reading order. Only the
    first column keeps its y label and tick labels (the axis is shared)."""
    plt = pyplot()
    ncol = max(1, min(n, max_cols))
    nrow = -(-max(n, 1) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(panel[0] * ncol, panel[1] * nrow), squeeze=False, sharey=sharey)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def first_column(axes: list[Any], ncol: int | None = None) -> list[Any]:
    """The axes of a :func:`grid` that sit in its first column."""
    ncol = ncol or max(1, min(len(axes), MAX_COLS))
    return [ax for i, ax in enumerate(axes) if i % ncol == 0]


def ylabel_first_column(axes: list[Any], label: str, ncol: int | None = None) -> None:
    """The y label on the first column only (the axis is shared across a row)."""
    for ax in first_column(axes, ncol):
        ax.set_ylabel(label)


def mark_collapsed_bars(ax: Any, xs: list[float], stats: list[dict[str, Any] | None], width: float,
                        colour: str) -> bool:
    """Mark bars whose cell had collapsed seeds: a † above the bar (its height is the mean of the seeds that
    trained) and, where every seed collapsed, a hatched empty bar at the collapsed seeds' mean. True when any
    mark was drawn (the caller adds one legend entry)."""
    drew = False
    for x, st in zip(xs, stats, strict=True):
        if not st or not st.get("collapsed"):
            continue
        drew = True
        if st["n"] == 0:
            h = st["collapsed_mean"]
            ax.bar([x], [h], width, color="none", edgecolor=colour, hatch="///", lw=0.8, label="_collapsed")
        else:
            h = st["mean"] + (st["std"] if st["n"] > 1 else 0.0)
        ax.text(x, min(h + 1.5, 97), COLLAPSED_MARK, ha="center", va="bottom", fontsize=8)
    return drew


def collapsed_legend_entry(ax: Any, text: str = "† seeds collapsed (left out; hatched: all)") -> None:
    """One legend entry explaining the collapse marks: the text alone (a "$†$" marker handle rendered as an
    arrow-like glyph beside the text's own dagger at legend size)."""
    ax.plot([], [], ls="none", marker="none", label=text)


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (reports are written headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, out: Path, dpi: int = 120) -> Path:
    """Write ``fig`` as PNG atomically, the outside legend included, and close it. A figure title sits just
    above the highest panel title: never into a tall grid's first row of titles, nor far above a single panel."""
    title = getattr(fig, "_suptitle", None)
    fig.tight_layout()
    if title is not None and title.get_text():
        # tight_layout leaves a generous band for the title; seat it just above the highest panel title
        # instead, and let the tight bounding box crop what is left above it
        renderer = fig.canvas.get_renderer()
        tops = [ax.get_tightbbox(renderer).transformed(fig.transFigure.inverted()).y1
                for ax in fig.axes if ax.get_visible() and ax.axison]
        if tops:
            title.set_y(max(tops) + 0.04 / fig.get_figheight())
            title.set_verticalalignment("bottom")
    with atomic_write(out, "wb") as f:
        fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight")
    pyplot().close(fig)
    return out
