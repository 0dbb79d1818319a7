"""Entry point of the ``delusive`` console script.

Every problem the user can fix — a bad option, a bad or missing file, a full or read-only disk — ends the
command with ONE line ``delusive: error: ...`` on stderr and a non-zero status: 2 for a bad option
(:class:`UsageError`), 1 for everything else. The line names the file and the reason. Anything else is a bug
in delusive and keeps its full traceback, so it can be reported and fixed rather than hidden;
``DELUSIVE_TRACEBACK=1`` keeps the traceback of every error (to debug one that looks like a user error).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import pickle
import sys
import warnings
from collections.abc import Sequence
from types import TracebackType

from delusive import __version__
from delusive.cli.common import UsageError

_COMMANDS = ("train", "evaluate", "data", "attack_cmds", "experiment_cmds", "theory", "inspect_cmd")

# OS reasons in the words a user searches for; the rest use the OS's own text (strerror).
_REASONS = {
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied (operation not permitted)",
    errno.ENOTDIR: "not a directory (a component of the path is a file)",
    errno.EISDIR: "is a directory",
    errno.EEXIST: "already exists",
    errno.ENOENT: "no such file or directory",
}
_DISK_FULL = (errno.ENOSPC,) + ((errno.EDQUOT,) if hasattr(errno, "EDQUOT") else ())
_DISK_FULL_HINT = "free some space, then rerun the same command: it resumes from what was saved"
# torch.save's zip writer reports a failed write (a full disk) as a RuntimeError with one of these.
_TORCH_WRITE_FAILURE = ("unexpected pos", "PytorchStreamWriter failed")
# locals of delusive's writers and readers that hold the file being written or read
_PATH_LOCALS = ("path", "ckpt_path", "out_dir", "out")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="delusive",
        description="Craft, verify and defend against delusive (clean-label availability) poisoning.",
    )
    parser.add_argument("--version", action="version", version=f"delusive {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMANDS:
        try:
            module = importlib.import_module(f"delusive.cli.{name}")
        except ImportError as e:  # a broken install: say which command group, keep the cause
            raise ImportError(f"delusive: the sub-command module delusive.cli.{name} cannot be imported "
                              f"({type(e).__name__}: {e}); the installation is incomplete or broken") from e
        module.register(sub)
    return parser


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _path_in_traceback(tb: TracebackType | None) -> str | None:
    """The file a failing delusive writer or reader was handling: the innermost delusive frame's ``path``
    (or ``out``, ...) local. OS errors raised by ``write``/``fsync``/``torch.save`` carry no file name."""
    found = None
    while tb is not None:
        frame = tb.tb_frame
        if str(frame.f_globals.get("__name__", "")).startswith("delusive."):
            for name in _PATH_LOCALS:
                value = frame.f_locals.get(name)
                if isinstance(value, str | os.PathLike):
                    found = os.fspath(value)
                    break
        tb = tb.tb_next
    return found


def _os_error_line(e: OSError, where: str | None) -> str:
    """``path: reason`` of an OS error; ``where`` names the file when the error itself does not (write, fsync)."""
    if e.errno is None:  # raised with a message of our own, e.g. FileNotFoundError("x/model.pt: no such model file")
        return _one_line(str(e))
    if e.errno in _DISK_FULL:
        reason = f"no space left on device ({_DISK_FULL_HINT})"
    else:
        reason = _REASONS.get(e.errno) or (e.strerror or type(e).__name__).lower()
    path = e.filename2 if e.filename2 is not None else e.filename  # a rename: the file it was meant to become
    path = os.fsdecode(path) if path is not None else where
    if e.errno == errno.EEXIST and path is not None and os.path.lexists(path) and not os.path.isdir(path):
        reason = "exists and is not a directory"  # mkdir of an output folder where a file is
    return f"{path}: {reason}" if path is not None else reason


def user_error(e: BaseException) -> str | None:
    """The one-line message for an error the user can fix, or None for a bug (which keeps its traceback)."""
    if isinstance(e, ValueError):  # includes DataError, SpecError, UnsafeFileError, BudgetError, bad JSON
        return _one_line(str(e))
    if isinstance(e, OSError):
        return _os_error_line(e, _path_in_traceback(e.__traceback__))
    where = _path_in_traceback(e.__traceback__)
    prefix = f"{where}: " if where else ""
    if isinstance(e, RuntimeError) and any(s in str(e) for s in _TORCH_WRITE_FAILURE):
        cause = e.__cause__ or e.__context__  # torch keeps the OSError of the failed write as the context
        if isinstance(cause, OSError) and cause.errno is not None:
            return _os_error_line(cause, where)
        return f"{prefix}write failed, most likely no space left on device ({_DISK_FULL_HINT})"
    if isinstance(e, pickle.UnpicklingError):
        return f"{prefix}not a loadable file (UnpicklingError: {_one_line(str(e))[:200]})"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.simplefilter("default")
    try:
        return int(args.func(args) or 0)
    except UsageError as e:
        parser.exit(2, f"delusive: error: {_one_line(str(e))}\n")
    except KeyboardInterrupt:
        print("delusive: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except Exception as e:
        message = user_error(e)
        if message is None or os.environ.get("DELUSIVE_TRACEBACK"):
            raise
        print(f"delusive: error: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
