"""Densely connected networks, DenseNet-BC (Huang et al. 2017), with the stem of the paper's authors
(REFERENCE.md "Models"): a 3×3 stride-1 conv of 2·growth channels, BN, ReLU, then a 3×3 stride-2 max-pool
(so 32×32 inputs are 16×16 after the stem). Every dense layer is BN-ReLU-conv1×1(bn_size·growth)-BN-ReLU-
conv3×3(growth) and its output is concatenated to its input; transitions (BN-ReLU-conv1×1-avg-pool 2)
halve the channels and the resolution; a final BN-ReLU, global average pooling and one linear head.
Convolutions are Kaiming-normal initialised (BN weight 1, bias 0; linear bias 0), as in the authors' code.
``blocks``/``growth`` give DenseNet-121 and the narrow CPU analogue ``small-densenet`` from the same code.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class DenseLayer(nn.Module):
    """Bottleneck dense layer: adds ``growth`` channels to its input."""

    def __init__(self, c_in: int, growth: int, bn_size: int = 4) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, bn_size * growth, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(bn_size * growth)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return torch.cat([x, out], 1)


class Transition(nn.Module):
    """BN-ReLU-conv1×1 to ``c_out`` channels, then 2×2 average pooling (ceil mode, so odd sides survive)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(c_in)
        self.conv = nn.Conv2d(c_in, c_out, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.conv(F.relu(self.bn(x))), 2, ceil_mode=True)


class DenseNet(nn.Module):
    """DenseNet-BC with ``blocks[i]`` dense layers per block, growth ``growth``, compression 0.5."""

    def __init__(self, blocks: Sequence[int], num_classes: int, in_channels: int, growth: int = 32,
                 bn_size: int = 4) -> None:
        super().__init__()
        c = 2 * growth
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, c, 3, padding=1, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        stages: list[nn.Module] = []
        for i, n in enumerate(blocks):
            for _ in range(n):
                stages.append(DenseLayer(c, growth, bn_size))
                c += growth
            if i < len(blocks) - 1:
                stages.append(Transition(c, c // 2))
                c //= 2
        self.stages = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(c)
        self.linear = nn.Linear(c, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn(self.stages(self.stem(x))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))
