"""Interop with other poison collections: a folder of PNGs named by training index plus ``labels.csv``
(the layout APBench and other public poisons use), and per-sample or per-class noise saved as ``.npy``."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from delusive.attacks.artifact import PoisonArtifact, build_artifact, load_artifact
from delusive.data import ArrayDataset
from delusive.threat import ThreatModel
from delusive.utils import atomic_write, atomic_write_text, progress


def _to_uint8(images: np.ndarray) -> np.ndarray:
    if images.dtype == np.uint8:
        return images
    return np.clip(np.round(images * 255.0), 0, 255).astype(np.uint8)


def export_png(artifact_dir: str | Path, out_dir: str | Path) -> int:
    """Write ``out_dir/{index:06d}.png`` for every training image and ``out_dir/labels.csv``.

    uint8 artifacts round-trip exactly; float32 artifacts are rounded to the nearest 1/255 level.
    """
    art = load_artifact(artifact_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    imgs = _to_uint8(art.images)
    rows = ["filename,label"]
    for i in progress(range(len(imgs)), desc="export png", unit="img"):
        chw = imgs[i]
        pil = Image.fromarray(chw[0], mode="L") if chw.shape[0] == 1 else Image.fromarray(chw.transpose(1, 2, 0))
        buf = io.BytesIO()
        pil.save(buf, format="PNG")
        with atomic_write(out / f"{i:06d}.png", "wb") as f:
            f.write(buf.getvalue())
        rows.append(f"{i:06d}.png,{int(art.labels[i])}")
    atomic_write_text(out / "labels.csv", "\n".join(rows) + "\n")
    return len(imgs)


def read_png_folder(folder: str | Path, clean: ArrayDataset) -> np.ndarray:
    """Images of a PNG folder, ordered by training index, as uint8 N×C×H×W matching ``clean``'s shape.

    Files are named by index (``000123.png``); ``labels.csv`` (filename,label) must agree with the clean
    labels, since a delusive set never relabels.
    """
    root = Path(folder)
    labels_csv = root / "labels.csv"
    n = len(clean)
    images = np.empty((n, *clean.shape), dtype=np.uint8)
    seen = np.zeros(n, dtype=bool)
    if not labels_csv.exists():
        raise FileNotFoundError(f"{labels_csv}: missing (expected a filename,label table)")
    with open(labels_csv, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not {"filename", "label"} <= set(reader.fieldnames or []):
            raise ValueError(f"{labels_csv}: expected columns filename,label, got {reader.fieldnames}")
        for row in reader:
            name = row["filename"]
            try:
                label, idx = int(row["label"]), int(Path(name).stem)
            except ValueError:
                raise ValueError(f"{labels_csv}: row {row}: the file must be named by its training index "
                                 "(e.g. 000123.png) and the label must be an integer") from None
            if not 0 <= idx < n:
                raise ValueError(f"{root / name}: index {idx} outside the clean set (0..{n - 1})")
            if label != int(clean.y[idx]):
                raise ValueError(f"{labels_csv}: label of {name} is {label}, the clean label is {int(clean.y[idx])}")
            with Image.open(root / name) as im:
                mode = "L" if clean.shape[0] == 1 else "RGB"
                arr = np.asarray(im.convert(mode))
            arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
            if arr.shape != clean.shape:
                raise ValueError(f"{root / name}: image shape {arr.shape} differs from the clean {clean.shape}")
            images[idx] = arr
            seen[idx] = True
    if not seen.all():
        missing = np.flatnonzero(~seen)
        raise ValueError(f"{root}: {missing.size} training index(es) have no image, e.g. {missing[:10].tolist()}")
    return images


def import_poison(source: str | Path, clean: ArrayDataset, threat: ThreatModel, *, dataset: str,
                  storage: str = "uint8", seed: int = 0, attack: str = "imported",
                  extra: dict[str, Any] | None = None) -> PoisonArtifact:
    """Build an artifact from a PNG folder, or from noise in a ``.npy`` (N×C×H×W per sample, or K×C×H×W per
    class added as clip(x + δ_y)); the budget is checked as for crafted poisons."""
    src = Path(source)
    class_deltas = None
    poisoned: np.ndarray
    if src.is_dir():
        poisoned = read_png_folder(src, clean)
        kind = "png-folder"
    elif src.suffix == ".npy":
        try:
            noise = np.load(src, allow_pickle=False).astype(np.float32)
        except ValueError as e:
            raise ValueError(f"{src}: not a plain .npy array ({e})") from e
        if noise.shape == clean.x.shape:
            poisoned, kind = np.clip(clean.float_x() + noise, 0, 1), "per-sample-noise"
        elif noise.shape == (clean.num_classes, *clean.shape):
            poisoned, kind = np.clip(clean.float_x() + noise[clean.y], 0, 1), "per-class-noise"
            class_deltas = noise
        else:
            raise ValueError(f"{src}: noise shape {noise.shape} is neither per-sample {clean.x.shape} nor "
                             f"per-class {(clean.num_classes, *clean.shape)}")
    else:
        raise ValueError(f"{src}: expected a folder of PNGs with labels.csv or a .npy noise file")
    return build_artifact(clean, poisoned, threat, attack=attack, attack_params={"source": str(src), "kind": kind},
                          dataset=dataset, seed=seed, storage=storage, class_deltas=class_deltas, extra=extra)
