"""Pictures of a poison: clean / poisoned / amplified-perturbation rows (the paper's Figure 1) and the
class perturbations of class-wise attacks rescaled to [0,1] (Figure 3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from delusive.attacks.artifact import load_artifact
from delusive.data import ArrayDataset
from delusive.utils import atomic_write


def _rescale(d: np.ndarray) -> np.ndarray:
    """Map a perturbation to [0,1] for display: 0.5 + δ / (2·max|δ|)."""
    m = float(np.abs(d).max())
    return np.full_like(d, 0.5) if m == 0 else 0.5 + d / (2 * m)


def _hwc(img: np.ndarray) -> np.ndarray:
    return img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)


def show_artifact(artifact_dir: str | Path, clean: ArrayDataset, out: str | Path, per_row: int | None = None,
                  seed: int = 0) -> Path:
    """Draw a PNG: clean, poisoned and amplified δ for ``per_row`` examples of different classes, plus the
    K class perturbations when the artifact has them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    art = load_artifact(artifact_dir)
    xp = art.images.astype(np.float32) / 255.0 if art.images.dtype == np.uint8 else art.images
    xc = clean.float_x()
    rng = np.random.default_rng(seed)
    picks = []
    for k in range(clean.num_classes):
        idx = np.flatnonzero(clean.y == k)
        if idx.size:
            picks.append(int(rng.choice(idx)))
    picks = picks[: per_row or clean.num_classes]
    rows = [("clean", [xc[i] for i in picks]), ("poisoned", [xp[i] for i in picks]),
            ("δ (amplified)", [_rescale(xp[i] - xc[i]) for i in picks])]
    if art.class_deltas is not None:
        rows.append(("class δ_y", [_rescale(art.class_deltas[int(clean.y[i])]) for i in picks]))
    cmap = "gray" if clean.shape[0] == 1 else None
    fig, axes = plt.subplots(len(rows), len(picks), figsize=(1.3 * len(picks), 1.4 * len(rows)), squeeze=False)
    names = clean.classes or tuple(str(k) for k in range(clean.num_classes))
    for r, (title, imgs) in enumerate(rows):
        for c, img in enumerate(imgs):
            ax = axes[r][c]
            ax.imshow(_hwc(np.clip(img, 0, 1)), cmap=cmap, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(title, fontsize=8)
            if r == 0:
                ax.set_title(names[int(clean.y[picks[c]])], fontsize=7)
    m = art.manifest
    fig.suptitle(f"{m['attack']} on {m['dataset']} ({m['threat']['norm']} ε={m['threat']['eps_text']})", fontsize=9)
    fig.tight_layout()
    out = Path(out)
    with atomic_write(out, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
    return out
