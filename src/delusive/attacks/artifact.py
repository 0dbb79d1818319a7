"""``PoisonArtifact``: a self-describing poisoned training set on disk, with no pickle anywhere.

Layout of an artifact directory: ``images.npy`` (uint8 or float32, N×C×H×W), ``labels.npy`` (int64, equal
to the clean labels), ``class_deltas.npy`` (P3-P5: the K class perturbations), ``mask.npy`` (region-masked
threat models only) and ``manifest.json`` (attack, threat model with ε as given, dataset and its hash,
crafting-model hash, seed, storage mode, realised norms, version, payload SHA-256). Every budget check runs
before anything is written, so a broken attack can never leave an over-budget artifact behind.

Storage (DESIGN.md, Pitfall 2). ℓ2 budgets are stored as float32 by default: rounding a dense ℓ2 δ to 1/255
levels toward zero shrinks a CIFAR-10 P5 poison's norm by ~16%, a different (weaker) poison than the one
crafted. ℓ∞ budgets default to uint8 with δ rounded toward zero (|δ_q| ≤ |δ| per pixel, so the stored image
never leaves the ball, unlike the reference's truncation of x + δ; an ℓ∞ δ usually sits on whole levels
already). uint8 storage of an ℓ2 budget rounds to the *nearest* level and, where that overshoots ε, rounds
the fewest pixels back toward zero. Either way ``norm_stats.retained_fraction`` records the realised mean
norm over the float perturbation's mean norm.

Loading trusts nothing in the directory: the manifest may name only the fixed payload files, each must be a
regular file inside the artifact folder (no absolute names, no ``..``, no symlink out, no FIFO or device),
and every refusal is a ``ValueError`` naming the file before anything is read or hashed.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import delusive
from delusive.data import ArrayDataset
from delusive.threat import Masked, ThreatModel, make_threat
from delusive.threat.balls import L2Ball
from delusive.utils import atomic_write_bytes, atomic_write_json, sha256_bytes, stable_json
from delusive.utils.hashing import sha256_stream
from delusive.utils.io import JSON_MAX_BYTES, parse_json
from delusive.utils.safefile import UnsafeFileError, member, name_problem, open_regular, read_regular_bytes

FORMAT = "delusive-poison/1"
STORAGES = ("uint8", "float32")
PAYLOAD_FILES = ("images.npy", "labels.npy", "class_deltas.npy", "mask.npy")
REQUIRED_FILES = ("images.npy", "labels.npy")
MANIFEST = "manifest.json"
AUTO_STORAGE = "auto"
_HEX64 = re.compile(r"[0-9a-f]{64}")
ABS_TOL = 1e-5  # float32 round-off allowance when recomputing δ from stored float images


class BudgetError(ValueError):
    """The perturbed set breaks its contract (labels changed, box or ε exceeded)."""


#: attack name -> check(manifest, images, clean_x, labels) -> problems: what an attack's artifact must satisfy
#: beyond the norm budget (OPS: the changed pixel is the class's recorded one; CUDA: the images are the
#: recorded class filters applied to the clean images). Run when an artifact is built and when it is verified.
Verifier = Callable[[dict[str, Any], np.ndarray, np.ndarray, np.ndarray], list[str]]
VERIFIERS: dict[str, Verifier] = {}


def register_verifier(attack: str, check: Verifier) -> None:
    VERIFIERS[attack] = check


def attack_problems(manifest: dict[str, Any], images: np.ndarray, clean: ArrayDataset,
                    labels: np.ndarray) -> list[str]:
    """The problems the attack's own verifier finds (none when the attack has no verifier)."""
    check = VERIFIERS.get(str(manifest.get("attack")))
    if check is None or images.shape != clean.x.shape or labels.shape != clean.y.shape:
        return []
    return check(manifest, images, clean.x, labels)


