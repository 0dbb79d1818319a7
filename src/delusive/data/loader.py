"""An in-memory tensor loader with batched augmentation (random crop with zero padding, horizontal flip).

The order and the augmentation of epoch e come from a generator seeded by (seed, e), so any epoch can be
replayed exactly after a resume without saving loader state.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from delusive.utils.seeding import derive_seed


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad by ``padding`` and take one random H×W window per image (vectorised gather)."""
    if padding <= 0:
        return x
    n, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)[None]).view(n, 1, h, 1).expand(n, c, h, w + 2 * padding)
    cols = (dx[:, None] + torch.arange(w)[None]).view(n, 1, 1, w).expand(n, c, h, w)
    return padded.gather(2, rows).gather(3, cols)


def random_hflip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flip = torch.rand(x.shape[0], generator=generator) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)


class TensorLoader:
    """Mini-batches of an in-memory split, shuffled and augmented per epoch from ``seed``."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool = True, seed: int = 0,
                 crop_padding: int = 0, hflip: bool = False, drop_last: bool = False) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x has {x.shape[0]} rows but y has {y.shape[0]}")
        self.x, self.y = x, y
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.crop_padding, self.hflip, self.drop_last = crop_padding, hflip, drop_last

    def __len__(self) -> int:
        n = self.x.shape[0]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def epoch_with_indices(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(derive_seed(self.seed, "loader", epoch))
        n = self.x.shape[0]
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            xb = self.x[idx]
            if self.crop_padding:
                xb = random_crop(xb, self.crop_padding, g)
            if self.hflip:
                xb = random_hflip(xb, g)
            yield xb, self.y[idx], idx

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for xb, yb, _ in self.epoch_with_indices(epoch):
            yield xb, yb

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.epoch(0)
