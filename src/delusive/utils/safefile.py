"""Reading files that came from someone else (poison artifacts, PNG folders, model files) without trusting them.

A file named by an untrusted table (an artifact's manifest, a ``labels.csv``) must be a relative name inside
its folder, with no ``..`` and no absolute path, that resolves (following symlinks) to a *regular* file inside
that folder. Anything else — a FIFO that blocks forever, ``/dev/zero`` that never ends, ``/etc/passwd`` — is
refused by name before a single byte is read. Files are opened non-blocking and checked with ``fstat`` on the
open descriptor, so the file that is read is the one that was checked.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import BinaryIO

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


class PathError(ValueError):
    """A problem with one file: the message is the path, then the problem; ``path`` and ``problem`` keep both."""

    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return type(self), (self.path, self.problem)


class UnsafeFileError(PathError):
    """A file an untrusted table names is not a regular file inside its folder (message: path, then why)."""


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot name a file inside a folder (absolute, ``..``, empty, not text), or None if it can."""
    if not isinstance(name, str) or not name or name in (".", "./"):
        return f"{name!r} is not a file name"
    if "\x00" in name:
        return f"{name!r} contains a NUL byte"
    if os.path.isabs(name) or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return f"{name!r} is an absolute path (only names inside the folder are allowed)"
    if ".." in name.replace("\\", "/").split("/"):
        return f"{name!r} contains '..' (only names inside the folder are allowed)"
    return None


def check_regular(path: str | Path) -> Path:
    """``path`` itself (not resolved) after checking that it is, or links to, a regular file.

    Raises :class:`FileNotFoundError` if it does not exist and :class:`UnsafeFileError` if it is a FIFO,
    device, directory or socket (directly or through a symlink).
    """
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except OSError as e:  # symlink loop, name too long, permission
        raise UnsafeFileError(path, f"cannot be read ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        via = f" (symlink to {os.path.realpath(path)})" if os.path.islink(path) else ""
        raise UnsafeFileError(path, f"not a regular file: {_kind(st.st_mode)}{via}")
    return path


def member(root: str | Path, name: object, what: str = "entry") -> Path:
    """``root/name`` after checking that ``name`` is a plain relative name and that it resolves to a regular
    file inside ``root`` (symlinks are followed, and must stay inside ``root``).

    ``what`` names the table entry in messages (e.g. ``"manifest 'files' entry"``). A missing file raises
    :class:`FileNotFoundError`; every other refusal is an :class:`UnsafeFileError` (a ``ValueError``).
    """
    root = Path(root)
    problem = name_problem(name)
    if problem is not None:
        raise UnsafeFileError(root, f"{what} {problem}")
    assert isinstance(name, str)
    path = root / name
    check_regular(path)
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    if os.path.commonpath([real_root, real]) != real_root:
        raise UnsafeFileError(path, f"{what} {name!r} resolves to {real}, outside {root}")
    return path


def open_regular(path: str | Path) -> BinaryIO:
    """Open ``path`` for binary reading, refusing anything that is not a regular file.

    The open is non-blocking (a FIFO with no writer cannot hang it) and the type is checked with ``fstat`` on
    the descriptor itself, so a file swapped after :func:`check_regular` is still caught.
    """
    path = Path(path)
    check_regular(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except OSError as e:
        raise UnsafeFileError(path, f"cannot be opened ({e.strerror or e})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeFileError(path, f"not a regular file: {_kind(st.st_mode)}")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise


def read_regular_bytes(path: str | Path, max_bytes: int | None = None) -> bytes:
    """The whole content of a regular file (see :func:`open_regular`), refused by name when it is larger
    than ``max_bytes`` (a small record such as ``config.json`` swapped for a huge file must not fill memory)."""
    with open_regular(path) as f:
        if max_bytes is None:
            return f.read()
        size = os.fstat(f.fileno()).st_size
        data = f.read(max_bytes + 1) if size <= max_bytes else b""
        if size > max_bytes or len(data) > max_bytes:
            raise UnsafeFileError(path, f"{max(size, len(data))} bytes, more than the {max_bytes} bytes such a "
                                  "file may hold")
        return data
