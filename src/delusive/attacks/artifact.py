"""``PoisonArtifact``: a self-describing poisoned training set on disk, with no pickle anywhere.

Layout of an artifact directory: ``images.npy`` (uint8 or float32, N×C×H×W), ``labels.npy`` (int64, equal
to the clean labels), ``class_deltas.npy`` (P3-P5: the K class perturbations), ``mask.npy`` (region-masked
threat models only) and ``manifest.json`` (attack, threat model with ε as given, dataset and its hash,
crafting-model hash, seed, storage mode, realised norms, version, payload SHA-256). Every budget check runs
before anything is written, so a broken attack can never leave an over-budget artifact behind.

uint8 storage rounds each δ toward zero in 1/255 steps (DESIGN.md, Pitfall 2): |δ_q| ≤ |δ| per pixel, so
the stored image never leaves the ball, unlike the reference's truncation of x + δ.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import delusive
from delusive.data import ArrayDataset
from delusive.threat import Masked, ThreatModel, make_threat
from delusive.utils import (
    atomic_write_bytes,
    atomic_write_json,
    read_json,
    sha256_bytes,
    sha256_file,
    stable_json,
)

FORMAT = "delusive-poison/1"
STORAGES = ("uint8", "float32")
PAYLOAD_FILES = ("images.npy", "labels.npy", "class_deltas.npy", "mask.npy")
ABS_TOL = 1e-5  # float32 round-off allowance when recomputing δ from stored float images


class BudgetError(ValueError):
    """The perturbed set breaks its contract (labels changed, box or ε exceeded)."""


@dataclass
class PoisonArtifact:
    images: np.ndarray
    labels: np.ndarray
    manifest: dict[str, Any]
    class_deltas: np.ndarray | None = None
    mask: np.ndarray | None = None

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


def _as_float(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)


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
    norms = np.empty(len(xp), dtype=np.float64)
    clean_f = clean.float_x()
    inside = np.ones(len(xp), dtype=bool)
    for i in range(0, len(xp), 4096):
        d = torch.from_numpy(xp[i : i + 4096] - clean_f[i : i + 4096])
        norms[i : i + 4096] = threat.norm(d).double().numpy()
        if isinstance(threat, Masked):
            outside = (d * (1 - threat.mask)).flatten(1).abs().amax(1) <= tol
            inside[i : i + 4096] = outside.numpy()
    over = np.flatnonzero(norms > threat.eps + tol)
    if over.size:
        offending["over_budget"] = over.tolist()
        problems.append(f"{over.size} perturbation(s) exceed {threat.norm_name} eps={threat.eps_text} "
                        f"(max norm {norms.max():.6g}), e.g. indices {_head(over)}")
    if not inside.all():
        bad = np.flatnonzero(~inside)
        offending["outside_mask"] = bad.tolist()
        problems.append(f"{bad.size} perturbation(s) change pixels outside the mask, e.g. indices {_head(bad)}")
    stats = {"min": float(norms.min(initial=0)), "mean": float(norms.mean()) if len(norms) else 0.0,
             "max": float(norms.max(initial=0)),
             "at_budget_fraction": float((norms >= threat.eps * (1 - 1e-3)).mean()) if len(norms) else 0.0}
    return VerifyReport(not problems, problems, offending, stats)


def _head(idx: np.ndarray, k: int = 10) -> str:
    shown = ", ".join(map(str, idx[:k].tolist()))
    return f"[{shown}{', ...' if idx.size > k else ''}]"


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def build_artifact(clean: ArrayDataset, poisoned: np.ndarray, threat: ThreatModel, *, attack: str,
                   attack_params: dict[str, Any], dataset: str, seed: int, storage: str = "uint8",
                   class_deltas: np.ndarray | None = None, crafting_model: dict[str, Any] | None = None,
                   extra: dict[str, Any] | None = None) -> PoisonArtifact:
    """Store ``poisoned`` in ``storage`` mode, check labels and budget (raising :class:`BudgetError` before
    anything is written) and describe it in a manifest."""
    if storage not in STORAGES:
        raise ValueError(f"storage: expected one of {', '.join(STORAGES)}, got {storage!r}")
    if poisoned.shape != clean.x.shape:
        raise BudgetError(f"attack {attack}: produced shape {poisoned.shape}, clean set has {clean.x.shape}")
    if poisoned.dtype == np.uint8 and storage == "float32":
        poisoned = poisoned.astype(np.float32) / 255.0
    if storage == "uint8":
        if clean.x.dtype != np.uint8:
            raise ValueError("storage uint8 needs a clean set stored as uint8; use --storage float32")
        images = quantise_toward_clean(clean.x, poisoned)
    else:
        images = np.clip(poisoned.astype(np.float32), 0.0, 1.0)
    labels = clean.y.astype(np.int64).copy()
    report = check_budget(clean, images, labels, threat)
    if not report.ok:
        raise BudgetError(f"attack {attack}: refusing to write an artifact that breaks its budget: "
                          + "; ".join(report.problems))
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
    art = PoisonArtifact(images, labels, manifest, class_deltas, mask)
    art._payload = payload  # type: ignore[attr-defined]
    return art


def payload_hash(files: dict[str, str], manifest: dict[str, Any]) -> str:
    """SHA-256 over every payload file's hash *and* every manifest field (but this hash itself), so neither
    an image nor a claimed budget can be edited without ``verify`` noticing."""
    body = {k: v for k, v in manifest.items() if k != "payload_sha256"}
    lines = "".join(f"{k}:{v}\n" for k, v in sorted(files.items()))
    return sha256_bytes(lines.encode(), stable_json(body).encode())


def save_artifact(art: PoisonArtifact, out_dir: str | Path) -> Path:
    """Write the payload files, then the manifest last (its presence marks a complete artifact)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = getattr(art, "_payload", None) or {
        "images.npy": _npy_bytes(art.images), "labels.npy": _npy_bytes(art.labels),
        **({"class_deltas.npy": _npy_bytes(art.class_deltas)} if art.class_deltas is not None else {}),
        **({"mask.npy": _npy_bytes(art.mask)} if art.mask is not None else {}),
    }
    for name in PAYLOAD_FILES:
        if name not in payload and (out / name).exists():
            (out / name).unlink()
    for name, data in payload.items():
        atomic_write_bytes(out / name, data)
    atomic_write_json(out / "manifest.json", art.manifest)
    return out


