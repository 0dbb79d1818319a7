"""``jpeg``: JPEG compression of the training set, the JPEG half of Image Shortcut Squeezing (ISS, Liu, Zhao
and Larson, ICML 2023). Encoding at a low quality (ISS: 10) throws away the high-frequency DCT coefficients
in which many availability poisons live; decoding gives the images the model trains on."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from delusive.data import ArrayDataset
from delusive.defenses.checks import _check, _is_int
from delusive.defenses.transform import TRANSFORMS, TrainingTransform, as_uint8


def jpeg_roundtrip(images: np.ndarray, quality: int) -> np.ndarray:
    """Encode each uint8 image (N×C×H×W, C = 1 or 3) as a JPEG at ``quality`` with Pillow and decode it.

    Pillow's defaults otherwise (4:2:0 chroma subsampling for RGB, the standard IJG tables scaled by the
    quality), which is what ISS and APBench call (``Image.save(..., "JPEG", quality=q)``)."""
    n, c = images.shape[:2]
    mode = {1: "L", 3: "RGB"}[c]
    out = np.empty_like(images)
    for i in range(n):
        hwc = images[i, 0] if c == 1 else np.ascontiguousarray(images[i].transpose(1, 2, 0))
        buf = io.BytesIO()
        Image.fromarray(hwc, mode=mode).save(buf, format="JPEG", quality=int(quality))
        buf.seek(0)
        with Image.open(buf) as im:
            dec = np.asarray(im.convert(mode))
        out[i] = dec[None] if c == 1 else dec.transpose(2, 0, 1)
    return out


@TRANSFORMS.register("jpeg")
class JPEG(TrainingTransform):
    """JPEG-compress every training image at ``quality`` (1-95; default 10, ISS's setting), once.

    Costs: one encode/decode per image before training (no per-epoch cost); clean accuracy drops with the
    lost detail (ISS: CIFAR-10 ResNet-18 94.7% → 85.4% on clean data). Cannot help against a poison that
    survives compression (low-frequency, large-area patterns, or one crafted through a JPEG layer)."""

    name = "jpeg"

    def __init__(self, quality: int = 10) -> None:
        _check("jpeg", _is_int(quality) and 1 <= quality <= 95, "quality", "an integer in [1, 95]", quality)
        self.quality = int(quality)

    def check(self, shape: tuple[int, int, int]) -> None:
        _check("jpeg", shape[0] in (1, 3), "the training set's channels", "1 (grey) or 3 (RGB) for JPEG",
               shape[0])

    def transform_images(self, data: ArrayDataset, seed: int) -> np.ndarray:
        return jpeg_roundtrip(as_uint8(data), self.quality)
