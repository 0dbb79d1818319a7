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
# torch's words for an allocation that cannot be served (CPU allocator, CUDA caching allocator)
_OUT_OF_MEMORY = ("can't allocate memory", "CUDA out of memory", "Unable to allocate")
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
    if isinstance(e, FloatingPointError):  # a diverging run: the message names the run and the remedy
        return _one_line(str(e))
    if isinstance(e, MemoryError) or (isinstance(e, RuntimeError) and any(s in str(e) for s in _OUT_OF_MEMORY)):
        what = _one_line(str(e))[:200] or type(e).__name__
        return (f"{prefix}out of memory ({what}); the input, or a size asked for (a batch size, a model), is too "
                "large for this machine")
    return None


def _format_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                    line: str | None = None) -> str:
    """A warning as one line ``delusive: warning: ...`` (no source path: the user cannot act on ours);
    ``DELUSIVE_TRACEBACK=1`` keeps Python's format, with the file and line."""
    if os.environ.get("DELUSIVE_TRACEBACK"):
        return _PYTHON_FORMAT(message, category, filename, lineno, line)
    return f"delusive: warning: {_one_line(str(message))}\n"


_PYTHON_FORMAT = warnings.formatwarning


def _other_rank() -> bool:
    """Whether this process is a rank other than 0 of a torchrun job: every rank meets the same bad option or
    file, so only rank 0 reports it (one line, not one per rank); every rank still exits with the status."""
    rank, world = os.environ.get("RANK", "0").strip(), os.environ.get("WORLD_SIZE", "1").strip()
    return rank not in ("", "0") and world.isdigit() and int(world) > 1


def _report(line: str) -> None:
    if not _other_rank():
        print(line, file=sys.stderr)


def _silence(parser: argparse.ArgumentParser) -> None:
    """Make ``parser`` and its sub-parsers exit with argparse's status without printing (ranks other than 0)."""
    parser.exit = lambda status=0, message=None: sys.exit(status)  # type: ignore[method-assign]
    parser.print_usage = lambda file=None: None  # type: ignore[method-assign]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _silence(sub)


def _die_with_the_launcher() -> None:
    """Under torchrun, end this rank when the launcher dies (Linux ``PR_SET_PDEATHSIG``): a launcher killed
    with kill -9 would otherwise leave its ranks training on, into the folder a rerun then resumes in."""
    if not sys.platform.startswith("linux") or not os.environ.get("TORCHELASTIC_RUN_ID"):
        return
    import ctypes
    import signal

    launcher = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # no prctl: the launcher's own cleanup is all there is
        return
    if os.getppid() != launcher:  # the launcher died before the signal was armed
        os._exit(1)


def main(argv: Sequence[str] | None = None) -> int:
    _die_with_the_launcher()
    parser = build_parser()
    if _other_rank():
        _silence(parser)
    args = parser.parse_args(argv)
    warnings.simplefilter("default")
    previous_format, warnings.formatwarning = warnings.formatwarning, _format_warning
    try:
        return int(args.func(args) or 0)
    except UsageError as e:
        if _other_rank():
            sys.exit(2)
        parser.exit(2, f"delusive: error: {_one_line(str(e))}\n")
    except KeyboardInterrupt:
        _report("delusive: interrupted; rerun the same command to resume")
        return 130
    except Exception as e:
        message = user_error(e)
        if message is None or os.environ.get("DELUSIVE_TRACEBACK"):
            raise
        _report(f"delusive: error: {message}")
        return 1
    finally:
        warnings.formatwarning = previous_format
    return 0


if __name__ == "__main__":
    sys.exit(main())
