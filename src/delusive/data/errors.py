"""Data errors: a malformed file names the file; a missing dataset says where we looked and how to get it."""

from __future__ import annotations

from delusive.utils.safefile import PathError


class DataError(PathError):
    """A malformed dataset file (bad magic, truncated, wrong shape, label out of range, refused pickle).

    The message begins with the file's path (or URL), then the problem; ``path`` keeps the path alone.
    """


class DataNotFoundError(FileNotFoundError):
    """The dataset's files are not where we looked; the message says where we looked and how to get them."""