@dataclass
class PoisonArtifact:
    images: np.ndarray
    labels: np.ndarray
    manifest: dict[str, Any]
    class_deltas: np.ndarray | None = None
    mask: np.ndarray | None = None
    file_sha256: dict[str, str] = field(default_factory=dict)  # hashes of the payload as read (load_artifact)

    def dataset(self, name: str = "", classes: tuple[str, ...] | None = None) -> ArrayDataset:
        return ArrayDataset(self.images, self.labels, int(self.manifest["num_classes"]), name=name, classes=classes)

    def threat(self) -> ThreatModel:
        return threat_from_manifest(self.manifest["threat"], self.mask)


@dataclass
class VerifyReport:
    ok: bool
    problems: list[str] = field(default_factory=list)
    offending: dict[str, list[int]] = field(default_factory=dict)
    norm_stats: dict[str, float] = field(default_factory=dict)


def threat_from_manifest(desc: dict[str, Any], mask: np.ndarray | None) -> ThreatModel:
    norm = desc["norm"].removeprefix("masked-")
    base = make_threat(norm, desc["eps_text"])
    if desc["norm"].startswith("masked-"):
        if mask is None:
            raise BudgetError("manifest names a masked threat model but mask.npy is missing")
        return Masked(base, torch.from_numpy(mask))
    return base


def _is_l2(threat: ThreatModel) -> bool:
    return isinstance(threat.base if isinstance(threat, Masked) else threat, L2Ball)


def default_storage(threat: ThreatModel, clean: ArrayDataset) -> str:
    """float32 for ℓ2 budgets (uint8 levels would shrink a dense ℓ2 δ), uint8 for ℓ∞ on a uint8 clean set."""
    return "float32" if _is_l2(threat) or clean.x.dtype != np.uint8 else "uint8"


def resolve_storage(storage: str | None, threat: ThreatModel, clean: ArrayDataset) -> str:
    """``storage`` itself, or the default for ``threat`` when it is None or ``"auto"``."""
    if storage is None or storage == AUTO_STORAGE:
        return default_storage(threat, clean)
    if storage not in STORAGES:
        raise ValueError(f"storage: expected one of {', '.join((AUTO_STORAGE, *STORAGES))}, got {storage!r}")
    return storage


def quantise_toward_clean(clean_u8: np.ndarray, poisoned: np.ndarray) -> np.ndarray:
    """uint8 images whose δ is the float δ rounded toward zero in 1/255 steps (never a larger |δ_i|).

    uint8 input is taken as is. For float input, a δ within 2e-5 levels of a whole level (float32 round-off
    of an image already on the 1/255 grid) counts as that level: at most 8e-8 per pixel, far inside the
    verification tolerance.
    """
    if poisoned.dtype == np.uint8:
        return poisoned.copy()
    diff = poisoned.astype(np.float64) * 255.0 - clean_u8.astype(np.float64)
    q = np.trunc(diff + np.sign(diff) * 2e-5)
    return np.clip(clean_u8.astype(np.int16) + q.astype(np.int16), 0, 255).astype(np.uint8)


