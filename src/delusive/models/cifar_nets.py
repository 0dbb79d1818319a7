"""CIFAR-style architectures of the paper's experiments (REFERENCE.md): VGG-11/16/19 with BN and a single
linear head, ResNet-18/50 with a 3×3 stem and no max-pool, DenseNet-121. Global average pooling before the
head (and ceil-mode pooling in VGG) lets the same nets take 28×28 and 32×32 inputs. These are GPU-sized;
on the CPU they are kept correct and tested on tiny inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from delusive.models.registry import MODELS

_VGG = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}


class VGG(nn.Module):
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
        self.classifier = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
        return self.classifier(out)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _shortcut(c_in, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.shortcut = _shortcut(c_in, planes * 4, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return F.relu(self.bn3(self.conv3(out)) + self.shortcut(x))


def _shortcut(c_in: int, c_out: int, stride: int) -> nn.Module:
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))


class ResNet(nn.Module):
    def __init__(self, block: type[BasicBlock] | type[Bottleneck], blocks: list[int], num_classes: int,
                 in_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        layers: list[nn.Module] = []
        c = 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), blocks, strict=True)):
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(block(c, planes, stride))
                c = planes * block.expansion
        self.layers = nn.Sequential(*layers)
        self.linear = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


class DenseLayer(nn.Module):
    def __init__(self, c_in: int, growth: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, 4 * growth, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth)
        self.conv2 = nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return torch.cat([out, x], 1)


class Transition(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(c_in)
        self.conv = nn.Conv2d(c_in, c_out, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.conv(F.relu(self.bn(x))), 2, ceil_mode=True)


class DenseNet(nn.Module):
    """DenseNet-BC (growth 32, compression 0.5) with the CIFAR 3×3 stem."""

    def __init__(self, blocks: list[int], num_classes: int, in_channels: int, growth: int = 32) -> None:
        super().__init__()
        c = 2 * growth
        self.conv1 = nn.Conv2d(in_channels, c, 3, padding=1, bias=False)
        stages: list[nn.Module] = []
        for i, n in enumerate(blocks):
            for _ in range(n):
                stages.append(DenseLayer(c, growth))
                c += growth
            if i < len(blocks) - 1:
                stages.append(Transition(c, c // 2))
                c //= 2
        self.stages = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(c)
        self.linear = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn(self.stages(self.conv1(x))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


def _register_vgg(name: str) -> None:
    MODELS.register(name)(lambda k, c, s: VGG(_VGG[name], k, c))


for _name in _VGG:
    _register_vgg(_name)
MODELS.register("resnet18")(lambda k, c, s: ResNet(BasicBlock, [2, 2, 2, 2], k, c))
MODELS.register("resnet50")(lambda k, c, s: ResNet(Bottleneck, [3, 4, 6, 3], k, c))
MODELS.register("densenet121")(lambda k, c, s: DenseNet([6, 12, 24, 16], k, c))
