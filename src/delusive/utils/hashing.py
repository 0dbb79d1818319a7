"""Content hashes: the identity of datasets, artifacts, models and runs (DESIGN.md, "cached by hash")."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from enum import Enum
from pathlib import Path
from typing import Any, BinaryIO

from delusive.utils.safefile import open_regular

_CHUNK = 1 << 20


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return obj.item()
    return obj


def stable_json(obj: Any) -> str:
    """Canonical JSON (sorted keys, no whitespace): equal configs give equal strings."""
    return json.dumps(_jsonable(obj), sort_keys=True, separators=(",", ":"), allow_nan=False)


def config_hash(obj: Any, length: int = 16) -> str:
    """Short SHA-256 of a config's canonical JSON; the identity of a cached artifact or run."""
    return hashlib.sha256(stable_json(obj).encode()).hexdigest()[:length]


def sha256_bytes(*chunks: bytes) -> str:
    h = hashlib.sha256()
    for c in chunks:
        h.update(c)
    return h.hexdigest()


def sha256_stream(f: BinaryIO) -> str:
    """SHA-256 of everything left in an open binary file."""
    h = hashlib.sha256()
    while block := f.read(_CHUNK):
        h.update(block)
    return h.hexdigest()


def sha256_file(path: str | Path) -> str:
    """SHA-256 of a regular file (a FIFO or device is refused: hashing ``/dev/zero`` would never end)."""
    with open_regular(path) as f:
        return sha256_stream(f)
