"""Seed derivation: independent, reproducible streams from one user seed (same seed => same bytes)."""

from __future__ import annotations

import hashlib


def derive_seed(seed: int, *labels: object) -> int:
    """A 63-bit seed derived from ``seed`` and labels (e.g. ``("epoch", 3)``), stable across runs."""
    text = ":".join([str(int(seed)), *map(str, labels)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & ((1 << 63) - 1)
