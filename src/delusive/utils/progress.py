"""Progress bars for long work (training, crafting, sweeps), silenced with DELUSIVE_PROGRESS=0."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress_enabled() -> bool:
    return os.environ.get("DELUSIVE_PROGRESS", "1") not in ("0", "false", "no")


def progress(iterable: Iterable[T] | None = None, **kwargs: Any) -> tqdm:
    """A tqdm bar on stderr; disabled when DELUSIVE_PROGRESS=0 (tests, CI logs)."""
    kwargs.setdefault("disable", not progress_enabled())
    kwargs.setdefault("file", sys.stderr)
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("leave", False)
    return tqdm(iterable, **kwargs)
