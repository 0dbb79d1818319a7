"""The content-addressed run store of a sweep directory.

``RUNDIR/cells/<cell_id>/`` holds a cell's checkpoint, model and, once finished, ``result.json`` (written
last, so its presence marks a finished cell); ``RUNDIR/artifacts/<poison_id>/`` the poison artifacts shared by
cells; ``RUNDIR/cache/`` crafting models; ``RUNDIR/report/`` tables and figures.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from delusive.utils import atomic_write_json, config_hash, read_json


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
