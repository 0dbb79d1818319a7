"""The model registry and its factory; initialisation is seeded without touching the global RNG.

Every factory is called as ``factory(num_classes, in_channels, (H, W))``: the image size reaches it as an
(H, W) pair so non-square inputs (the 1×56×28 MNIST-Fashion composites, built like the MNIST-CIFAR set of
Shah et al. 2020 in paper Sec. 5.3) build the same way as square ones. Callers may pass one int for a square
image.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence

import torch
from torch import nn

from delusive.registry import Registry

ImageSize = tuple[int, int]
ModelFactory = Callable[[int, int, ImageSize], nn.Module]
MODELS: Registry[ModelFactory] = Registry("model")
DEFAULT_MODEL = "small-cnn"
MIN_SIDE = 8
# sizes beyond any dataset a model here is built for: a model.json claiming more is refused before a byte is
# allocated (10^10 classes would ask for terabytes of weights)
MAX_CLASSES = 100_000
MAX_CHANNELS = 64
MAX_SIDE = 4096
CLASSIFIER = "classifier"
_KINDS: dict[str, str] = {}


def register_model(name: str, kind: str = CLASSIFIER) -> Callable[[ModelFactory], ModelFactory]:
    """Register a factory under ``name``; ``kind`` says what it outputs (``classifier``: N×K logits), so that
    places that need a classifier (``--model``, transfer studies) can leave other networks (e.g. the L2C
    generator) out."""
    deco = MODELS.register(name)

    def wrap(factory: ModelFactory) -> ModelFactory:
        deco(factory)
        _KINDS[name] = kind
        return factory

    return wrap


def model_kind(name: str) -> str:
    """What model ``name`` outputs; a model registered with ``MODELS.register`` directly counts as a classifier."""
    MODELS.get(name)  # unknown name -> the registry's error
    return _KINDS.get(name, CLASSIFIER)


def model_names(kind: str | None = None) -> list[str]:
    """Sorted registered names, all of them or only those of ``kind``."""
    return [n for n in MODELS.names() if kind is None or model_kind(n) == kind]


def classifier_names() -> list[str]:
    """Registered models that map images to N×K logits."""
    return model_names(CLASSIFIER)


def as_image_size(image_size: int | Sequence[int]) -> ImageSize:
    """``image_size`` as an (H, W) pair: one int means a square image; a pair (tuple or JSON list) is (H, W)."""
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        hw: tuple[object, ...] = (image_size, image_size)
    elif isinstance(image_size, Sequence) and not isinstance(image_size, str | bytes):
        hw = tuple(image_size)
    else:
        raise ValueError(f"image_size: expected an int or an (H, W) pair of ints, got {image_size!r}")
    if len(hw) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in hw):
        raise ValueError(f"image_size: expected an int or an (H, W) pair of ints, got {image_size!r}")
    h, w = int(hw[0]), int(hw[1])  # type: ignore[call-overload]
    if min(h, w) < MIN_SIDE:
        raise ValueError(f"image_size: every side must be >= {MIN_SIDE}, got {h}×{w}")
    if max(h, w) > MAX_SIDE:
        raise ValueError(f"image_size: every side must be <= {MAX_SIDE}, got {h}×{w}")
    return h, w


def create_model(
    name: str = DEFAULT_MODEL,
    num_classes: int = 10,
    in_channels: int = 1,
    image_size: int | Sequence[int] = 28,
    seed: int | None = 0,
) -> nn.Module:
    """Build model ``name`` for ``in_channels``×H×W inputs in [0,1] (no input normalisation); ``image_size``
    is H = W (an int) or (H, W).

    With ``seed`` set, weights are initialised from that seed inside a forked RNG, so equal seeds give
    identical weights and the caller's global RNG is left untouched. The model is built on the CPU in
    channels-last layout; move it with ``runtime.prepare_model``.
    """
    factory = MODELS.get(name)
    for key, value, low, high in (("num_classes", num_classes, 2, MAX_CLASSES),
                                  ("in_channels", in_channels, 1, MAX_CHANNELS)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= value <= high:
            raise ValueError(f"{key}: must be an integer in [{low}, {high}], got {value!r}")
    hw = as_image_size(image_size)
    if seed is None:
        model = factory(num_classes, in_channels, hw)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = factory(num_classes, in_channels, hw)
    model.arch = name  # type: ignore[assignment]
    return model.to(memory_format=torch.channels_last)
