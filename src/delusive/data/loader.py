"""An in-memory tensor loader with batched augmentation (random crop with zero padding, horizontal flip).

The whole split lives on the training device as two tensors (moved there once); each batch is gathered by
index and augmented there as one tensor, so the training path makes no per-batch host-to-device copy. The
order and the augmentation draws of epoch ``e`` are made on the CPU from a generator seeded by
``derive_seed(seed, "loader", e)`` — once per epoch, then moved to the device in one copy — so any epoch can be
replayed exactly after a resume without saving loader state, and every device sees the same data order.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from delusive import runtime
from delusive.utils.seeding import derive_seed


def crop_with_offsets(x: torch.Tensor, padding: int, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Zero-pad a batch N×C×H×W by ``padding`` and take the H×W window at offsets (dy_i, dx_i) (one gather)."""
    n, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    rows = (dy[:, None] + runtime.arange(h, x.device)[None]).view(n, 1, h, 1).expand(n, c, h, w + 2 * padding)
    cols = (dx[:, None] + runtime.arange(w, x.device)[None]).view(n, 1, 1, w).expand(n, c, h, w)
    return padded.gather(2, rows).gather(3, cols)


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad a batch N×C×H×W by ``padding`` and take one random H×W window per image (one gather).

    Offsets are drawn from ``generator`` (N vertical, then N horizontal, each in [0, 2·padding]).
    """
    if padding < 0:
        raise ValueError(f"crop_padding: must be >= 0, got {padding}")
    if padding == 0 or x.shape[0] == 0:
        return x
    n = x.shape[0]
    dy = runtime.randint(0, 2 * padding + 1, n, generator, x.device)
    dx = runtime.randint(0, 2 * padding + 1, n, generator, x.device)
    return crop_with_offsets(x, padding, dy, dx)


def random_hflip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image of the batch left-right with probability 1/2 (N draws from ``generator``)."""
    flip = runtime.rand(x.shape[0], generator, x.device) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)


class TensorLoader:
    """Mini-batches of an in-memory split, shuffled and augmented per epoch from ``seed``.

    ``crop_padding`` > 0 turns on the random crop, ``hflip`` the random horizontal flip (keep it off for
    digits); with neither, a batch is exactly ``x[idx]``. Without ``drop_last`` every index appears exactly
    once per epoch; with it the last partial batch is left out.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool = True, seed: int = 0,
                 crop_padding: int = 0, hflip: bool = False, drop_last: bool = False) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
        if crop_padding < 0:
            raise ValueError(f"crop_padding: must be >= 0, got {crop_padding}")
        if x.ndim != 4:
            raise ValueError(f"x: must be N×C×H×W, got shape {tuple(x.shape)}")
        if y.ndim != 1 or x.shape[0] != y.shape[0]:
            raise ValueError(f"y: must have shape ({x.shape[0]},) to match x, got {tuple(y.shape)}")
        self.x, self.y = x, y
        self.batch_size, self.shuffle, self.seed = int(batch_size), bool(shuffle), int(seed)
        self.crop_padding, self.hflip, self.drop_last = int(crop_padding), bool(hflip), bool(drop_last)

    def __len__(self) -> int:
        """Batches per epoch."""
        n = self.x.shape[0]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def epoch_with_indices(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Batches ``(x, y, idx)`` of epoch ``epoch``; ``idx`` (int64, on the data's device) are the split's rows.

        Draws, all on the CPU generator of the epoch and in this order: the permutation (N), then for the
        whole epoch the crop offsets (N vertical, N horizontal) and the flip coins (N), batch b using the
        entries of its positions.
        """
        g = runtime.generator(derive_seed(self.seed, "loader", epoch))
        n, dev = self.x.shape[0], self.x.device
        order = runtime.randperm(n, g) if self.shuffle else runtime.arange(n)
        order = order.to(dev)
        p = self.crop_padding
        dy = runtime.randint(0, 2 * p + 1, n, g).to(dev) if p else None
        dx = runtime.randint(0, 2 * p + 1, n, g).to(dev) if p else None
        flip = (runtime.rand(n, g) < 0.5).to(dev) if self.hflip else None
        for b in range(len(self)):
            sl = slice(b * self.batch_size, (b + 1) * self.batch_size)
            idx = order[sl]
            xb = self.x[idx]
            if dy is not None and dx is not None:
                xb = crop_with_offsets(xb, p, dy[sl], dx[sl])
            if flip is not None:
                xb = torch.where(flip[sl].view(-1, 1, 1, 1), xb.flip(3), xb)
            yield xb, self.y[idx], idx

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches ``(x, y)`` of epoch ``epoch``: the same as :meth:`epoch_with_indices` without the indices."""
        for xb, yb, _ in self.epoch_with_indices(epoch):
            yield xb, yb

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Epoch 0 (a convenience; training loops should call :meth:`epoch` with the epoch number)."""
        return self.epoch(0)
