"""A small, strict reader and writer of the safetensors format (the field's pickle-free weights file).

The format (huggingface/safetensors, "format" section of its README): an 8-byte little-endian unsigned header
length N, then N bytes of UTF-8 JSON mapping each tensor name to ``{"dtype", "shape", "data_offsets": [b, e]}``
(offsets into the byte buffer that follows the header) plus an optional ``"__metadata__"`` map of str → str,
then the raw little-endian tensor bytes. Nothing in it is executable, so reading a stranger's file runs no
code. We implement it here (about a hundred lines) instead of depending on the ``safetensors`` package; the
test suite checks both directions against the real library when it is installed (the ``dev`` extra).

The reader trusts nothing: the header length must fit the file, the JSON must be an object of well-formed
entries, every dtype must be known, every tensor's byte range must match its shape and dtype, and the ranges
must tile the buffer exactly (no gaps, no overlaps, no trailing bytes). Any violation is a one-line
``ValueError`` naming the file.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import torch

from delusive.utils import atomic_write_bytes
from delusive.utils.safefile import open_regular

# safetensors dtype name ↔ torch dtype (bytes per element follow from the torch dtype)
DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
_NAMES = {v: k for k, v in DTYPES.items()}
_MAX_HEADER = 100 * 1024 * 1024  # the reference implementation's limit


def tensors_to_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """The safetensors encoding of ``tensors`` (in name order) with ``metadata`` (str → str) in the header."""
    header: dict[str, object] = {}
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise ValueError("safetensors metadata: keys and values must be strings")
        header["__metadata__"] = dict(metadata)
    chunks: list[bytes] = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        if t.dtype not in _NAMES:
            raise ValueError(f"safetensors: tensor {name!r} has unsupported dtype {t.dtype}")
        # bf16 has no numpy dtype: view the bytes (flattened first: a 0-dim tensor, e.g. BatchNorm's
        # num_batches_tracked, cannot change its element size in place)
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # pad so the buffer starts 8-byte aligned, as the reference writer does
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def save_file(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Atomically write ``tensors`` to ``path`` in the safetensors format."""
    atomic_write_bytes(path, tensors_to_bytes(tensors, metadata))


def _bad(path: str | Path, problem: str) -> ValueError:
    return ValueError(f"{path}: not a valid safetensors file ({problem})")


def tensors_from_bytes(data: bytes, path: str | Path = "<bytes>") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors on the CPU, metadata) decoded from safetensors ``data``; ``path`` names it in errors."""
    if len(data) < 8:
        raise _bad(path, f"{len(data)} bytes, shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", data[:8])
    if n > _MAX_HEADER or 8 + n > len(data):
        raise _bad(path, f"header length {n} does not fit the file's {len(data)} bytes")
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise _bad(path, f"header is not UTF-8 JSON: {e}") from None
    if not isinstance(header, dict):
        raise _bad(path, "header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise _bad(path, "__metadata__ must map strings to strings")
    buf = memoryview(data)[8 + n :]
    spans: list[tuple[int, int, str]] = []
    out: dict[str, torch.Tensor] = {}
    for name, entry in header.items():
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise _bad(path, f"entry {name!r} must hold exactly dtype, shape and data_offsets")
        dtype, shape, offs = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in DTYPES:
            raise _bad(path, f"entry {name!r}: unknown dtype {dtype!r} (known: {', '.join(DTYPES)})")
        if not isinstance(shape, list) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                                  for s in shape):
            raise _bad(path, f"entry {name!r}: shape must be a list of non-negative integers, got {shape!r}")
        if not (isinstance(offs, list) and len(offs) == 2 and all(isinstance(o, int) and not isinstance(o, bool)
                                                                   for o in offs) and 0 <= offs[0] <= offs[1]):
            raise _bad(path, f"entry {name!r}: data_offsets must be [begin, end] with 0 <= begin <= end")
        tdtype = DTYPES[dtype]
        itemsize = _itemsize(tdtype)
        expected = int(np.prod(shape, dtype=np.int64)) * itemsize
        if offs[1] - offs[0] != expected:
            raise _bad(path, f"entry {name!r}: {offs[1] - offs[0]} bytes for shape {shape} {dtype} ({expected})")
        if offs[1] > len(buf):
            raise _bad(path, f"entry {name!r}: data_offsets end {offs[1]} beyond the {len(buf)}-byte buffer")
        spans.append((offs[0], offs[1], name))
        raw = bytearray(buf[offs[0] : offs[1]])  # a private, writable copy: the tensor owns its bytes
        flat = torch.frombuffer(raw, dtype=torch.uint8) if raw else torch.as_tensor(np.zeros(0, np.uint8))
        out[name] = flat.view(tdtype).reshape(shape) if raw else _empty(tdtype, shape)
    position = 0
    for begin, end, name in sorted(spans):
        if begin != position:
            raise _bad(path, f"entry {name!r} starts at byte {begin}, expected {position} (gap or overlap)")
        position = end
    if position != len(buf):
        raise _bad(path, f"{len(buf) - position} trailing bytes after the last tensor")
    return out, dict(meta)


def _itemsize(dtype: torch.dtype) -> int:
    return 1 if dtype == torch.bool else (torch.finfo(dtype).bits if dtype.is_floating_point
                                          else torch.iinfo(dtype).bits) // 8


def _empty(dtype: torch.dtype, shape: list[int]) -> torch.Tensor:
    return torch.as_tensor(np.zeros(shape, dtype=np.uint8)).to(dtype)


def load_file(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of the safetensors file at ``path`` (a regular file; see the module docstring)."""
    with open_regular(path) as f:
        data = f.read()
    return tensors_from_bytes(data, path)
