"""``bit_depth``: bit-depth reduction of the training set (Xu et al. 2018's feature squeezing; one of the
compressions Image Shortcut Squeezing and APBench evaluate, APBench's ``bdr`` with 2 bits). Keeping the top
``bits`` bits of each 8-bit pixel erases any perturbation smaller than a quantisation step."""

from __future__ import annotations

import numpy as np

from delusive.data import ArrayDataset
from delusive.defenses.checks import _check, _is_int
from delusive.defenses.transform import TRANSFORMS, TrainingTransform, as_uint8


@TRANSFORMS.register("bit_depth")
class BitDepth(TrainingTransform):
    """Keep the ``bits`` most significant bits of every 8-bit pixel (torchvision's ``posterize``, which APBench
    uses with ``bits=2``; the default here): 2^bits levels, v ↦ v & ~(2^(8−bits) − 1). ``bits=8`` is the
    identity. Costs: fine tonal detail; a poison larger than a step (256/2^bits) survives, and one that was
    crafted on quantised images is untouched."""

    name = "bit_depth"

    def __init__(self, bits: int = 2) -> None:
        _check("bit_depth", _is_int(bits) and 1 <= bits <= 8, "bits", "an integer in [1, 8]", bits)
        self.bits = int(bits)

    def transform_images(self, data: ArrayDataset, seed: int) -> np.ndarray:
        mask = np.uint8((0xFF << (8 - self.bits)) & 0xFF)
        return as_uint8(data) & mask