def quantise_nearest_l2(clean_u8: np.ndarray, poisoned: np.ndarray, threat: ThreatModel,
                        chunk: int = 512) -> np.ndarray:
    """uint8 images for an ℓ2 (or masked-ℓ2) budget: δ rounded to the nearest 1/255 level, then repaired.

    Rounding to nearest keeps ‖δ‖₂ on average (rounding toward zero loses about half a level per pixel,
    ~16% of a CIFAR-10 P5 δ at ε = 0.5) but can overshoot ε by a hair. For each image that overshoots, the
    pixels that were rounded *away* from zero are rounded toward zero instead, those whose two levels were
    closest first, until ‖δ_q‖₂ ≤ ε: the fewest, smallest changes that restore the budget. An image that
    cannot be repaired so (a float δ already over budget) falls back to rounding toward zero.
    """
    if poisoned.dtype == np.uint8:
        return poisoned.copy()
    n = len(clean_u8)
    d = int(np.prod(clean_u8.shape[1:]))
    weight = np.ones(d)
    if isinstance(threat, Masked):
        weight = np.broadcast_to(threat.mask.numpy().astype(np.float64), clean_u8.shape[1:]).reshape(d)
    budget = (threat.eps * 255.0) ** 2
    out = np.empty_like(clean_u8)
    for i in range(0, n, chunk):
        c = clean_u8[i : i + chunk].reshape(-1, d).astype(np.float64)
        diff = poisoned[i : i + chunk].reshape(-1, d).astype(np.float64) * 255.0 - c
        q = np.clip(np.rint(diff), -c, 255.0 - c)
        sq = (q * q * weight).sum(1)
        over = np.flatnonzero(sq > budget)
        if over.size:
            rows, dv = q[over], diff[over]
            qa, da = np.abs(rows), np.abs(dv)
            away = (qa > da) & (weight > 0)  # rounded away from zero, inside the budget's support
            key = np.where(away, qa - da, -1.0)  # largest first: the toward-zero level was nearly as close
            order = np.argsort(-key, axis=1, kind="stable")
            gain = np.take_along_axis(np.where(away, 2 * qa - 1, 0.0), order, axis=1).cumsum(1)
            k = (gain < (sq[over] - budget)[:, None]).sum(1)  # the first k+1 flips in ``order`` suffice
            rank = np.empty_like(order)
            np.put_along_axis(rank, order, np.broadcast_to(np.arange(d), order.shape), axis=1)
            rows -= np.sign(rows) * (away & (rank <= k[:, None]))
            stuck = np.flatnonzero(k >= away.sum(1))
            if stuck.size:
                cs = c[over[stuck]]
                rows[stuck] = np.clip(np.trunc(dv[stuck] + np.sign(dv[stuck]) * 2e-5), -cs, 255.0 - cs)
            q[over] = rows
        out[i : i + chunk] = (c + q).astype(np.uint8).reshape(-1, *clean_u8.shape[1:])
    return out


def _as_float(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)


