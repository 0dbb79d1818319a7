"""An in-memory tensor loader with batched augmentation (random crop with zero padding, horizontal flip).

The whole split stays in memory as two tensors; each batch is gathered by index and augmented as one
tensor (no Python loop over samples). The order and the augmentation of epoch ``e`` come from a CPU
``torch.Generator`` seeded by ``derive_seed(seed, "loader", e)``, so any epoch can be replayed exactly after
a resume without saving loader state, and the draws do not depend on the device the data lives on.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from delusive.utils.seeding import derive_seed


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad a batch N×C×H×W by ``padding`` and take one random H×W window per image (one gather).

    Offsets are drawn on the CPU from ``generator`` (N vertical, then N horizontal, each in [0, 2·padding]).
    """
    if padding < 0:
        raise ValueError(f"crop_padding: must be >= 0, got {padding}")
    if padding == 0 or x.shape[0] == 0:
        return x
    n, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device)[None]).view(n, 1, h, 1).expand(n, c, h, w + 2 * padding)
    cols = (dx[:, None] + torch.arange(w, device=x.device)[None]).view(n, 1, 1, w).expand(n, c, h, w)
    return padded.gather(2, rows).gather(3, cols)


def random_hflip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image of the batch left-right with probability 1/2 (N draws from ``generator``)."""
    flip = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)
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
        """Batches ``(x, y, idx)`` of epoch ``epoch``; ``idx`` (int64, CPU) are the rows of the split."""
        g = torch.Generator().manual_seed(derive_seed(self.seed, "loader", epoch))
        n = self.x.shape[0]
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            dev_idx = idx.to(self.x.device)
            xb = self.x[dev_idx]
            if self.crop_padding:
                xb = random_crop(xb, self.crop_padding, g)
            if self.hflip:
                xb = random_hflip(xb, g)
            yield xb, self.y[idx.to(self.y.device)], idx

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches ``(x, y)`` of epoch ``epoch``: the same as :meth:`epoch_with_indices` without the indices."""
        for xb, yb, _ in self.epoch_with_indices(epoch):
            yield xb, yb

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Epoch 0 (a convenience; training loops should call :meth:`epoch` with the epoch number)."""
        return self.epoch(0)
