"""Crafting checkpoints: long attacks save their progress so a killed run resumes where it stopped.

The checkpoint lives in the artifact's output folder, beside whatever else the user keeps there, so it
touches only its own files: ``craft_state.json`` and one ``craft_<name>.npy`` per array it saved, where
``<name>`` is a plain identifier. Clearing removes exactly those files and nothing else; loading reads them
as regular files of that folder (never a FIFO, device or a symlink out of it). Attacks leave their checkpoint
in place when they finish: :func:`clear_craft_state` removes it once the artifact it led to is written and
verified (``experiments.poisoning.make_poison``), so no failure in between loses the work.
"""

from __future__ import annotations

import io
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from delusive.utils import atomic_write_bytes, atomic_write_json
from delusive.utils.io import JSON_MAX_BYTES, parse_json
from delusive.utils.safefile import member, open_regular, read_regular_bytes

STATE = "craft_state.json"
_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")


def _array_file(name: object) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"crafting checkpoint: array name {name!r} is not a plain identifier")
    return f"craft_{name}.npy"


class CraftCheckpoint:
    """Arrays + a small JSON state in ``work_dir``, valid only for the crafting run ``identity``."""

    def __init__(self, work_dir: str | Path | None, identity: str, every_s: float | None = None) -> None:
        self.dir = Path(work_dir) if work_dir is not None else None
        self.identity = identity
        # every 30 s by default; $DELUSIVE_CHECKPOINT_EVERY_S changes it (0: after every step, for tests)
        self.every_s = float(os.environ.get("DELUSIVE_CHECKPOINT_EVERY_S", "30")) if every_s is None else every_s
        self._last = time.monotonic()
        self._written: set[str] = set()

    def _state(self) -> dict[str, Any] | None:
        """The state file's content if it is one of ours (an object listing plain array names), else None."""
        assert self.dir is not None
        path = self.dir / STATE
        if not path.exists():
            return None
        state = parse_json(read_regular_bytes(member(self.dir, STATE, "crafting checkpoint"), JSON_MAX_BYTES), path)
        if not isinstance(state, dict) or not isinstance(state.get("arrays"), list):
            raise ValueError(f"{path}: not a crafting checkpoint (expected an object with an 'arrays' list); "
                             "delete it to start crafting afresh")
        for name in state["arrays"]:
            try:
                _array_file(name)
            except ValueError as e:
                raise ValueError(f"{path}: {e}; delete it to start crafting afresh") from None
        return state

    def load(self) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        if self.dir is None:
            return None
        state = self._state()
        if state is None or state.get("identity") != self.identity:
            return None
        arrays = {}
        for name in state["arrays"]:
            path = member(self.dir, _array_file(name), "crafting checkpoint array")
            try:
                with open_regular(path) as f:
                    arrays[name] = np.load(f, allow_pickle=False)
            except (ValueError, OSError, EOFError) as e:
                raise ValueError(f"{path}: not a plain .npy array ({e}); delete {self.dir / STATE} to start "
                                 "crafting afresh") from e
        done = {k: state[k] for k in ("step", "done", "iteration") if k in state}
        print(f"resuming crafting from the checkpoint in {self.dir} ({', '.join(f'{k} {v}' for k, v in done.items())})",
              file=sys.stderr)
        return arrays, state

    def due(self) -> bool:
        return self.dir is not None and time.monotonic() - self._last >= self.every_s

    def save(self, arrays: dict[str, np.ndarray], **state: Any) -> None:
        if self.dir is None:
            return
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.save(buf, arr, allow_pickle=False)
            file = _array_file(name)
            atomic_write_bytes(self.dir / file, buf.getvalue())
            self._written.add(file)
        atomic_write_json(self.dir / STATE, {"identity": self.identity, "arrays": sorted(arrays), **state})
        self._written.add(STATE)
        self._last = time.monotonic()

    def clear(self) -> None:
        """Remove the checkpoint's own files (those this object wrote and those its state file lists).

        Attacks do not call this when they finish: :func:`clear_craft_state` removes the checkpoint once the
        artifact it led to is complete and verified on disk, so no failure in between loses the work."""
        if self.dir is None:
            return
        ours = set(self._written)
        try:
            state = self._state()
        except ValueError:  # an unreadable state file: remove only what this object wrote
            state = None
        if state is not None:
            ours |= {STATE, *(_array_file(n) for n in state["arrays"])}
        for file in sorted(ours, key=lambda f: f == STATE):  # the state file last: it names the arrays
            (self.dir / file).unlink(missing_ok=True)
        self._written.clear()


_ARRAY_FILE = re.compile(r"craft_[A-Za-z0-9_]{1,64}\.npy")


def clear_craft_state(work_dir: str | Path) -> None:
    """Remove every crafting-checkpoint file of ``work_dir``: ``craft_state.json`` and the ``craft_<name>.npy``
    arrays (those it lists and those of older slots). Called once the artifact is written and verified."""
    d = Path(work_dir)
    if not d.is_dir():
        return
    for p in d.iterdir():
        if _ARRAY_FILE.fullmatch(p.name) and not p.is_dir():
            p.unlink(missing_ok=True)
    (d / STATE).unlink(missing_ok=True)  # last: it names the arrays


def pack_tensors(ts: list[torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
    """Every tensor of ``ts`` flattened into one float32 and one int64 array (order kept): a model's or an
    optimiser's state as two plain arrays a crafting checkpoint stores without pickle."""
    fl = [t.detach().cpu().reshape(-1).float().numpy() for t in ts if t.is_floating_point()]
    it = [t.detach().cpu().reshape(-1).long().numpy() for t in ts if not t.is_floating_point()]
    return (np.concatenate(fl) if fl else np.zeros(0, np.float32),
            np.concatenate(it) if it else np.zeros(0, np.int64))


def unpack_tensors(ts: list[torch.Tensor], fl: np.ndarray, it: np.ndarray, what: str = "checkpoint",
                   hint: str = "") -> None:
    """Copy the values of :func:`pack_tensors`'s arrays back into ``ts`` in place; arrays of another size are
    refused naming ``what`` (and ``hint``, the remedy, when given)."""
    need_f = sum(t.numel() for t in ts if t.is_floating_point())
    need_i = sum(t.numel() for t in ts if not t.is_floating_point())
    if fl.shape != (need_f,) or it.shape != (need_i,):
        raise ValueError(f"{what}: holds {fl.size}+{it.size} values, the model needs {need_f}+{need_i}"
                         + (f"; {hint}" if hint else ""))
    of = oi = 0
    with torch.no_grad():
        for t in ts:
            k = t.numel()
            if t.is_floating_point():
                src, of = fl[of:of + k], of + k
            else:
                src, oi = it[oi:oi + k], oi + k
            t.copy_(torch.from_numpy(np.ascontiguousarray(src)).view(t.shape))
