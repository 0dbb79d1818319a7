"""Progress for long work (training, crafting, evaluation, sweeps): a bar on a terminal, and a periodic
one-line report when stderr is redirected to a file or a pipe (a log would otherwise fill with carriage-return
frames, or, with the bar switched off, show nothing for minutes).

``DELUSIVE_PROGRESS``: ``auto`` (default) — a bar on a terminal, lines otherwise; ``1`` — always a bar;
``lines`` — always lines; ``0`` — nothing. ``DELUSIVE_PROGRESS_EVERY`` sets the seconds between lines
(default 30): a step shorter than that prints nothing, a longer one prints a line every interval and one when
it ends.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
_LINE_FORMAT = "{desc}: {n_fmt}/{total_fmt} ({percentage:.0f}%) after {elapsed}, about {remaining} left{postfix}"


def _mode() -> str:
    value = os.environ.get("DELUSIVE_PROGRESS", "auto").lower()
    if value in ("0", "false", "no", "off"):
        return "off"
    if value in ("1", "true", "yes", "bar"):
        return "bar"
    if value == "lines":
        return "lines"
    return "bar" if sys.stderr.isatty() else "lines"


def progress_enabled() -> bool:
    """Whether a progress *bar* is drawn: DELUSIVE_PROGRESS=1 forces it, =0 turns all progress off; by
    default only on a terminal."""
    return _mode() == "bar"


def line_interval() -> float:
    try:
        return max(float(os.environ.get("DELUSIVE_PROGRESS_EVERY", "30")), 0.0)
    except ValueError:
        return 30.0


class _Lines(tqdm):  # type: ignore[misc]
    """tqdm that prints a plain line at most every ``line_interval()`` seconds, never the initial 0% frame,
    and a final line for steps that took longer than one interval."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._every = line_interval()
        self._started = time.monotonic()
        self._printed = -1
        kwargs["mininterval"] = self._every
        kwargs["maxinterval"] = max(self._every, 1.0)
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> None:  # noqa: ARG002
        if self.n == 0 or time.monotonic() - self._started < self._every:
            return
        self._line()

    def _line(self) -> None:
        if self.n == self._printed:
            return
        self._printed = self.n
        d = self.format_dict
        d["bar_format"] = _LINE_FORMAT if d.get("total") else "{desc}: {n_fmt} after {elapsed}{postfix}"
        self.fp.write(self.format_meter(**d).rstrip() + "\n")
        self.fp.flush()

    def close(self) -> None:
        if not self.disable and self.n and time.monotonic() - self._started >= self._every:
            self._line()
        self.disable = True  # nothing more to print (tqdm's close would write a clearing frame)
        super().close()


def progress(iterable: Iterable[T] | None = None, **kwargs: Any) -> tqdm:
    """A progress report on stderr for ``iterable`` (see the module docstring for what is shown where)."""
    mode = _mode()
    kwargs.setdefault("file", sys.stderr)
    if mode == "lines" and not kwargs.get("disable"):
        kwargs.pop("dynamic_ncols", None)
        return _Lines(iterable, **kwargs)
    kwargs.setdefault("disable", mode != "bar")
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("leave", False)
    return tqdm(iterable, **kwargs)
