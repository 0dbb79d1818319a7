"""Write an inspection: ``report.json`` (machines; top-level ``verdict``), ``report.md`` (people),
``report.png`` (class patterns and the most suspect images) and ``scores.npy`` (per-sample scores, float32,
in dataset order). Every file is written atomically, so an interrupted run never leaves a half file; the JSON
is written last, so a report.json on disk always describes a complete set."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from delusive.data import ArrayDataset
from delusive.inspect.detector import InspectResult
from delusive.utils import atomic_write_bytes, atomic_write_json, atomic_write_text


def _rescale(d: np.ndarray) -> np.ndarray:
    m = float(np.abs(d).max())
    return np.full_like(d, 0.5) if m == 0 else 0.5 + d / (2 * m)


def _hwc(img: np.ndarray) -> np.ndarray:
    return img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)


def render_png(result: InspectResult, ds: ArrayDataset, n_suspects: int = 10) -> bytes:
    """Row 1: each class's pattern (high-pass class mean minus the overall one), rescaled to [0, 1] with one
    scale for all classes so strengths compare; row 2: the most suspect images with their label and score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = result.patterns.shape[0]
    cols = max(k, n_suspects)
    fig, axes = plt.subplots(2, cols, figsize=(1.3 * cols, 3.2), squeeze=False)
    pats = _rescale(result.patterns)
    names = ds.classes or tuple(str(i) for i in range(k))
    for j in range(cols):
        for r in range(2):
            axes[r][j].axis("off")
        if j < k:
            axes[0][j].imshow(_hwc(pats[j]), cmap="gray", vmin=0, vmax=1)
            axes[0][j].set_title(f"{names[j]}"[:12] + f"\nrms {result.per_class[j]['pattern_rms']:.3f}", fontsize=7)
        if j < min(n_suspects, len(result.top_suspects)):
            s = result.top_suspects[j]
            img = ds.x[s["index"]]
            img = img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img
            axes[1][j].imshow(_hwc(img), cmap="gray", vmin=0, vmax=1)
            axes[1][j].set_title(f"#{s['index']} y={s['label']}\n{s['score']:.1f}", fontsize=7)
    fig.suptitle(f"delusive inspect: {result.verdict} (score {result.score:.2f}, threshold 1.0) — "
                 "row 1: class patterns, row 2: most suspect images", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def render_markdown(result: InspectResult) -> str:
    lines = [f"# delusive inspect: **{result.verdict}**", "",
             f"Dataset `{result.dataset['name']}`: {result.dataset['images']} images "
             f"{'×'.join(map(str, result.dataset['shape']))}, {result.dataset['num_classes']} classes, "
             f"sha256 `{result.dataset['sha256'][:16]}…`.",
             f"Score {result.score:.3f} (suspect above 1.0: the largest signal/threshold ratio). "
             f"Probe: {result.probe['model']}, {result.probe['norm']} ε = {result.probe['eps']}, "
             f"{result.probe['samples_probed']} images, seed {result.probe['seed']}.", ""]
    if result.reference:
        lines += [f"Reference: {result.reference.get('source')} (shortcut {result.reference['shortcut']:.3f}).", ""]
    else:
        lines += ["Reference: none (thresholds calibrated without clean data; docs/inspect.md).", ""]
    lines += ["| signal | value | threshold | flagged | what it measures |", "|---|---|---|---|---|"]
    for name, s in result.signals.items():
        lines.append(f"| {name} | {s['value']:.4f} | {s['threshold']} | {'**yes**' if s['flagged'] else 'no'} "
                     f"| {s['measures']} |")
    sc = result.signals["shortcut"]
    lines += ["", f"Held-out error of the standard probe {sc['error_std']:.4f}, of the ε-robust probe "
              f"{sc['error_robust']:.4f}.", "", "## Per class", "",
              "| class | name | images | error std | error robust | shortcut | pattern rms | pattern max |",
              "|---|---|---|---|---|---|---|---|"]
    for c in result.per_class:
        def f(v: float | None) -> str:
            return "–" if v is None else f"{v:.4f}"
        lines.append(f"| {c['class']} | {c['name']} | {c['images']} | {f(c['error_std'])} | {f(c['error_robust'])} "
                     f"| {f(c['shortcut'])} | {c['pattern_rms']:.4f} | {c['pattern_max']:.4f} |")
    lines += ["", "## Most suspect images", "", "| rank | index | label | score |", "|---|---|---|---|"]
    for r, s in enumerate(result.top_suspects, 1):
        lines.append(f"| {r} | {s['index']} | {s['label']} | {s['score']:.3f} |")
    lines += ["", "Per-sample scores of every image: `scores.npy` (float32, dataset order). "
              "Picture: `report.png`. Wall time " f"{result.wall_time_s:.1f} s.", ""]
    return "\n".join(lines)


def write_report(result: InspectResult, ds: ArrayDataset, out: str | Path) -> Path:
    """Write the four files into ``out`` (created if missing); report.json last."""
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out}: exists and is not a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.save(buf, result.sample_scores.astype(np.float32), allow_pickle=False)
    atomic_write_bytes(out_dir / "scores.npy", buf.getvalue())
    atomic_write_bytes(out_dir / "report.png", render_png(result, ds))
    atomic_write_text(out_dir / "report.md", render_markdown(result))
    atomic_write_json(out_dir / "report.json", result.to_json())
    return out_dir
