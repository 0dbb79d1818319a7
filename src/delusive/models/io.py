"""Save and load trained models without pickle: ``model.safetensors`` (weights, the field's pickle-free format)
+ ``model.json`` (how to build it: ``arch``, ``num_classes``, ``in_channels``, ``image_size``, ``class_names``).
Older runs wrote ``model.pt`` (a ``torch.save`` state dict); it is still read, with ``weights_only=True``.

A model file may come from someone else (``--crafting-model``, ``delusive eval``), so loading trusts neither
file: ``torch.load(weights_only=True)`` refuses any pickled object other than tensors and plain containers
(the payload never runs), only regular files are opened, and the weights must hash to the
``weights_sha256`` that ``save_model`` recorded in ``model.json``, so weights edited after saving are
refused. Every refusal is a ``ValueError`` naming the file, one line long.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from delusive.models.registry import create_model
from delusive.models.safetensors_format import load_file, tensors_to_bytes
from delusive.utils import atomic_write, atomic_write_bytes, atomic_write_json, read_json, sha256_bytes
from delusive.utils.safefile import UnsafeFileError, open_regular

#: file names tried, in order, when a model is given as a directory
MODEL_FILES = ("model.safetensors", "model.pt")
_UNPICKLER = re.compile(r"WeightsUnpickler error:\s*(.*?)(?:\s+was not an allowed global|\.\s|\n|$)")


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


def model_file(path: str | Path) -> Path:
    """The weights file ``path`` names: itself, or in a directory ``model.safetensors`` else ``model.pt``."""
    path = Path(path)
    if not path.is_dir():
        return path
    for name in MODEL_FILES:
        if (path / name).exists():
            return path / name
    return path / MODEL_FILES[0]


def save_model(model: nn.Module, path: str | Path, spec: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
    """Write ``path`` (weights: safetensors for a ``.safetensors`` suffix, else a ``torch.save`` state dict) and
    ``path`` with suffix .json: ``spec`` = create_model kwargs + provenance, and ``weights_sha256``
    (:func:`model_hash`), which :func:`load_model` checks. The safetensors header carries the same description
    as string metadata (``delusive_config``), so the weights file alone still says how to build the model."""
    path = Path(path)
    for key in ("arch", "num_classes", "in_channels", "image_size"):
        if key not in spec:
            raise ValueError(f"save_model: spec must contain {key!r}")
    meta = dict(spec)
    if extra:
        meta.update(extra)
    meta["weights_sha256"] = model_hash(model)  # last: provenance in ``extra`` cannot overwrite it
    if path.suffix == ".safetensors":
        import json

        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        atomic_write_bytes(path, tensors_to_bytes(state, {"format": "pt", "delusive_config": json.dumps(
            meta, sort_keys=True, default=str)}))
    else:
        atomic_write_bytes(path, state_dict_bytes(model))
    atomic_write_json(path.with_suffix(".json"), meta)


def _why(e: BaseException) -> str:
    """One line on why ``torch.load`` refused a file (torch's own message spans paragraphs)."""
    text = str(e)
    m = _UNPICKLER.search(text)
    if m:
        return f"refusing to unpickle it: {m.group(1).strip()} (only tensors and plain containers are allowed)"
    if "Weights only load failed" in text or isinstance(e, EOFError):
        return "not a torch.save file of tensors (it could not be read with weights_only=True)"
    first = " ".join(text.split())
    return f"{type(e).__name__}: {first[:200]}{'…' if len(first) > 200 else ''}"


def _torch_load(path: Path, what: str) -> Any:
    """``torch.load(weights_only=True)`` of a regular file; any failure is a one-line ValueError naming it."""
    try:
        with open_regular(path) as f:
            return torch.load(f, map_location="cpu", weights_only=True)
    except (FileNotFoundError, UnsafeFileError):
        raise
    except Exception as e:  # noqa: BLE001 - any unpickling / format error means a bad file
        raise ValueError(f"{path}: not a valid delusive {what} ({_why(e)})") from e


def load_state_dict_file(path: str | Path, what: str = "state dict") -> Any:
    """The content of a ``torch.save`` file read with ``weights_only=True`` (tensors and plain containers only;
    anything else is a one-line ValueError naming the file): for weights saved by other people's code."""
    return _torch_load(Path(path), what)


def load_model(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a saved model in eval mode and return it with its spec, refusing a file whose weights do not
    hash to the ``weights_sha256`` recorded when it was saved. ``path`` is a weights file (``.safetensors`` or
    ``.pt``) or a directory holding ``model.safetensors`` (preferred) or ``model.pt``."""
    path = model_file(path)
    meta_path = path.with_suffix(".json")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such model file")
    if not meta_path.exists():
        raise FileNotFoundError(f"{meta_path}: model description missing (written beside model.pt by save_model)")
    meta = read_json(meta_path)
    if not isinstance(meta, dict):
        raise ValueError(f"{meta_path}: expected a JSON object describing the model")
    try:
        model = create_model(meta["arch"], meta["num_classes"], meta["in_channels"], meta["image_size"], seed=None)
    except (KeyError, ValueError, TypeError) as e:
        raise ValueError(f"{meta_path}: cannot build the described model ({type(e).__name__}: {e})") from None
    if path.suffix == ".safetensors":
        try:
            state, _ = load_file(path)
        except UnsafeFileError:
            raise
        except ValueError as e:
            raise ValueError(f"{path}: not a valid delusive model checkpoint ({e})") from None
    else:
        state = _torch_load(path, "model checkpoint")
    try:
        model.load_state_dict(state)
    except Exception as e:  # noqa: BLE001 - missing / unexpected keys, wrong shapes, not a dict
        raise ValueError(f"{path}: not a valid delusive model checkpoint ({_why(e)})") from e
    recorded = meta.get("weights_sha256")
    if not isinstance(recorded, str):
        raise ValueError(f"{meta_path}: no weights_sha256: cannot check {path.name}'s weights (re-save the model)")
    if model_hash(model) != recorded:
        raise ValueError(f"{path}: the weights do not match the weights_sha256 recorded in {meta_path.name} "
                         "(the file was changed after it was saved)")
    model.eval()
    return model, meta


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Atomically write a training checkpoint (tensors, numbers, strings, lists and dicts only)."""
    with atomic_write(path, "wb") as f:
        torch.save(payload, f)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A training checkpoint written by :func:`save_checkpoint` (``weights_only=True``: nothing executes).

    A corrupt, foreign or malicious file is a ``ValueError`` naming it, like a bad model file.
    """
    path = Path(path)
    state = _torch_load(path, "training checkpoint")
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a valid delusive training checkpoint (expected a dict, got "
                         f"{type(state).__name__})")
    return state
