"""Data errors: a malformed file names the file; a missing dataset says where we looked and how to get it."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """A malformed dataset file (bad magic, truncated, wrong shape, label out of range, refused pickle).

    The message begins with the file's path (or URL), then the problem; ``path`` keeps the path alone.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return type(self), (self.path, self.problem)


class DataNotFoundError(FileNotFoundError):
    """The dataset's files are not where we looked; the message says where we looked and how to get them."""
