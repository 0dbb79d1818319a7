"""Interop with other poison collections: a folder of PNGs named by training index plus ``labels.csv``
(the layout APBench and other public poisons use), and per-sample or per-class noise saved as ``.npy``."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from delusive.attacks.artifact import PoisonArtifact, build_artifact, load_artifact, read_npy
from delusive.data import ArrayDataset
from delusive.threat import ThreatModel
from delusive.utils import atomic_write, atomic_write_text, progress
from delusive.utils.safefile import UnsafeFileError, member, name_problem, open_regular, read_regular_bytes


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


def _read_png(path: Path, clean: ArrayDataset) -> np.ndarray:
    """One image as uint8 C×H×W in ``clean``'s channel layout; any decoding failure names the file."""
    mode = "L" if clean.shape[0] == 1 else "RGB"
    try:
        with open_regular(path) as f, Image.open(f) as im:
            arr = np.asarray(im.convert(mode))
    except UnsafeFileError:
        raise
    except Image.DecompressionBombError as e:
        raise ValueError(f"{path}: refused as a possible decompression bomb ({e})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as e:
        raise ValueError(f"{path}: not a readable image ({type(e).__name__}: {e})") from None
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def read_png_folder(folder: str | Path, clean: ArrayDataset) -> np.ndarray:
    """Images of a PNG folder, ordered by training index, as uint8 N×C×H×W matching ``clean``'s shape.

    Files are named by index (``000123.png``); ``labels.csv`` (filename,label) must agree with the clean
    labels, since a delusive set never relabels. The table is untrusted: every row must name a regular
    file inside ``folder`` (no absolute path, no ``..``, no symlink out, no FIFO or device), every training
    index must appear exactly once, and each violation is a ``ValueError`` naming the row or the index.
    """
    root = Path(folder)
    labels_csv = root / "labels.csv"
    n = len(clean)
    images = np.empty((n, *clean.shape), dtype=np.uint8)
    first_row = np.zeros(n, dtype=np.int64)  # the labels.csv line that gave each index (0: none yet)
    if not labels_csv.exists():
        raise FileNotFoundError(f"{labels_csv}: missing (expected a filename,label table)")
    text = read_regular_bytes(member(root, "labels.csv", "table"), 256 * 2**20).decode("utf-8", errors="replace")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not {"filename", "label"} <= set(reader.fieldnames or []):
        raise ValueError(f"{labels_csv}: expected columns filename,label, got {reader.fieldnames}")
    for row in reader:
        line = reader.line_num
        name = row["filename"]
        problem = name_problem(name)
        if problem is not None:
            raise ValueError(f"{labels_csv}: line {line}: filename {problem}")
        try:
            label, idx = int(row["label"]), int(Path(name).stem)
        except (ValueError, TypeError):
            raise ValueError(f"{labels_csv}: line {line}: row {row}: the file must be named by its training index "
                             "(e.g. 000123.png) and the label must be an integer") from None
        if not 0 <= idx < n:
            raise ValueError(f"{labels_csv}: line {line}: {name}: index {idx} outside the clean set (0..{n - 1})")
        if first_row[idx]:
            raise ValueError(f"{labels_csv}: line {line}: duplicate index {idx} ({name}); line {first_row[idx]} "
                             "already gave this training index")
        if label != int(clean.y[idx]):
            raise ValueError(f"{labels_csv}: line {line}: label of {name} is {label}, the clean label is "
                             f"{int(clean.y[idx])}")
        try:
            path = member(root, name, f"labels.csv line {line}: file")
        except FileNotFoundError:
            raise FileNotFoundError(f"{root / name}: listed in {labels_csv} line {line} but missing") from None
        arr = _read_png(path, clean)
        if arr.shape != clean.shape:
            raise ValueError(f"{path}: image shape {arr.shape} differs from the clean {clean.shape}")
        images[idx] = arr
        first_row[idx] = line
    if not first_row.all():
        missing = np.flatnonzero(first_row == 0)
        raise ValueError(f"{root}: {missing.size} training index(es) have no row in labels.csv, e.g. "
                         f"{missing[:10].tolist()}")
    return images


def _read_array_file(src: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(array, labels or None) from ``.npy``, ``.npz`` (an image/noise array under ``x``/``data``/``noise``/
    ``perturbation``/``images`` and optional ``y``/``labels``/``targets``) or ``.pt``/``.pth`` (a tensor saved with
    ``torch.save``, as Huang et al. release EM noise, read with ``weights_only=True``); nothing is unpickled."""
    try:
        if src.suffix in (".pt", ".pth"):
            from delusive.models import load_state_dict_file

            obj = load_state_dict_file(src, "tensor file")
            import torch

            if not isinstance(obj, torch.Tensor):
                raise ValueError(f"{src}: expected one tensor saved with torch.save, got {type(obj).__name__}")
            return obj.detach().cpu().numpy(), None
        if src.suffix == ".npy":  # the header's shape must account for the file's size (nothing allocated first)
            return read_npy(src)[0], None
        with open_regular(src) as f:
            data = np.load(f, allow_pickle=False)
            if isinstance(data, np.lib.npyio.NpzFile):
                keys = set(data.files)
                xk = next((k for k in ("x", "data", "noise", "perturbation", "images") if k in keys), None)
                if xk is None:
                    raise ValueError(f"{src}: no image or noise array (expected one of x, data, noise, perturbation, "
                                     f"images; found {sorted(keys)})")
                yk = next((k for k in ("y", "labels", "targets") if k in keys), None)
                return data[xk], (data[yk] if yk is not None else None)
            return data, None
    except UnsafeFileError:
        raise
    except (ValueError, OSError, EOFError) as e:
        if str(e).startswith(str(src)):
            raise
        raise ValueError(f"{src}: not a plain array file ({e})") from e


def _channels_first(arr: np.ndarray, clean: ArrayDataset, src: Path) -> np.ndarray:
    """``arr`` as N×C×H×W (or K×C×H×W): N×H×W×C (CIFAR's and most releases' layout) and N×H×W (grayscale) are
    transposed to the clean set's layout."""
    c, h, w = clean.shape
    if arr.ndim == 4 and arr.shape[1:] == (h, w, c) and arr.shape[1:] != (c, h, w):
        return arr.transpose(0, 3, 1, 2)
    if arr.ndim == 3 and c == 1 and arr.shape[1:] == (h, w):
        return arr[:, None]
    return arr


def import_poison(source: str | Path, clean: ArrayDataset, threat: ThreatModel, *, dataset: str,
                  storage: str | None = None, seed: int = 0, attack: str = "imported",
                  extra: dict[str, Any] | None = None, origin: str | None = None,
                  claimed_attack: str | None = None) -> PoisonArtifact:
    """Build an artifact from a PNG folder, or from an array file: noise (N×C×H×W per sample, or K×C×H×W per
    class added as clip(x + δ_y); N×H×W×C accepted) or uint8 poisoned images (with labels, if the file carries
    them, that must equal the clean ones). The budget is checked against the clean set as for crafted poisons,
    and the manifest's ``import`` entry records the provenance: source name and SHA-256, kind, the attack the
    poison claims to be (``claimed_attack``; the manifest's attack is then "NAME (imported)") and ``origin``
    (where it came from, e.g. a URL or citation)."""
    src = Path(source)
    class_deltas = None
    poisoned: np.ndarray
    if src.is_dir():
        poisoned = read_png_folder(src, clean)
        kind = "png-folder"
    elif src.suffix in (".npy", ".npz", ".pt", ".pth"):
        arr, labels = _read_array_file(src)
        arr = _channels_first(np.asarray(arr), clean, src)
        if labels is not None:
            labels = np.asarray(labels).reshape(-1)
            if labels.shape != clean.y.shape or not np.array_equal(labels.astype(np.int64), clean.y):
                bad = np.flatnonzero(labels != clean.y) if labels.shape == clean.y.shape else np.arange(0)
                raise ValueError(f"{src}: its labels differ from the clean labels ({labels.shape[0]} given for "
                                 f"{len(clean.y)} images{', e.g. index ' + str(int(bad[0])) if bad.size else ''}); "
                                 "a delusive poison never relabels")
        if arr.dtype == np.uint8 and arr.shape == clean.x.shape:
            poisoned, kind = arr, "poisoned-images"
        elif arr.shape == clean.x.shape and arr.dtype.kind == "f" and float(np.nanmin(arr)) >= 0 and \
                float(np.nanmax(arr)) > 1.0 + 1e-6 and float(np.nanmax(arr)) <= 255:
            raise ValueError(f"{src}: float values up to {float(np.nanmax(arr)):g}: save poisoned images as uint8 "
                             "or noise in the [0, 1] pixel scale")
        else:
            if arr.dtype.kind not in "fiu":
                raise ValueError(f"{src}: noise must be numbers (float or int), got dtype {arr.dtype}")
            noise = arr.astype(np.float32)
            bad = int(np.size(noise) - np.isfinite(noise).sum())
            if bad:
                raise ValueError(f"{src}: the noise holds {bad} non-finite value(s) (NaN or inf); a perturbation "
                                 "must be finite")
            if noise.shape == clean.x.shape:
                poisoned, kind = np.clip(clean.float_x() + noise, 0, 1), "per-sample-noise"
            elif noise.shape == (clean.num_classes, *clean.shape):
                poisoned, kind = np.clip(clean.float_x() + noise[clean.y], 0, 1), "per-class-noise"
                class_deltas = noise
            else:
                raise ValueError(f"{src}: array shape {noise.shape} is neither per-sample {clean.x.shape} nor "
                                 f"per-class {(clean.num_classes, *clean.shape)} (N×H×W×C is accepted too)")
    else:
        raise ValueError(f"{src}: expected a folder of PNGs with labels.csv, or an array file (.npy, .npz, .pt/.pth) "
                         "of noise or of uint8 poisoned images")
    if claimed_attack:
        attack = f"{claimed_attack} (imported)"
    provenance = {"source": str(src), "source_name": src.name, "kind": kind, "source_sha256": _source_hash(src),
                  "claimed_attack": claimed_attack, "origin": origin}
    return build_artifact(clean, poisoned, threat, attack=attack, attack_params={"source": str(src), "kind": kind},
                          dataset=dataset, seed=seed, storage=storage, class_deltas=class_deltas,
                          extra={**(extra or {}), "import": provenance})


def _source_hash(src: Path) -> str:
    """SHA-256 of what was imported: the file, or for a PNG folder labels.csv and every file it lists, in order."""
    import hashlib

    h = hashlib.sha256()
    if src.is_dir():
        table = read_regular_bytes(member(src, "labels.csv", "table"))
        h.update(table)
        for row in csv.DictReader(io.StringIO(table.decode("utf-8", errors="replace"), newline="")):
            h.update(read_regular_bytes(member(src, row["filename"], "file")))
    else:
        h.update(read_regular_bytes(src))
    return h.hexdigest()
