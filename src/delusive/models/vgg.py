"""VGG with batch normalisation and a single linear head (Simonyan & Zisserman 2015; the CIFAR variant of the
paper's experiments, REFERENCE.md "Models"): 3×3 convs, each followed by BN and ReLU, five 2×2 max-pools.

On 32×32 input the last pool leaves 1×1×512, which the head reads directly; global average pooling before
the head gives the same output there and lets the net take 28×28 and non-square inputs (ceil-mode pooling
keeps odd sides from vanishing: 28 → 14 → 7 → 4 → 2 → 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

VGG_CONFIGS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """``cfg`` lists conv widths and "M" (max-pool); the head is one ``nn.Linear`` on the last width."""

    def __init__(self, cfg: list[int | str], num_classes: int, in_channels: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            else:
                layers += [nn.Conv2d(c, int(v), 3, padding=1), nn.BatchNorm2d(int(v)), nn.ReLU(inplace=True)]
                c = int(v)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
        return self.classifier(out)
