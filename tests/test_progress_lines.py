"""Progress when stderr is not a terminal: one plain line per interval for long steps, nothing for short
ones, never a carriage-return frame; DELUSIVE_PROGRESS=0 silences it, =1 forces the bar."""

import io
import time

from delusive.utils import progress
from delusive.utils.progress import progress_enabled


def _stderr(monkeypatch) -> io.StringIO:
    """A stderr that is not a terminal (patched in the test body: pytest's capture resets it between phases)."""
    buf = io.StringIO()
    monkeypatch.setattr("sys.stderr", buf)
    monkeypatch.delenv("DELUSIVE_PROGRESS", raising=False)
    return buf


def test_long_steps_print_plain_lines_once_each(monkeypatch):
    err = _stderr(monkeypatch)
    monkeypatch.setenv("DELUSIVE_PROGRESS_EVERY", "0.05")
    for _ in progress(range(4), desc="craft P1"):
        time.sleep(0.06)
    lines = err.getvalue().splitlines()
    assert "\r" not in err.getvalue() and lines and all(x.startswith("craft P1: ") for x in lines)
    assert lines[-1].startswith("craft P1: 4/4 (100%)") and len(lines) == len(set(lines)) <= 4


def test_short_steps_print_nothing_and_zero_silences(monkeypatch):
    err = _stderr(monkeypatch)
    monkeypatch.setenv("DELUSIVE_PROGRESS_EVERY", "30")
    list(progress(range(100), desc="quick"))
    assert err.getvalue() == ""
    monkeypatch.setenv("DELUSIVE_PROGRESS", "0")
    monkeypatch.setenv("DELUSIVE_PROGRESS_EVERY", "0")
    for _ in progress(range(3), desc="off"):
        time.sleep(0.01)
    assert err.getvalue() == "" and not progress_enabled()
    monkeypatch.setenv("DELUSIVE_PROGRESS", "1")
    assert progress_enabled()
