"""Plain VGG-style convnets for small images (Fashion-MNIST, CIFAR): convnet4, convnet6, convnet8.

Each is stages of 3x3 conv (no bias: BatchNorm follows) + BatchNorm + ReLU, with a 2x2 max-pool
between stages and the width doubling at each stage, then global average pooling. ``convnet6`` is
the fmnist-cpu benchmark backbone (see BENCHMARK.md): widths w, w, [pool] 2w, 2w, [pool] 4w, 4w;
with w = 32 and 1 input channel it has 286,880 parameters and 128-d features.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .base import backbone


def conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    """3x3 same-padding conv without bias (BatchNorm's shift makes it redundant), BN, inplace ReLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class ConvNet(nn.Module):
    """`stages` stages of `convs_per_stage` conv blocks; stage s has width ``width * 2**s``.

    (B, C, H, W) -> (B, D) with D = width * 2**(stages - 1). Works for any H, W >= 2**(stages - 1).
    """

    def __init__(self, in_channels: int = 3, image_size: int | None = None, width: int = 32,
                 stages: int = 3, convs_per_stage: int = 2):
        super().__init__()
        if width < 1 or stages < 1 or convs_per_stage < 1:
            raise ConfigError(f"convnet needs width, stages, convs_per_stage >= 1, got {width}, {stages}, {convs_per_stage}.",
                              "use positive values (width=32 is the benchmark default).")
        if image_size is not None and image_size < 2 ** (stages - 1):
            raise ConfigError(f"image_size {image_size} is too small for a convnet with {stages} stages "
                              f"({stages - 1} 2x2 max-pools need at least {2 ** (stages - 1)} pixels).",
                              "use a convnet with fewer stages or larger images.")
        layers: list[nn.Module] = []
        c_in = in_channels
        self._stage_ends: list[int] = []  # index in `features` of each stage's last block
        for s in range(stages):
            if s > 0:
                layers.append(nn.MaxPool2d(2))
            c_out = width * 2**s
            for _ in range(convs_per_stage):
                layers.append(conv_bn_relu(c_in, c_out))
                c_in = c_out
            self._stage_ends.append(len(layers) - 1)
        self.features = nn.Sequential(*layers)
        self.dim = c_in
        self.map_dims = [width * 2**s for s in range(stages)]  # channels of each forward_maps entry

    def forward_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output of every stage (before the next max-pool): `stages` maps (B, width * 2**s, H / 2**s, W / 2**s);
        the last is the map ``forward`` averages."""
        maps = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self._stage_ends:
                maps.append(x)
        return maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))  # (B, D, H', W') -> (B, D)


@backbone("convnet4", "image", provides=("feature_maps",))
def convnet4(in_channels: int = 3, image_size: int | None = None, width: int = 32) -> ConvNet:
    """Four convs: w, w, [pool] 2w, 2w -> 2w-d features (64 at w = 32)."""
    return ConvNet(in_channels, image_size, width=width, stages=2)


@backbone("convnet6", "image", provides=("feature_maps",))
def convnet6(in_channels: int = 3, image_size: int | None = None, width: int = 32) -> ConvNet:
    """The fmnist-cpu benchmark backbone: w, w, [pool] 2w, 2w, [pool] 4w, 4w -> 4w-d (128 at w = 32)."""
    return ConvNet(in_channels, image_size, width=width, stages=3)


@backbone("convnet8", "image", provides=("feature_maps",))
def convnet8(in_channels: int = 3, image_size: int | None = None, width: int = 32) -> ConvNet:
    """Eight convs in four stages: w .. 8w -> 8w-d features (256 at w = 32); needs images >= 8 px."""
    return ConvNet(in_channels, image_size, width=width, stages=4)
