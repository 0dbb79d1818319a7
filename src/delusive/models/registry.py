"""The model registry and its factory; initialisation is seeded without touching the global RNG."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from delusive.registry import Registry

ModelFactory = Callable[[int, int, int], nn.Module]
MODELS: Registry[ModelFactory] = Registry("model")
DEFAULT_MODEL = "small-cnn"


def model_names() -> list[str]:
    return MODELS.names()


def create_model(
    name: str = DEFAULT_MODEL,
    num_classes: int = 10,
    in_channels: int = 1,
    image_size: int = 28,
    seed: int | None = 0,
) -> nn.Module:
    """Build model ``name`` for ``in_channels``×``image_size``² inputs in [0,1] (no input normalisation).

    With ``seed`` set, weights are initialised from that seed inside a forked RNG, so equal seeds give
    identical weights and the caller's global RNG is left untouched.
    """
    factory = MODELS.get(name)
    if num_classes < 2:
        raise ValueError(f"num_classes: must be >= 2, got {num_classes}")
    if in_channels < 1:
        raise ValueError(f"in_channels: must be >= 1, got {in_channels}")
    if image_size < 8:
        raise ValueError(f"image_size: must be >= 8, got {image_size}")
    if seed is None:
        model = factory(num_classes, in_channels, image_size)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = factory(num_classes, in_channels, image_size)
    model.arch = name  # type: ignore[assignment]
    return model.to(memory_format=torch.channels_last)
