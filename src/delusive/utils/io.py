"""Atomic writes: an artifact on disk is either the old one or the complete new one, never half-written.

Files are created with the permissions the user's umask gives any new file (``0o666 & ~umask``), not the
``0o600`` of the temporary file they start as, so a shared cache or artifact stays readable to whoever the
user meant to share it with.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from delusive.utils.hashing import _jsonable
from delusive.utils.safefile import read_regular_bytes


def current_umask() -> int:
    """The process's umask, read without changing it where the OS allows (Linux ``/proc``)."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", encoding="ascii",
                                                          errors="replace") as f:
        for line in f:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    old = os.umask(0o022)  # elsewhere: the only portable way to read it is to set it and put it back
    os.umask(old)
    return old


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on clean exit fsync it and rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:  # name the file the user asked for, not the temporary name it would have had
        raise OSError(e.errno, e.strerror, str(path)) from None
    try:
        perms = 0o666 & ~current_umask()
        if hasattr(os, "fchmod"):
            os.fchmod(fd, perms)
        else:  # pragma: no cover - Windows
            os.chmod(tmp, perms)
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_write(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_write(path, "w") as f:
        f.write(text)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(_jsonable(obj), indent=2, sort_keys=True, allow_nan=False) + "\n")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(data: bytes | str, source: str | Path) -> Any:
    """Strict JSON (no NaN / Infinity, which we never write); a bad document is a ValueError naming ``source``."""
    try:
        return json.loads(data, parse_constant=_no_constant)
    except UnicodeDecodeError as e:
        raise ValueError(f"{source}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except ValueError as e:  # JSONDecodeError is a ValueError
        raise ValueError(f"{source}: invalid JSON ({e})") from None
    except RecursionError:
        raise ValueError(f"{source}: invalid JSON (nested too deeply)") from None


JSON_MAX_BYTES = 64 * 2**20  # records (config, metrics, model descriptions) are kilobytes; 64 MiB is absurd


def read_json(path: str | Path, max_bytes: int = JSON_MAX_BYTES) -> Any:
    """Parse a JSON file: a regular file only (a FIFO or device is refused rather than read forever) of at
    most ``max_bytes`` (a record swapped for a huge file is refused before it fills memory)."""
    return parse_json(read_regular_bytes(path, max_bytes), path)
