"""Share a poison in the Hugging Face ``imagefolder`` layout, and read it back with verification.

``export_hf`` writes::

    OUT/README.md                 dataset card: what the data is, the attack, budget, provenance, how to load
    OUT/delusive-manifest.json    the artifact's manifest, unchanged (``delusive import`` checks against it)
    OUT/train/metadata.csv        file_name,index,label,class_name (index: the image's training-set index)
    OUT/train/<class>/<index>.png the poisoned training images, 8-bit PNG

which ``datasets.load_dataset("imagefolder", data_dir=OUT)`` loads as a ``train`` split with columns
``image``, ``index``, ``label`` (the class index) and ``class_name``, with no delusive code involved.

``read_hf`` reads such a folder back, trusting nothing in it: every metadata row must name a regular PNG
inside ``OUT/train`` (no absolute path, no ``..``, no symlink out), every training index must appear exactly
once with its clean label, and each image must have the clean set's shape; the caller then rebuilds the
artifact, whose budget is checked against the clean set like any crafted poison.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from delusive.attacks.artifact import load_artifact
from delusive.attacks.interop import _read_png, _to_uint8
from delusive.data import ArrayDataset
from delusive.utils import atomic_write, atomic_write_json, atomic_write_text, progress
from delusive.utils.safefile import member, name_problem, read_regular_bytes

MANIFEST_NAME = "delusive-manifest.json"
SPLIT = "train"


def _safe_dir_name(name: str, k: int) -> str:
    """A class name usable as one folder name (others get ``class_<k>``)."""
    ok = name and name not in (".", "..") and not any(c in name for c in "/\\\x00:") and name.strip() == name
    return name if ok else f"class_{k}"


def _card(manifest: dict[str, Any], names: list[str], n: int) -> str:
    threat = manifest["threat"]
    stats = manifest.get("norm_stats", {})
    crafting = manifest.get("crafting_model") or {}
    lines = [
        "---",
        "task_categories:",
        "- image-classification",
        "tags:",
        "- data-poisoning",
        "- delusive-attack",
        "- adversarial-robustness",
        "---",
        "",
        f"# Delusive poison: {manifest['attack']} on {manifest['dataset']}",
        "",
        f"A *delusive* (clean-label availability) poisoned copy of a training set: {n} images, each moved within "
        f"an {threat['norm']} ball of radius {threat['eps_text']} around its clean original, labels unchanged. "
        "A model trained on it normally reaches low accuracy on clean test data; adversarial training within "
        "the same budget largely restores it (Tao et al., \"Better Safe Than Sorry: Preventing Delusive "
        "Adversaries with Adversarial Training\", NeurIPS 2021). Made for research on that threat and its "
        "defenses; do not pass it off as clean data.",
        "",
        "## Load",
        "",
        "```python",
        "from datasets import load_dataset",
        "ds = load_dataset(\"imagefolder\", data_dir=\"THIS_FOLDER\")[\"train\"]",
        "# columns: image, index (training-set index), label (class index), class_name",
        "```",
        "",
        "## Provenance",
        "",
        "| field | value |",
        "|---|---|",
        f"| attack | {manifest['attack']} |",
        f"| budget | {threat['norm']} ε = {threat['eps_text']} |",
        f"| realised ‖δ‖ min / mean / max | {stats.get('min', 0):.6g} / {stats.get('mean', 0):.6g} / "
        f"{stats.get('max', 0):.6g} |",
        f"| clean dataset | {manifest['dataset']} |",
        f"| clean training set sha256 | {manifest.get('source_sha256')} |",
        f"| attack parameters | {json.dumps(manifest.get('attack_params', {}), sort_keys=True)} |",
        f"| crafting model | {crafting.get('arch', 'none')} {str(crafting.get('sha256', ''))[:16]} |",
        f"| seed | {manifest.get('seed')} |",
        f"| stored as | {manifest.get('storage')} (exported as 8-bit PNG) |",
        f"| payload sha256 | {manifest.get('payload_sha256')} |",
        f"| made with | delusive {manifest.get('delusive_version')} |",
        "",
        "## Classes",
        "",
        *[f"- {k}: {name}" for k, name in enumerate(names)],
        "",
        "## Verify",
        "",
        "`delusive import THIS_FOLDER --clean-dataset DATASET --out DIR` rebuilds the artifact from these files "
        "and checks every image against the clean set (labels unchanged, every ‖δ_i‖ within the budget above); "
        "`delusive verify DIR` repeats the check at any time. `" + MANIFEST_NAME + "` is the original manifest.",
        "",
    ]
    return "\n".join(lines)


def export_hf(artifact_dir: str | Path, out_dir: str | Path, class_names: list[str] | None = None) -> int:
    """Write an artifact in the ``imagefolder`` layout described in the module docstring; returns the count."""
    art = load_artifact(artifact_dir)
    k = int(art.manifest["num_classes"])
    names = list(class_names or art.manifest.get("class_names") or [str(i) for i in range(k)])
    if len(names) != k:
        raise ValueError(f"{artifact_dir}: {len(names)} class names for {k} classes")
    folders = [_safe_dir_name(str(nm), i) for i, nm in enumerate(names)]
    if len(set(folders)) != k:
        folders = [f"class_{i}" for i in range(k)]
    out = Path(out_dir)
    split = out / SPLIT
    imgs = _to_uint8(art.images)
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    writer.writerow(["file_name", "index", "label", "class_name"])
    for f in folders:
        (split / f).mkdir(parents=True, exist_ok=True)
    for i in progress(range(len(imgs)), desc="export hf", unit="img"):
        chw = imgs[i]
        label = int(art.labels[i])
        pil = Image.fromarray(chw[0], mode="L") if chw.shape[0] == 1 else Image.fromarray(chw.transpose(1, 2, 0))
        buf = io.BytesIO()
        pil.save(buf, format="PNG")
        name = f"{folders[label]}/{i:06d}.png"
        with atomic_write(split / name, "wb") as fh:
            fh.write(buf.getvalue())
        writer.writerow([name, i, label, names[label]])
    atomic_write_text(split / "metadata.csv", rows.getvalue())
    atomic_write_json(out / MANIFEST_NAME, art.manifest)
    atomic_write_text(out / "README.md", _card(art.manifest, names, len(imgs)))
    return len(imgs)


def is_hf_folder(path: str | Path) -> bool:
    p = Path(path)
    return (p / MANIFEST_NAME).is_file() and (p / SPLIT / "metadata.csv").is_file()


def read_hf(folder: str | Path, clean: ArrayDataset) -> tuple[np.ndarray, dict[str, Any]]:
    """(uint8 images in training-index order, the exported manifest) of an ``export_hf`` folder."""
    root = Path(folder)
    split = root / SPLIT
    manifest = json.loads(read_regular_bytes(member(root, MANIFEST_NAME, "manifest")).decode("utf-8"))
    if not isinstance(manifest, dict) or not isinstance(manifest.get("threat"), dict):
        raise ValueError(f"{root / MANIFEST_NAME}: not a delusive manifest")
    table = split / "metadata.csv"
    text = read_regular_bytes(member(split, "metadata.csv", "table")).decode("utf-8", errors="replace")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not {"file_name", "index", "label"} <= set(reader.fieldnames or []):
        raise ValueError(f"{table}: expected columns file_name,index,label, got {reader.fieldnames}")
    n = len(clean)
    images = np.empty((n, *clean.shape), dtype=np.uint8)
    seen = np.zeros(n, dtype=np.int64)
    for row in reader:
        line = reader.line_num
        name = row["file_name"]
        problem = name_problem(name)
        if problem is not None:
            raise ValueError(f"{table}: line {line}: file_name {problem}")
        try:
            idx, label = int(row["index"]), int(row["label"])
        except (TypeError, ValueError):
            raise ValueError(f"{table}: line {line}: index and label must be integers, got {row}") from None
        if not 0 <= idx < n:
            raise ValueError(f"{table}: line {line}: index {idx} outside the clean set (0..{n - 1})")
        if seen[idx]:
            raise ValueError(f"{table}: line {line}: duplicate index {idx} (line {seen[idx]} already gave it)")
        if label != int(clean.y[idx]):
            raise ValueError(f"{table}: line {line}: label of index {idx} is {label}, the clean label is "
                             f"{int(clean.y[idx])} (a delusive poison never relabels)")
        try:
            path = member(split, name, f"metadata.csv line {line}: file")
        except FileNotFoundError:
            raise FileNotFoundError(f"{split / name}: listed in {table} line {line} but missing") from None
        arr = _read_png(path, clean)
        if arr.shape != clean.shape:
            raise ValueError(f"{path}: image shape {arr.shape} differs from the clean {clean.shape}")
        images[idx] = arr
        seen[idx] = line
    if not seen.all():
        missing = np.flatnonzero(seen == 0)
        raise ValueError(f"{table}: {missing.size} training index(es) have no row, e.g. {missing[:10].tolist()}")
    return images, manifest
