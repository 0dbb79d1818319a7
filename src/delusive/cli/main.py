"""Entry point of the ``delusive`` console script."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from delusive import __version__
from delusive.cli.common import UsageError

_COMMANDS = ("train", "evaluate", "data", "attack_cmds", "experiment_cmds", "theory")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="delusive",
        description="Craft, verify and defend against delusive (clean-label availability) poisoning.",
    )
    parser.add_argument("--version", action="version", version=f"delusive {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    import importlib

    for name in _COMMANDS:
        try:
            module = importlib.import_module(f"delusive.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"delusive.cli.{name}":
                continue  # a command group not present in this build
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.simplefilter("default")
    try:
        return int(args.func(args) or 0)
    except UsageError as e:
        parser.exit(2, f"delusive: error: {e}\n")
    except (FileNotFoundError, ValueError) as e:
        print(f"delusive: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("delusive: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
