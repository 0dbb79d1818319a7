"""``grayscale``: the grayscale half of Image Shortcut Squeezing (ISS, Liu, Zhao and Larson, ICML 2023).
Replacing each RGB image by its luma (kept as three equal channels, so the model and the RGB test set are
unchanged) removes colour-channel shortcuts, e.g. the low-frequency colour patterns of error-minimising noise."""

from __future__ import annotations

import numpy as np

from delusive.data import ArrayDataset
from delusive.defenses.transform import TRANSFORMS, TrainingTransform

#: ITU-R 601-2 luma weights, what Pillow's ``convert("L")`` (and so torchvision's Grayscale) uses
LUMA = (0.299, 0.587, 0.114)


@TRANSFORMS.register("grayscale")
class Grayscale(TrainingTransform):
    """Every training image becomes L = 0.299 R + 0.587 G + 0.114 B in all three channels.

    Only for RGB data: on 1-channel data (Fashion-MNIST, MNIST) it is refused with an error rather than run as
    a silent no-op, so a comparison never reports "grayscale" for a run that was standard training. Costs:
    colour information (ISS: CIFAR-10 ResNet-18 94.7% → 92.4% on clean data); useless against poisons that
    live in luminance (ISS: TAP, AR, OPS)."""

    name = "grayscale"

    def __init__(self) -> None:
        pass

    def check(self, shape: tuple[int, int, int]) -> None:
        if shape[0] != 3:
            raise ValueError(f"defense 'grayscale': needs RGB training images (3 channels), got {shape[0]} "
                             f"channel(s); {'the data is already grey' if shape[0] == 1 else 'not an RGB set'}")

    def transform_images(self, data: ArrayDataset, seed: int) -> np.ndarray:
        x = data.x.astype(np.float32)
        luma = LUMA[0] * x[:, 0] + LUMA[1] * x[:, 1] + LUMA[2] * x[:, 2]
        if data.x.dtype == np.uint8:
            g = np.clip(np.rint(luma), 0, 255).astype(np.uint8)
        else:
            g = np.clip(luma, 0.0, 1.0).astype(np.float32)
        return np.repeat(g[:, None], 3, axis=1)