def load_artifact(path: str | Path) -> PoisonArtifact:
    """Read an artifact (``np.load(allow_pickle=False)``); the hash check is :func:`verify_artifact`'s job."""
    d = Path(path)
    if not (d / "manifest.json").exists():
        raise FileNotFoundError(f"{d}: not a poison artifact (no manifest.json)")
    manifest = read_json(d / "manifest.json")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{d / 'manifest.json'}: unknown format {manifest.get('format')!r}, expected {FORMAT}")

    def arr(name: str) -> np.ndarray | None:
        p = d / name
        if not isinstance(manifest.get("files"), dict) or "images.npy" not in manifest["files"]:
            raise ValueError(f"{d / 'manifest.json'}: no 'files' table naming the payload")
        if name not in manifest["files"]:
            return None
        if not p.exists():
            raise FileNotFoundError(f"{p}: payload file missing")
        try:
            return np.load(p, allow_pickle=False)
        except ValueError as e:
            raise ValueError(f"{p}: not a plain .npy array ({e})") from e

    images, labels = arr("images.npy"), arr("labels.npy")
    assert images is not None and labels is not None
    return PoisonArtifact(images, labels, manifest, arr("class_deltas.npy"), arr("mask.npy"))


def verify_artifact(path: str | Path, clean: ArrayDataset, expected: ThreatModel | None = None) -> VerifyReport:
    """Recompute every δ_i against ``clean``: payload hash, labels, [0,1] box, ‖δ_i‖ ≤ ε, source dataset.

    With ``expected``, every δ_i is checked against that budget (the one the user was promised) rather
    than the one the manifest claims.
    """
    d = Path(path)
    art = load_artifact(d)
    problems: list[str] = []
    files = {name: sha256_file(d / name) for name in art.manifest["files"]}
    tampered = [n for n, h in files.items() if h != art.manifest["files"][n]]
    if tampered or payload_hash(files, art.manifest) != art.manifest.get("payload_sha256"):
        problems.append(f"payload hash mismatch in {', '.join(tampered) or 'manifest.json'}: the artifact was "
                        "changed after it was written")
    if art.manifest.get("source_sha256") != clean.sha256():
        problems.append(f"the artifact was made from a different dataset (source sha256 "
                        f"{str(art.manifest.get('source_sha256'))[:16]}…, clean set {clean.sha256()[:16]}…)")
    report = check_budget(clean, art.images, art.labels, expected if expected is not None else art.threat())
    report.problems = problems + report.problems
    report.ok = not report.problems
    return report
