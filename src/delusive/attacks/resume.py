"""Crafting checkpoints: long attacks save their progress so a killed run resumes where it stopped."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import numpy as np

from delusive.utils import atomic_write_bytes, atomic_write_json, read_json


class CraftCheckpoint:
    """Arrays + a small JSON state in ``work_dir``, valid only for the crafting run ``identity``."""

    def __init__(self, work_dir: str | Path | None, identity: str, every_s: float = 30.0) -> None:
        self.dir = Path(work_dir) if work_dir is not None else None
        self.identity = identity
        self.every_s = every_s
        self._last = time.monotonic()

    def load(self) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        if self.dir is None or not (self.dir / "craft_state.json").exists():
            return None
        state = read_json(self.dir / "craft_state.json")
        if state.get("identity") != self.identity:
            return None
        arrays = {}
        for name in state["arrays"]:
            arrays[name] = np.load(self.dir / f"craft_{name}.npy", allow_pickle=False)
        return arrays, state

    def due(self) -> bool:
        return self.dir is not None and time.monotonic() - self._last >= self.every_s

    def save(self, arrays: dict[str, np.ndarray], **state: Any) -> None:
        if self.dir is None:
            return
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.save(buf, arr, allow_pickle=False)
            atomic_write_bytes(self.dir / f"craft_{name}.npy", buf.getvalue())
        atomic_write_json(self.dir / "craft_state.json", {"identity": self.identity, "arrays": sorted(arrays),
                                                          **state})
        self._last = time.monotonic()

    def clear(self) -> None:
        if self.dir is None:
            return
        for p in self.dir.glob("craft_*"):
            p.unlink()
