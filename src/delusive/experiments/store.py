"""The content-addressed run store of a sweep directory.

``RUNDIR/cells/<cell_id>/`` holds a cell's checkpoint, model and, once finished, ``result.json`` (written
last, so its presence marks a finished cell); ``RUNDIR/artifacts/<poison_id>/`` the poison artifacts shared by
cells; ``RUNDIR/cache/`` crafting models; ``RUNDIR/report/`` tables and figures; ``RUNDIR/locks/`` one lock file per
cell, artifact and crafting model, and beside each an append-only log of who ran it.

Concurrency: several sweeps (local processes or Ray workers on many hosts sharing the directory) may write one
run directory at once. Each unit of work is *claimed* with an exclusive ``flock`` on its lock file before it
runs; the kernel drops the lock when its holder dies, so a killed worker never leaves a stale claim and a rerun
simply takes the work over. Every write is atomic (temporary file, then rename), so readers never see half a
file. ``flock`` works on local disks and on NFSv4 / Lustre / GPFS mounts with locking enabled (the usual
setting on clusters); see docs/scale.md.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from delusive.utils import atomic_write_json, config_hash, read_json
from delusive.utils.safefile import read_regular_bytes


def git_commit() -> str | None:
    """The commit of the delusive source tree, if it is a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                           capture_output=True, text=True, timeout=5).stdout.strip()
    return out.stdout.strip() + ("+dirty" if dirty else "")


class RunStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def cell_dir(self, cell_id: str) -> Path:
        return self.root / "cells" / cell_id

    def artifact_dir(self, poison_config: dict[str, Any]) -> Path:
        return self.root / "artifacts" / config_hash(poison_config)

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @property
    def report_dir(self) -> Path:
        return self.root / "report"

    def is_done(self, cell_id: str) -> bool:
        return (self.cell_dir(cell_id) / "result.json").exists()

    def write_result(self, cell_id: str, record: dict[str, Any]) -> None:
        atomic_write_json(self.cell_dir(cell_id) / "result.json", record)

    @property
    def lock_dir(self) -> Path:
        return self.root / "locks"

    @contextlib.contextmanager
    def claim(self, kind: str, key: str, blocking: bool = True) -> Iterator[bool]:
        """Hold the exclusive claim on unit ``kind``/``key`` (a cell, artifact or crafting model) for the
        duration of the block; yields whether it was obtained (always True when ``blocking``)."""
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_dir / f"{kind}-{key}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def is_claimed(self, kind: str, key: str) -> bool:
        """Whether some process holds the unit's claim right now (a running cell, for progress)."""
        if not (self.lock_dir / f"{kind}-{key}.lock").exists():
            return False
        with self.claim(kind, key, blocking=False) as got:
            return not got

    def log_attempt(self, kind: str, key: str, event: str = "start") -> None:
        """Append one line (event, host, pid, time) to the unit's log: how often a unit was really run."""
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"event": event, "host": socket.gethostname(), "pid": os.getpid(), "time": time.time()})
        fd = os.open(self.lock_dir / f"{kind}-{key}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)

    def attempts(self, kind: str, key: str) -> list[dict[str, Any]]:
        """The logged events of a unit, oldest first."""
        p = self.lock_dir / f"{kind}-{key}.log"
        if not p.exists():
            return []
        text = read_regular_bytes(p, 64 * 2**20).decode("utf-8", errors="replace")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def records(self, current_only: bool = True) -> list[dict[str, Any]]:
        """Finished cells' records: by default only those of the latest sweep in this directory (cells.json),
        so a rerun with other settings is never averaged with the old cells."""
        ids = None
        if current_only and (self.root / "cells.json").exists():
            ids = set(read_json(self.root / "cells.json"))
        out = []
        for p in sorted((self.root / "cells").glob("*/result.json")):
            if ids is None or p.parent.name in ids:
                out.append(read_json(p))
        return out
