"""ResNet-18 and ResNet-50 (He et al., 2016, "Deep Residual Learning for Image Recognition").

Written here rather than taken from torchvision: torchvision pins a matching torch build, and
installing it next to the CPU torch used here pulls a 5 GB CUDA torch. The layer names (conv1,
bn1, layer1..layer4, conv1/bn1/conv2/bn2[/conv3/bn3], downsample.0/1) and the parameter counts
follow torchvision's, so its weights (without ``fc``) load with ``load_state_dict``.

``stem="imagenet"``: 7x7 stride-2 conv + 3x3 stride-2 max-pool (for 224 px inputs);
``stem="cifar"``: one 3x3 stride-1 conv and no max-pool, the usual choice for 32 px images, where
the ImageNet stem would shrink the map 4x before the first block.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError, closest
from .base import backbone

STEMS = ("imagenet", "cifar")
LAYERS = ("layer1", "layer2", "layer3", "layer4")


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, width: int, stride: int = 1):
        super().__init__()
        c_out = width * self.expansion
        self.conv1 = nn.Conv2d(c_in, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(c_in, c_out, stride)

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carries the stride, as in torchvision's "ResNet v1.5"), 1x1 expand by 4."""

    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int = 1):
        super().__init__()
        c_out = width * self.expansion
        self.conv1 = nn.Conv2d(c_in, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(c_in, c_out, stride)

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _shortcut(c_in: int, c_out: int, stride: int) -> nn.Sequential | None:
    # A projection only where the shape changes; identity shortcuts elsewhere.
    if stride == 1 and c_in == c_out:
        return None
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))


class ResNet(nn.Module):
    """(B, C, H, W) -> (B, D) globally average-pooled features; D = 512 (basic) or 2048 (bottleneck).

    zero_init_residual: start the last BN of every block with gamma = 0, so each block is the
    identity at initialization; this trains more stably at the large batches and learning rates
    of SSL recipes (Goyal et al., 2017, "Accurate, Large Minibatch SGD"), and SimCLR/BYOL/MoCo
    code uses it.
    """

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], blocks: tuple[int, ...], in_channels: int = 3,
                 stem: str = "imagenet", zero_init_residual: bool = True):
        super().__init__()
        if stem not in STEMS:
            raise ConfigError(f"unknown resnet stem {stem!r}.{closest(stem, STEMS)}",
                              "use stem='imagenet' (7x7/2 + max-pool, 224 px) or stem='cifar' (3x3/1, 32 px).")
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        else:
            self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        c_in = 64
        for i, (name, n) in enumerate(zip(LAYERS, blocks)):
            width, stride = 64 * 2**i, (1 if i == 0 else 2)
            layer = []
            for j in range(n):
                layer.append(block(c_in, width, stride if j == 0 else 1))
                c_in = width * block.expansion
            setattr(self, name, nn.Sequential(*layer))
        self.dim = c_in
        self.map_dims = [64 * 2**i * block.expansion for i in range(len(LAYERS))]  # channels of forward_maps' entries
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(m.last_bn.weight)

    def forward_features(self, x: torch.Tensor, layers: tuple[str, ...] = LAYERS) -> dict[str, torch.Tensor]:
        """Feature maps {name: (B, C_l, H_l, W_l)} after the requested stages; stops after the last one asked."""
        unknown = [name for name in layers if name not in LAYERS]
        if unknown:
            raise ConfigError(f"unknown resnet layer {unknown[0]!r}.{closest(unknown[0], LAYERS)}",
                              f"choose from {', '.join(LAYERS)}.")
        last = max(LAYERS.index(name) for name in layers) if layers else -1
        out = {}
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for name in LAYERS[: last + 1]:
            x = getattr(self, name)(x)
            if name in layers:
                out[name] = x
        return out

    def forward_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The res2..res5 stage outputs (layer1..layer4), (B, C_l, H_l, W_l) each; the last is the map ``forward`` averages."""
        return list(self.forward_features(x, LAYERS).values())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x, ("layer4",))["layer4"].mean(dim=(2, 3))  # (B, D, h, w) -> (B, D)


@backbone("resnet18", "image", provides=("feature_maps",))
def resnet18(in_channels: int = 3, image_size: int | None = None, stem: str = "imagenet",
             zero_init_residual: bool = True) -> ResNet:
    """ResNet-18: basic blocks (2, 2, 2, 2), 512-d features, 11.18 M parameters with 3 channels."""
    return ResNet(BasicBlock, (2, 2, 2, 2), in_channels, stem, zero_init_residual)


@backbone("resnet50", "image", provides=("feature_maps",))
def resnet50(in_channels: int = 3, image_size: int | None = None, stem: str = "imagenet",
             zero_init_residual: bool = True) -> ResNet:
    """ResNet-50: bottleneck blocks (3, 4, 6, 3), 2048-d features, 23.5 M parameters with 3 channels."""
    return ResNet(Bottleneck, (3, 4, 6, 3), in_channels, stem, zero_init_residual)
