"""Lowest layer: seeding, hashing, atomic file I/O, value parsing, progress bars (stdlib + numpy only)."""

from delusive.utils.hashing import config_hash, sha256_bytes, sha256_file, stable_json
from delusive.utils.io import (
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    read_json,
)
from delusive.utils.parse import parse_budget, parse_fraction
from delusive.utils.progress import progress

__all__ = [
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "config_hash",
    "parse_budget",
    "parse_fraction",
    "progress",
    "read_json",
    "sha256_bytes",
    "sha256_file",
    "stable_json",
]
