"""The perturbation generator of L2C (Feng, Cai and Zhou, NeurIPS 2019, "Learning to Confuse: Generating
Training Time Adversarial Data with Auto-Encoder"; official code kingfengji/DeepConfuse).

An encoder–decoder with skip connections (U-Net): double 3×3 conv + BN + ReLU blocks whose width doubles at
every 2×2 average pooling on the way down, bilinear upsampling (corners aligned) back to the size of the
matching encoder map, concatenated with it, on the way up, then a 1×1 conv + BN head and a tanh. The
network maps an image to a perturbation *direction* in [−1, 1] per pixel for any input whatsoever (NaN
activations count as 0, ±inf saturate the tanh); the L2C attack scales it by ε and projects it onto its
threat model's ball (``attacks/l2c.py``), as the authors multiply the generator's output by ε.

Registered as models of kind ``generator`` (so ``--model`` and transfer studies never offer them):

- ``l2c-unet``: the authors' CIFAR-10 generator, widths 64-128-256-512 with three poolings (7.8 M parameters
  on 3×32×32; a GPU network);
- ``l2c-unet-small``: the same layout at widths 8-16-32 with two poolings (about 30 k parameters), the CPU
  default for 28×28 images (docs/attacks.md, section L2C).

Upsampling to the encoder map's size (instead of a fixed factor 2) lets any H×W ≥ 2^depth work, e.g. 28×28
with three poolings (28→14→7→3 and back).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from delusive.models.registry import ImageSize, register_model

GENERATOR_KIND = "generator"


def _double_conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
    )


class UNetGenerator(nn.Module):
    """x (N×C×H×W) → tanh output of the same shape, in [−1, 1]; ``width`` channels at full resolution and
    ``depth`` poolings (the reference: 64 and 3)."""

    def __init__(self, in_channels: int, width: int = 64, depth: int = 3) -> None:
        super().__init__()
        if in_channels < 1 or width < 1 or depth < 1:
            raise ValueError(f"UNetGenerator: in_channels, width and depth must be >= 1, got "
                             f"{in_channels}, {width}, {depth}")
        widths = [width * 2**i for i in range(depth + 1)]
        self.depth = depth
        self.down = nn.ModuleList([_double_conv(in_channels, widths[0])]
                                  + [_double_conv(widths[i - 1], widths[i]) for i in range(1, depth + 1)])
        self.up = nn.ModuleList([_double_conv(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(depth))])
        self.pool = nn.AvgPool2d(2)
        self.head = nn.Sequential(nn.Conv2d(widths[0], in_channels, 1), nn.BatchNorm2d(in_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        h = x
        for i, block in enumerate(self.down):
            h = block(h)
            if i < self.depth:
                skips.append(h)
                h = self.pool(h)
        for block, skip in zip(self.up, reversed(skips), strict=True):
            h = F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=True)
            h = block(torch.cat([h, skip], dim=1))
        return torch.tanh(torch.nan_to_num(self.head(h), nan=0.0))


@register_model("l2c-unet", kind=GENERATOR_KIND)
def l2c_unet(num_classes: int, in_channels: int, image_size: ImageSize) -> nn.Module:
    """The authors' generator (DeepConfuse's CIFAR-10 U-Net); ``num_classes`` is ignored."""
    return UNetGenerator(in_channels, width=64, depth=3)


@register_model("l2c-unet-small", kind=GENERATOR_KIND)
def l2c_unet_small(num_classes: int, in_channels: int, image_size: ImageSize) -> nn.Module:
    """The CPU-sized generator for 28×28 images; ``num_classes`` is ignored."""
    return UNetGenerator(in_channels, width=8, depth=2)


class DeepConfuseMNISTAutoencoder(nn.Module):
    """The authors' MNIST generator (kingfengji/DeepConfuse, MNIST/models.py ``Autoencoder``), laid out so that
    their released state dict (MNIST/pretrained/atkmnist_best.pt) loads key for key: a strided conv encoder
    (1→16→64 channels, 28×28 → 2×2) and a transposed-conv decoder back to 1×28×28, BN throughout, tanh output.
    Only 1×28×28 inputs give a 28×28 output."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 16, 3, stride=3, padding=1), nn.BatchNorm2d(16), nn.ReLU(True), nn.MaxPool2d(2, stride=2),
            nn.Conv2d(16, 64, 3, stride=2, padding=1), nn.BatchNorm2d(64), nn.ReLU(True), nn.MaxPool2d(2, stride=1),
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(64, 128, 3, stride=2), nn.BatchNorm2d(128), nn.ReLU(True),
            nn.ConvTranspose2d(128, 64, 5, stride=3, padding=1), nn.BatchNorm2d(64), nn.ReLU(True),
            nn.ConvTranspose2d(64, 1, 2, stride=2, padding=1), nn.BatchNorm2d(1), nn.Tanh(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nan_to_num(self.decoder(self.encoder(x)), nan=0.0)


@register_model("l2c-mnist-ae", kind=GENERATOR_KIND)
def l2c_mnist_ae(num_classes: int, in_channels: int, image_size: ImageSize) -> nn.Module:
    """DeepConfuse's MNIST autoencoder (1×28×28 only); ``num_classes`` is ignored."""
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if in_channels != 1 or tuple(size) != (28, 28):
        raise ValueError(f"l2c-mnist-ae: the authors' MNIST autoencoder takes 1×28×28 images, got "
                         f"{in_channels}×{size[0]}×{size[1]}")
    return DeepConfuseMNISTAutoencoder()
