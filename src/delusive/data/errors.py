"""Data errors: a malformed file names the file; a missing dataset says how to obtain it."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """A malformed dataset file (bad magic, truncated, wrong shape, label out of range)."""

    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)


class DataNotFoundError(FileNotFoundError):
    """The dataset's files are not where we looked; the message says where we looked and how to get them."""
