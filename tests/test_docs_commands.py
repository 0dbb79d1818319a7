"""Every ``delusive ...`` command written in docs/*.md uses a sub-command and options the parser knows, and
every option the docs use is visible in that command's --help (no hidden option documented)."""

import argparse
import re
from pathlib import Path

from delusive.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[1]
COMMAND = re.compile(r"(?:^|`|\$ |&& |\| )delusive ([a-z][\w-]*(?: [a-z][\w-]*)?)([^`\n]*)", re.M)


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    out: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out[name] = sub
                for inner, subsub in _subparsers(sub).items():
                    out[f"{name} {inner}"] = subsub
    return out


def _visible_options(p: argparse.ArgumentParser) -> set[str]:
    return {o for a in p._actions if a.help != argparse.SUPPRESS for o in a.option_strings}


def documented_commands() -> list[tuple[str, str, str]]:
    found = []
    for doc in sorted((ROOT / "docs").glob("*.md")):
        text = doc.read_text(encoding="utf-8").replace("\\\n", " ")
        for m in COMMAND.finditer(text):
            found.append((doc.name, m.group(1), m.group(2)))
    return found


def test_documented_commands_use_real_visible_options():
    subs = _subparsers(build_parser())
    problems = []
    commands = documented_commands()
    assert len(commands) > 20
    for doc, words, rest in commands:
        name = words if words in subs else words.split()[0]
        if name not in subs:
            problems.append(f"{doc}: unknown command 'delusive {words}'")
            continue
        visible = _visible_options(subs[name])
        for opt in re.findall(r"(?<![\w-])(--[a-z][\w-]*)", rest):
            if opt not in visible and not (opt.startswith("--no-") and f"--{opt[5:]}" in visible):
                problems.append(f"{doc}: 'delusive {name}' has no visible option {opt}")
    assert not problems, "\n".join(problems)