def _delta_norms(threat: ThreatModel, images: np.ndarray, clean_f: np.ndarray, clip: bool = False,
                 chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample ‖x_i − x_clean_i‖ under ``threat`` and whether δ_i is zero outside a mask (all True if none)."""
    norms = np.empty(len(images), dtype=np.float64)
    inside = np.ones(len(images), dtype=bool)
    for i in range(0, len(images), chunk):
        xp = _as_float(images[i : i + chunk])
        if clip:
            xp = np.clip(xp, 0.0, 1.0)
        d = torch.from_numpy(xp - clean_f[i : i + chunk])
        norms[i : i + chunk] = threat.norm(d).double().numpy()
        if isinstance(threat, Masked):
            inside[i : i + chunk] = ((d * (1 - threat.mask)).flatten(1).abs().amax(1) <= ABS_TOL).numpy()
    return norms, inside


def check_budget(clean: ArrayDataset, images: np.ndarray, labels: np.ndarray, threat: ThreatModel,
                 tol: float = ABS_TOL) -> VerifyReport:
    """Recompute every δ_i against the clean set and check labels, the [0,1] box and ‖δ_i‖ ≤ ε."""
    problems: list[str] = []
    offending: dict[str, list[int]] = {}
    if images.shape != clean.x.shape:
        return VerifyReport(False, [f"shape {images.shape} differs from the clean set's {clean.x.shape}"])
    if labels.shape != clean.y.shape or not np.issubdtype(labels.dtype, np.integer):
        return VerifyReport(False, [f"labels have shape {labels.shape} and dtype {labels.dtype}, expected integer "
                                    f"labels of shape {clean.y.shape}"])
    changed = np.flatnonzero(labels != clean.y)
    if changed.size:
        offending["label_changed"] = changed.tolist()
        problems.append(f"{changed.size} label(s) changed, e.g. indices {_head(changed)}")
    xp = _as_float(images)
    flat = xp.reshape(len(xp), -1)
    out_box = np.flatnonzero((flat < -tol).any(1) | (flat > 1 + tol).any(1) | ~np.isfinite(flat).all(1))
    if out_box.size:
        offending["outside_box"] = out_box.tolist()
        problems.append(f"{out_box.size} image(s) leave [0,1], e.g. indices {_head(out_box)}")
    norms, inside = _delta_norms(threat, xp, clean.float_x())
    over = np.flatnonzero(~(norms <= threat.eps + tol))  # NaN norms count as over budget
    if over.size:
        offending["over_budget"] = over.tolist()
        top = float(np.nanmax(norms)) if np.isfinite(norms).any() else float("nan")
        problems.append(f"{over.size} perturbation(s) exceed {threat.norm_name} eps={threat.eps_text} "
                        f"(max norm {top:.6g}), e.g. indices {_head(over)}")
    if not inside.all():
        bad = np.flatnonzero(~inside)
        offending["outside_mask"] = bad.tolist()
        problems.append(f"{bad.size} perturbation(s) change pixels outside the mask, e.g. indices {_head(bad)}")
    empty = not len(norms)
    stats = {"min": 0.0 if empty else float(norms.min()), "mean": 0.0 if empty else float(norms.mean()),
             "max": 0.0 if empty else float(norms.max()),
             "at_budget_fraction": 0.0 if empty else float((norms >= threat.eps * (1 - 1e-3)).mean())}
    return VerifyReport(not problems, problems, offending, stats)


def _head(idx: np.ndarray, k: int = 10) -> str:
    shown = ", ".join(map(str, idx[:k].tolist()))
    return f"[{shown}{', ...' if idx.size > k else ''}]"


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def build_artifact(clean: ArrayDataset, poisoned: np.ndarray, threat: ThreatModel, *, attack: str,
                   attack_params: dict[str, Any], dataset: str, seed: int, storage: str | None = None,
                   class_deltas: np.ndarray | None = None, crafting_model: dict[str, Any] | None = None,
                   extra: dict[str, Any] | None = None) -> PoisonArtifact:
    """Store ``poisoned`` in ``storage`` mode (None or "auto": :func:`default_storage`), check labels and
    budget (raising :class:`BudgetError` before anything is written) and describe it in a manifest.

    ``norm_stats`` holds the realised per-sample norms (min/mean/max, fraction at the budget) and what storage
    kept of the float perturbation: ``float_mean`` (mean ‖δ_i‖ of ``poisoned`` clipped to [0,1]) and
    ``retained_fraction`` = realised mean / ``float_mean``.
    """
    storage = resolve_storage(storage, threat, clean)
    if poisoned.shape != clean.x.shape:
        raise BudgetError(f"attack {attack}: produced shape {poisoned.shape}, clean set has {clean.x.shape}")
    if poisoned.dtype == np.uint8 and storage == "float32":
        poisoned = poisoned.astype(np.float32) / 255.0
    if storage == "uint8":
        if clean.x.dtype != np.uint8:
            raise ValueError("storage uint8 needs a clean set stored as uint8; use --storage float32")
        images = (quantise_nearest_l2(clean.x, poisoned, threat) if _is_l2(threat)
                  else quantise_toward_clean(clean.x, poisoned))
    else:
        images = np.clip(poisoned.astype(np.float32), 0.0, 1.0)
    labels = clean.y.astype(np.int64).copy()
    report = check_budget(clean, images, labels, threat)
    if not report.ok:
        raise BudgetError(f"attack {attack}: refusing to write an artifact that breaks its budget: "
                          + "; ".join(report.problems))
    float_norms, _ = _delta_norms(threat, poisoned, clean.float_x(), clip=True)
    float_mean = float(float_norms.mean()) if len(float_norms) else 0.0
    report.norm_stats["float_mean"] = float_mean
    report.norm_stats["retained_fraction"] = report.norm_stats["mean"] / float_mean if float_mean > 0 else 1.0
    mask = threat.mask.numpy().astype(np.float32) if isinstance(threat, Masked) else None
    payload = {"images.npy": _npy_bytes(images), "labels.npy": _npy_bytes(labels)}
    if class_deltas is not None:
        payload["class_deltas.npy"] = _npy_bytes(class_deltas.astype(np.float32))
    if mask is not None:
        payload["mask.npy"] = _npy_bytes(mask)
    files = {name: sha256_bytes(b) for name, b in sorted(payload.items())}
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "attack": attack,
        "attack_params": attack_params,
        "threat": threat.describe(),
        "dataset": dataset,
        "source_sha256": clean.sha256(),
        "num_examples": int(len(labels)),
        "shape": list(clean.shape),
        "num_classes": int(clean.num_classes),
        "crafting_model": crafting_model,
        "seed": int(seed),
        "storage": storage,
        "norm_stats": report.norm_stats,
        "labels_sha256": files["labels.npy"],
        "files": files,
        "delusive_version": delusive.__version__,
    }
    if extra:
        manifest.update(extra)
    manifest = json.loads(stable_json(manifest))
    manifest["payload_sha256"] = payload_hash(files, manifest)
    own = attack_problems(manifest, images, clean, labels)
    if own:
        raise BudgetError(f"attack {attack}: refusing to write an artifact that breaks its construction: "
                          + "; ".join(own))
    art = PoisonArtifact(images, labels, manifest, class_deltas, mask, dict(files))
    art._payload = payload  # type: ignore[attr-defined]
    return art


def payload_hash(files: dict[str, str], manifest: dict[str, Any]) -> str:
    """SHA-256 over every payload file's hash *and* every manifest field (but this hash itself), so neither
    an image nor a claimed budget can be edited without ``verify`` noticing."""
    body = {k: v for k, v in manifest.items() if k != "payload_sha256"}
    lines = "".join(f"{k}:{v}\n" for k, v in sorted(files.items()))
    return sha256_bytes(lines.encode(), stable_json(body).encode())


def _fsync_dir(path: Path) -> None:
    """Make the renames in ``path`` durable before the next step (no-op where directories cannot be opened)."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save_artifact(art: PoisonArtifact, out_dir: str | Path) -> Path:
    """Write an artifact so that a half-written one can never pass as complete.

    The old manifest is removed first (from then on ``out_dir`` is "not a poison artifact"), then every
    payload file is written atomically and stale payload files are removed, and the manifest is written
    last, atomically: its presence marks a complete artifact.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)
    _fsync_dir(out)
    payload = getattr(art, "_payload", None) or {
        "images.npy": _npy_bytes(art.images), "labels.npy": _npy_bytes(art.labels),
        **({"class_deltas.npy": _npy_bytes(art.class_deltas)} if art.class_deltas is not None else {}),
        **({"mask.npy": _npy_bytes(art.mask)} if art.mask is not None else {}),
    }
    for name in PAYLOAD_FILES:
        if name not in payload:
            (out / name).unlink(missing_ok=True)
    for name, data in payload.items():
        atomic_write_bytes(out / name, data)
    _fsync_dir(out)
    atomic_write_json(out / MANIFEST, art.manifest)
    return out


def _bad_manifest(mpath: Path, problem: str) -> ValueError:
    return ValueError(f"{mpath}: {problem}")


def _check_manifest(manifest: Any, mpath: Path) -> dict[str, str]:
    """The manifest's ``files`` table after checking every field later code relies on (errors name mpath)."""
    if not isinstance(manifest, dict):
        raise _bad_manifest(mpath, f"expected a JSON object, got {type(manifest).__name__}")
    if manifest.get("format") != FORMAT:
        raise _bad_manifest(mpath, f"unknown format {manifest.get('format')!r}, expected {FORMAT}")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise _bad_manifest(mpath, "no 'files' table naming the payload")
    for name, digest in files.items():
        problem = name_problem(name)
        if problem is None and name not in PAYLOAD_FILES:
            problem = f"{name!r} is not a payload file of a poison artifact (expected {', '.join(PAYLOAD_FILES)})"
        if problem is not None:
            raise UnsafeFileError(mpath, f"'files' entry {problem}")
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            raise _bad_manifest(mpath, f"'files' entry {name!r}: {digest!r} is not a SHA-256 hex digest")
    missing = [n for n in REQUIRED_FILES if n not in files]
    if missing:
        raise _bad_manifest(mpath, f"'files' table does not name {', '.join(missing)}")
    if not isinstance(manifest.get("payload_sha256"), str):
        raise _bad_manifest(mpath, "no 'payload_sha256'")
    for key in ("attack", "dataset"):
        if not isinstance(manifest.get(key), str):
            raise _bad_manifest(mpath, f"{key!r} must be a string, got {manifest.get(key)!r}")
    k = manifest.get("num_classes")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise _bad_manifest(mpath, f"'num_classes' must be an integer >= 1, got {k!r}")
    subset = manifest.get("subset")
    if subset is not None and not (isinstance(subset, dict) and all(
            isinstance(subset.get(f), int) and not isinstance(subset.get(f), bool) and subset.get(f) >= 0
            for f in ("size", "seed"))):
        raise _bad_manifest(mpath, f"'subset' must be null or {{size, seed}} integers, got {subset!r}")
    cm = manifest.get("crafting_model", False)
    if cm is not None and not isinstance(cm, dict):
        raise _bad_manifest(mpath, f"'crafting_model' must be null or an object, got {cm!r}")
    if not isinstance(manifest.get("norm_stats"), dict):
        raise _bad_manifest(mpath, "'norm_stats' must be an object")
    desc = manifest.get("threat")
    if not isinstance(desc, dict) or not isinstance(desc.get("norm"), str) or "eps_text" not in desc:
        raise _bad_manifest(mpath, f"'threat' must be an object with norm and eps_text, got {desc!r}")
    eps_text = desc["eps_text"]
    if isinstance(eps_text, bool) or not isinstance(eps_text, str | int | float):
        raise _bad_manifest(mpath, f"threat: eps_text must be a string or number, got {eps_text!r}")
    try:
        claimed = make_threat(desc["norm"].removeprefix("masked-"), eps_text)
    except (ValueError, TypeError) as e:
        raise _bad_manifest(mpath, f"threat: {e}") from None
    if claimed.eps >= 1e6 or (claimed.norm_name == "linf" and claimed.eps > 1):
        # a claim no perturbation of [0, 1] images needs: "every ‖δ‖ ≤ 1e308" would be true and meaningless
        raise _bad_manifest(mpath, f"threat: eps {eps_text} is not a usable budget (linf above 1, or >= 1e6)")
    if desc["norm"].startswith("masked-") and "mask.npy" not in files:
        raise _bad_manifest(mpath, "the threat model is masked but the 'files' table does not name mask.npy")
    return files


def _read_npy(path: Path) -> tuple[np.ndarray, str]:
    """(array, SHA-256 of the file's bytes) from one read of one opened regular file, pickle-free.

    The header's shape and dtype must account for the file's size exactly, so a hostile header can neither
    make us allocate more than the file holds nor hide trailing bytes.
    """
    with open_regular(path) as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy version {version}")
            if dtype.hasobject:
                raise ValueError("object arrays (pickle) are not allowed")
            expected = math.prod(int(s) for s in shape) * dtype.itemsize  # Python ints: no overflow
            remaining = os.fstat(f.fileno()).st_size - f.tell()
            if remaining != expected:
                raise ValueError(f"header says {shape} {dtype} ({expected} bytes) but {remaining} bytes follow")
            f.seek(0)
            digest = sha256_stream(f)
            f.seek(0)
            arr = np.load(f, allow_pickle=False)
        except (ValueError, OSError, EOFError, SyntaxError, TypeError) as e:
            raise ValueError(f"{path}: not a plain .npy array ({e})") from e
    return arr, digest


read_npy = _read_npy  # the public name (import of .npy noise uses the same header check)


def _payload_member(d: Path, name: str) -> Path:
    try:
        return member(d, name, "payload file")
    except FileNotFoundError:
        raise FileNotFoundError(f"{d / name}: payload file missing") from None


def load_artifact(path: str | Path) -> PoisonArtifact:
    """Read an artifact (``np.load(allow_pickle=False)``); the hash check is :func:`verify_artifact`'s job.

    Only the fixed payload names are read, as regular files inside ``path``; any other ``files`` entry, a
    symlink that leaves the folder, a FIFO or a device is an error (a ``ValueError`` naming it) raised before
    any payload byte is read. The bytes hashed (``file_sha256``) are the bytes loaded.
    """
    d = Path(path)
    mpath = d / MANIFEST
    if not d.is_dir():
        raise FileNotFoundError(f"{d}: not a poison artifact (not a directory)")
    if not os.path.lexists(mpath):
        raise FileNotFoundError(f"{d}: not a poison artifact (no manifest.json)")
    manifest = parse_json(read_regular_bytes(member(d, MANIFEST, "manifest"), JSON_MAX_BYTES), mpath)
    files = _check_manifest(manifest, mpath)
    paths = {name: _payload_member(d, name) for name in files}  # every entry is checked before any is read
    arrays: dict[str, np.ndarray] = {}
    hashes: dict[str, str] = {}
    for name, p in paths.items():
        arrays[name], hashes[name] = _read_npy(p)
    images, labels = arrays["images.npy"], arrays["labels.npy"]
    if images.ndim != 4 or images.dtype not in (np.uint8, np.float32):
        raise ValueError(f"{paths['images.npy']}: expected uint8 or float32 N×C×H×W images, got {images.dtype} "
                         f"{images.shape}")
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(images):
        raise ValueError(f"{paths['labels.npy']}: expected {len(images)} integer labels, got {labels.dtype} "
                         f"{labels.shape}")
    mask = arrays.get("mask.npy")
    if mask is not None:
        try:
            if np.broadcast_shapes(mask.shape, images.shape[1:]) != images.shape[1:]:
                raise ValueError
        except ValueError:
            raise ValueError(f"{paths['mask.npy']}: mask shape {mask.shape} does not fit images of shape "
                             f"{images.shape[1:]}") from None
    art = PoisonArtifact(images, labels, manifest, arrays.get("class_deltas.npy"), mask, hashes)
    try:
        art.threat()
    except ValueError as e:
        raise ValueError(f"{paths.get('mask.npy', mpath)}: {e}") from None
    return art


def verify_artifact(path: str | Path | PoisonArtifact, clean: ArrayDataset,
                    expected: ThreatModel | None = None) -> VerifyReport:
    """Recompute every δ_i against ``clean``: payload hash, labels, [0,1] box, ‖δ_i‖ ≤ ε, source dataset.

    ``path`` is an artifact directory or an artifact returned by :func:`load_artifact` (pass the one you
    will use, so the bytes checked are the bytes trained on). With ``expected``, every δ_i is checked
    against that budget (the one the user was promised) rather than the one the manifest claims.
    """
    art = path if isinstance(path, PoisonArtifact) else load_artifact(path)
    if set(art.file_sha256) != set(art.manifest["files"]):
        raise ValueError("verify_artifact: the artifact carries no hashes of its payload as read; "
                         "pass its directory or the result of load_artifact")
    problems: list[str] = []
    files = art.file_sha256
    tampered = [n for n, h in files.items() if h != art.manifest["files"][n]]
    if tampered or payload_hash(files, art.manifest) != art.manifest.get("payload_sha256"):
        problems.append(f"payload hash mismatch in {', '.join(tampered) or 'manifest.json'}: the artifact was "
                        "changed after it was written")
    if art.manifest.get("source_sha256") != clean.sha256():
        problems.append(f"the artifact was made from a different dataset (source sha256 "
                        f"{str(art.manifest.get('source_sha256'))[:16]}…, clean set {clean.sha256()[:16]}…)")
    report = check_budget(clean, art.images, art.labels, expected if expected is not None else art.threat())
    report.problems += attack_problems(art.manifest, art.images, clean, art.labels)
    report.problems = problems + report.problems
    report.ok = not report.problems
    return report
