"""Save and load trained models without pickle: ``model.pt`` (state dict) + ``model.json`` (how to build it)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from torch import nn

from delusive.models.registry import create_model
from delusive.utils import atomic_write, atomic_write_bytes, atomic_write_json, read_json, sha256_bytes


def state_dict_bytes(model: nn.Module) -> bytes:
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, buf)
    return buf.getvalue()


def model_hash(model: nn.Module) -> str:
    """SHA-256 of the model's weights (canonical, contiguous CPU tensors in state-dict order)."""
    h = []
    for k, v in model.state_dict().items():
        t = v.detach().cpu().contiguous()
        h.append(k.encode())
        h.append(str(t.dtype).encode() + str(tuple(t.shape)).encode())
        h.append(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return sha256_bytes(*h)


def save_model(model: nn.Module, path: str | Path, spec: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
    """Write ``path`` (weights) and ``path`` with suffix .json: ``spec`` = create_model kwargs + provenance."""
    path = Path(path)
    for key in ("arch", "num_classes", "in_channels", "image_size"):
        if key not in spec:
            raise ValueError(f"save_model: spec must contain {key!r}")
    atomic_write_bytes(path, state_dict_bytes(model))
    meta = dict(spec)
    meta["weights_sha256"] = model_hash(model)
    if extra:
        meta.update(extra)
    atomic_write_json(path.with_suffix(".json"), meta)


def load_model(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a saved model in eval mode (``torch.load(weights_only=True)``) and return it with its spec."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    meta_path = path.with_suffix(".json")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such model file")
    if not meta_path.exists():
        raise FileNotFoundError(f"{meta_path}: model description missing (written beside model.pt by save_model)")
    meta = read_json(meta_path)
    model = create_model(meta["arch"], meta["num_classes"], meta["in_channels"], meta["image_size"], seed=None)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as e:  # noqa: BLE001 - any unpickling / shape error means a bad file
        raise ValueError(f"{path}: not a valid delusive model checkpoint ({e})") from e
    model.eval()
    return model, meta


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Atomically write a training checkpoint (tensors, numbers, strings, lists and dicts only)."""
    with atomic_write(path, "wb") as f:
        torch.save(payload, f)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)
