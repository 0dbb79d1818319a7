"""Numeric execution settings shared by every layer that runs a model: precision and memory format.

Measured on this project's 2-core CPUs (benchmarks/, ../shared/CPU-NOTES.md): ``channels_last`` fp32 is
the fastest setting on CPUs without native bf16; bf16 autocast helps only where the CPU has it. Tests that
compare bytes or equivalences use fp32 (the default).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

PRECISIONS = ("fp32", "bf16", "auto")


def resolve_precision(precision: str) -> str:
    """Map ``auto`` to ``bf16`` only where the CPU has native bf16 (AMX / AVX512-BF16), else ``fp32``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = f.read()
    except OSError:
        return "fp32"
    return "bf16" if ("amx_bf16" in flags or "avx512_bf16" in flags) else "fp32"


def autocast(precision: str) -> contextlib.AbstractContextManager[None]:
    """Autocast context for ``precision`` (``fp32``: a no-op)."""
    if resolve_precision(precision) == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def memory_format_for(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if x.dim() == 4 else torch.contiguous_format


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """Images N×C×H×W in channels_last layout (the fast layout for CPU convolutions)."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


@contextlib.contextmanager
def frozen_parameters(model: torch.nn.Module) -> Iterator[None]:
    """Temporarily stop parameters requiring grad: attacks need input gradients only (1.15-1.45x faster)."""
    flags = [p.requires_grad for p in model.parameters()]
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        yield
    finally:
        for p, f in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(f)


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Run with the model in eval mode (BN running stats, no dropout), restoring its mode after."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)
