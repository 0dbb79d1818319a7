"""The paper's architectures (CIFAR style, REFERENCE.md "Models"), registered by name: VGG-11/16/19 with BN
and a single linear head (Figure 7 uses VGG-11, the tables VGG-16), ResNet-18/50 with a 3×3 stem and no
max-pool, DenseNet-121 (growth 32, blocks 6/12/24/16) with the authors' conv-BN-ReLU-max-pool stem.
Global average pooling before every head lets them take 28×28 and non-square inputs too. They are
GPU-sized; on the CPU they are tested on tiny batches. Parameter counts for 3×32×32 input, 10 classes:
vgg11 9,231,114; vgg16 14,728,266; vgg19 20,040,522; resnet18 11,173,962; resnet50 23,520,842;
densenet121 6,956,426.
"""

from __future__ import annotations

from torch import nn

from delusive.models.densenet import DenseNet
from delusive.models.registry import ImageSize, register_model
from delusive.models.resnet import BasicBlock, Bottleneck, ResNet
from delusive.models.vgg import VGG, VGG_CONFIGS


def _register_vgg(name: str) -> None:
    def factory(num_classes: int, in_channels: int, image_size: ImageSize) -> nn.Module:
        return VGG(VGG_CONFIGS[name], num_classes, in_channels)

    factory.__doc__ = f"{name.upper()} with BN (Simonyan & Zisserman 2015), CIFAR style."
    register_model(name)(factory)


for _name in VGG_CONFIGS:
    _register_vgg(_name)


@register_model("resnet18")
def resnet18(num_classes: int, in_channels: int, image_size: ImageSize) -> nn.Module:
    """ResNet-18 (basic blocks 2/2/2/2, widths 64-512), 3×3 stem, no max-pool."""
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, in_channels)


@register_model("resnet50")
def resnet50(num_classes: int, in_channels: int, image_size: ImageSize) -> nn.Module:
    """ResNet-50 (bottleneck blocks 3/4/6/3, widths 64-512 ×4), 3×3 stem, no max-pool."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, in_channels)


@register_model("densenet121")
def densenet121(num_classes: int, in_channels: int, image_size: ImageSize) -> nn.Module:
    """DenseNet-121 (growth 32, blocks 6/12/24/16) with the authors' stem (16×16 after it on 32×32 input)."""
    return DenseNet([6, 12, 24, 16], num_classes, in_channels, growth=32)
