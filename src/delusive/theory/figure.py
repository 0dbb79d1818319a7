"""Figure 2 (natural accuracy of the five models against d) and the simulation figure, as PNG + CSV.

matplotlib is imported lazily (Agg backend) inside the plotting functions, so importing the theory package
never needs a display or matplotlib itself. Files are written atomically.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from delusive.theory import gaussian
from delusive.theory.simulate import SimulationConfig, SimulationRow
from delusive.utils import atomic_write, atomic_write_text

__all__ = ["figure2_table", "log_grid", "plot_figure2", "plot_simulation", "simulation_table", "write_csv"]


def log_grid(d_min: float, d_max: float, points: int) -> NDArray[np.float64]:
    """Distinct integer d, log-spaced from ``d_min`` to ``d_max`` (both included)."""
    if not (1 <= d_min < d_max) or points < 2:
        raise ValueError(f"need 1 <= d_min < d_max and points >= 2, got d_min={d_min}, d_max={d_max}, "
                         f"points={points}")
    return np.unique(np.round(np.geomspace(d_min, d_max, points)))


def figure2_table(sigma: float, eta: float, eps: float | None, ds: ArrayLike) -> dict[str, NDArray[np.float64]]:
    """Columns ``d``, ``acc_<model>`` and ``z_<model>`` for the five models of Figure 2 (eps=None -> 2 eta).

    The z-scores are kept because the accuracies of f_D, f_D2 and f_D2_rob round to 1.0 at large d.
    """
    d = np.asarray(ds, dtype=np.float64)
    z = gaussian.five_model_z(sigma, eta, d, eps)
    table: dict[str, NDArray[np.float64]] = {"d": d}
    for name in gaussian.MODEL_NAMES:
        table[f"acc_{name}"] = np.broadcast_to(gaussian.accuracy_from_z(z[name]), d.shape)
    for name in gaussian.MODEL_NAMES:
        table[f"z_{name}"] = np.broadcast_to(z[name], d.shape)
    return table


def simulation_table(rows: Sequence[SimulationRow]) -> dict[str, list[Any]]:
    """The simulation rows as CSV columns."""
    return {
        "d": [r.d for r in rows],
        "model": [r.model for r in rows],
        "closed_form": [r.closed_form for r in rows],
        "simulated_mean": [r.mean for r in rows],
        "simulated_se": [r.se for r in rows],
        "learned_w_exact": [r.population for r in rows],
        "gap_points": [100 * r.gap for r in rows],
        "repeats": [len(r.accuracies) for r in rows],
    }


def write_csv(path: str | Path, columns: Mapping[str, Sequence[Any] | NDArray[Any]]) -> None:
    """Write equal-length columns as CSV (floats with 12 significant digits), atomically."""
    names = list(columns)
    n = len(columns[names[0]])
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(names)
    for i in range(n):
        row = []
        for name in names:
            v = columns[name][i]
            if isinstance(v, float | np.floating):
                row.append(f"{float(v):.12g}")
            elif isinstance(v, np.integer):
                row.append(str(int(v)))
            else:
                row.append(str(v))
        writer.writerow(row)
    atomic_write_text(path, buf.getvalue())


_STYLE = {
    "f_D": dict(color="black", linestyle=":", zorder=5),
    "f_D1": dict(color="tab:red", linestyle="--"),
    "f_D2": dict(color="tab:blue", linestyle="--"),
    "f_D1_rob": dict(color="tab:red", linestyle="-"),
    "f_D2_rob": dict(color="tab:blue", linestyle="-"),
}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> None:
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=150, bbox_inches="tight")


def plot_figure2(table: Mapping[str, NDArray[np.float64]], path: str | Path, *, sigma: float, eta: float,
                 eps: float) -> None:
    """Figure 2: natural accuracy on D of the five models against the number d of non-robust features."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    try:
        for name in gaussian.MODEL_NAMES:
            ax.plot(table["d"], table[f"acc_{name}"], label=gaussian.MODEL_LABELS[name], lw=1.8, **_STYLE[name])
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("number of non-robust features d")
        ax.set_ylabel(r"natural accuracy on $\mathcal{D}$")
        ax.set_title(rf"Figure 2: $\sigma={sigma:g}$, $\eta={eta:g}$, $\epsilon={eps:g}$")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(loc="lower left", fontsize=9)
        _save(fig, path)
    finally:
        plt.close(fig)


def plot_simulation(rows: Sequence[SimulationRow], config: SimulationConfig, path: str | Path) -> None:
    """Closed-form curves (lines) with simulated clean test accuracy (points, +- 1 SE error bars) on one plot."""
    plt = _pyplot()
    ds = sorted({r.d for r in rows})
    grid = log_grid(max(1.0, ds[0] / 2), max(ds[-1] * 2, ds[0] / 2 + 1), 200)
    curves = figure2_table(config.sigma, config.eta, config.eps, grid)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    try:
        offsets = dict(zip(gaussian.MODEL_NAMES, np.linspace(-0.04, 0.04, len(gaussian.MODEL_NAMES)),
                           strict=True))
        for name in gaussian.MODEL_NAMES:
            style = _STYLE[name]
            ax.plot(grid, curves[f"acc_{name}"], lw=1.4, label=gaussian.MODEL_LABELS[name], **style)
            sel = [r for r in rows if r.model == name]
            x = np.array([r.d for r in sel], dtype=np.float64) * 10 ** offsets[name]
            ax.errorbar(x, [r.mean for r in sel], yerr=[r.se for r in sel], fmt="o", ms=4, capsize=3,
                        color=style["color"], mfc="white" if style["linestyle"] != "-" else style["color"], zorder=6)
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("number of non-robust features d")
        ax.set_ylabel(r"clean test accuracy on $\mathcal{D}$")
        ax.set_title(rf"closed form (lines) vs. trained linear models (points $\pm$ SE): "
                     rf"$\sigma={config.sigma:g}$, $\eta={config.eta:g}$, $\epsilon={config.budget:g}$", fontsize=9)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(loc="lower left", fontsize=9)
        _save(fig, path)
    finally:
        plt.close(fig)
