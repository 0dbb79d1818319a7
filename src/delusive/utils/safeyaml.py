"""YAML for files a user may have been handed (experiment specs): plain data only, bounded in size.

``yaml.safe_load`` already builds nothing but plain data, but it still expands aliases: a few hundred bytes
of nested ``&a [*b, *b, …]`` anchors ("billion laughs") describe a document of 9^10 nodes, which the first
walk over it (a deep copy, a hash, a JSON dump) turns into gigabytes and minutes. A spec never needs an
alias, so :class:`SpecLoader` refuses every alias (and every anchor) with one line naming the file, line and
column; a document larger than ``MAX_SPEC_BYTES`` is refused before it is parsed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent

from delusive.utils.safefile import read_regular_bytes

MAX_SPEC_BYTES = 1 * 2**20  # a sweep spec is a few kilobytes; 1 MiB is far beyond any real one


class SpecLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses aliases (``*name``) and anchors (``&name``)."""

    def compose_node(self, parent: Any, index: Any) -> Any:  # type: ignore[override]
        if self.check_event(AliasEvent):
            event = self.peek_event()
            raise yaml.constructor.ConstructorError(
                None, None, f"aliases (*{event.anchor}) are not allowed in a spec; write the value out",
                event.start_mark)
        event = self.peek_event()
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            raise yaml.constructor.ConstructorError(
                None, None, f"anchors (&{anchor}) are not allowed in a spec; write the value out", event.start_mark)
        return super().compose_node(parent, index)


def _problem(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{' '.join(str(getattr(e, 'problem', None) or e).split())}"


def load_yaml_text(text: str, source: str) -> Any:
    """Parse ``text`` with :class:`SpecLoader`; any YAML error is a ``ValueError`` naming ``source``."""
    try:
        return yaml.load(text, Loader=SpecLoader)  # noqa: S506 - SpecLoader is a SafeLoader
    except yaml.YAMLError as e:
        raise ValueError(f"{source}: not valid YAML ({_problem(e)})") from None
    except RecursionError:
        raise ValueError(f"{source}: not valid YAML (nested too deeply)") from None


def load_yaml_file(path: str | Path, max_bytes: int = MAX_SPEC_BYTES) -> Any:
    """Parse a YAML file: a regular file (a FIFO or device is refused, never read) of at most ``max_bytes``,
    UTF-8 text, with no aliases. Every refusal is a one-line ``ValueError`` naming the file."""
    data = read_regular_bytes(path, max_bytes)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); a spec is a YAML text file") from None
    return load_yaml_text(text, str(path))
