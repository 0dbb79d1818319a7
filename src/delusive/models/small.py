"""Small CPU architectures for transfer studies (paper Sec. 5.1, Figure 8, whose VGG-19, ResNet-18/50 and
DenseNet-121 need a GPU): a family that trains in minutes on 28×28 and differs in the same ways — plain
convolutions, convolutions with batch normalisation, residual connections, dense connections — plus a
multilayer perceptron with no convolution at all. Parameter counts are for 1×28×28 input and 10 classes
(docs/models.md; a test checks every count quoted here).
"""

from __future__ import annotations

from torch import nn

from delusive.models.densenet import DenseNet
from delusive.models.registry import ImageSize, register_model
from delusive.models.resnet import BasicBlock, ResNet


class SmallCNN(nn.Module):
    """conv3×3(16)-pool-conv3×3(32)-pool-fc(128)-fc(K), optionally with BN after each conv.

    The first linear layer reads the (H//4)×(W//4) map the two 2×2 pools leave, so any H×W works.
    """

    def __init__(self, num_classes: int, in_channels: int, image_size: ImageSize, width: int = 16,
                 batch_norm: bool = False) -> None:
        super().__init__()
        h, w = image_size
        self.features = nn.Sequential(
            *_conv(in_channels, width, batch_norm),
            nn.MaxPool2d(2),
            *_conv(width, 2 * width, batch_norm),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(2 * width * (h // 4) * (w // 4), 128),
            nn.ReLU(inplace=True),
            nn.Linear(128, num_classes),
        )

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.classifier(self.features(x))


def _conv(c_in: int, c_out: int, batch_norm: bool) -> list[nn.Module]:
    if batch_norm:
        return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True)]


class MLP(nn.Module):
    """Flatten, then ``hidden`` fully connected ReLU layers and a linear head."""

    def __init__(self, num_classes: int, in_features: int, hidden: tuple[int, ...] = (256, 256)) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        d = in_features
        for width in hidden:
            layers += [nn.Linear(d, width), nn.ReLU(inplace=True)]
            d = width
        layers.append(nn.Linear(d, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.net(x)


@register_model("small-cnn")
def small_cnn(num_classes: int, in_channels: int, image_size: ImageSize) -> nn.Module:
    """Plain convolutions (the default CPU model; a VGG analogue without BN): 206,922 parameters."""
    return SmallCNN(num_classes, in_channels, image_size)


@register_model("small-cnn-bn")
def small_cnn_bn(num_classes: int, in_channels: int, image_size: ImageSize) -> nn.Module:
    """small-cnn with BatchNorm after each conv (the VGG-with-BN analogue): 206,970 parameters."""
    return SmallCNN(num_classes, in_channels, image_size, batch_norm=True)


@register_model("small-resnet")
def small_resnet(num_classes: int, in_channels: int, image_size: ImageSize) -> nn.Module:
    """Narrow ResNet (the ResNet-18 analogue): 3×3 stem, 3 stages of one basic block, widths 16/32/64,
    no max-pool: 77,754 parameters."""
    return ResNet(BasicBlock, [1, 1, 1], num_classes, in_channels, widths=(16, 32, 64))


@register_model("small-densenet")
def small_densenet(num_classes: int, in_channels: int, image_size: ImageSize) -> nn.Module:
    """Narrow DenseNet-BC (the DenseNet-121 analogue): DenseNet-121's stem and layers, growth 12, 3 blocks
    of 4 dense layers with transitions: 102,346 parameters."""
    return DenseNet([4, 4, 4], num_classes, in_channels, growth=12)


@register_model("mlp")
def mlp(num_classes: int, in_channels: int, image_size: ImageSize) -> nn.Module:
    """Two hidden layers of 256 ReLU units on the flattened image: 269,322 parameters."""
    return MLP(num_classes, in_channels * image_size[0] * image_size[1])
