"""Adapters: small trainable modules added to a frozen pretrained backbone, for continual
pretraining that touches few parameters (GLARE: "Enhancing Semantic Segmentation with Continual
Self-Supervised Pre-training", arXiv:2509.17816, which trains only UniAdapter modules in a frozen ViT).

``add_adapters(backbone, width)`` puts one bottleneck adapter in parallel to

- the MLP of every transformer block (``vit.Block``: the ViT and the series patch transformer), as
  UniAdapter does (Lu et al., ICLR 2024: ``x2 = x1 + MLP(LN2(x1)) + s * Up(ReLU(Down(LN_a(.))))``,
  s = 0.1, here fed ``LN2(x1)``, the MLP's own input);
- every convolution with a kernel wider than 1 (``Conv1d``/``Conv2d``: convnet6, ResNets, the series
  CNNs), as the parallel residual adapters of Rebuffi, Bilen and Vedaldi ("Efficient
  parametrization of multi-domain deep neural networks", CVPR 2018), here with a bottleneck:
  ``conv(x) + s * Up(ReLU(Down(x)))``, Down a 1x1 convolution with the conv's stride.

Every Up starts at zero, so the adapted backbone computes exactly what the pretrained one did until
the adapters learn. The backbone's own parameters are frozen and its normalization layers stay in
eval mode (their statistics do not move); only the adapters train. ``width`` (the bottleneck) is
recorded in the backbone's spec, so an exported encoder rebuilds the same structure on load.
"""
from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError

SCALE = 0.1  # UniAdapter's s


class MLPAdapter(nn.Module):
    """s * Up(ReLU(Down(LN(h)))) on (B, N, D) tokens."""

    def __init__(self, dim: int, width: int):
        super().__init__()
        self.norm, self.down, self.up = nn.LayerNorm(dim), nn.Linear(dim, width), nn.Linear(width, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return SCALE * self.up(F.relu(self.down(self.norm(h))))


class ConvAdapter(nn.Module):
    """s * Up(ReLU(Down(x))) with 1x1 convolutions, Down at the parallel conv's stride."""

    def __init__(self, conv: nn.Conv1d | nn.Conv2d, width: int):
        super().__init__()
        kind = nn.Conv1d if isinstance(conv, nn.Conv1d) else nn.Conv2d
        self.down = kind(conv.in_channels, width, 1, stride=conv.stride, bias=False)
        self.up = kind(width, conv.out_channels, 1)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return SCALE * self.up(F.relu(self.down(x)))


class Parallel(nn.Module):
    """base(x) + adapter(x); a convolution's output may be a step longer or shorter than the
    adapter's (even receptive fields, padding): the adapter's is cut or zero-padded at the end."""

    def __init__(self, base: nn.Module, adapter: nn.Module):
        super().__init__()
        self.base, self.adapter = base, adapter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, extra = self.base(x), self.adapter(x)
        if extra.shape != out.shape:
            pads = []
            for have, want in zip(reversed(extra.shape[2:]), reversed(out.shape[2:])):
                pads += [0, want - have]
            extra = F.pad(extra, pads)
        return out + extra


def _keep_frozen_norms(self, mode: bool = True):
    """train() that keeps every normalization layer of the frozen backbone in eval mode."""
    type(self).train(self, mode)
    for m in self.modules():
        if isinstance(m, nn.modules.batchnorm._NormBase):  # BatchNorm and the like (adapters have none)
            m.eval()
    return self


def add_adapters(backbone: nn.Module, width: int) -> nn.Module:
    """Freeze `backbone` and add bottleneck adapters of `width` (see the module docstring); in place."""
    from .vit import Block

    if width < 1:
        raise ConfigError(f"train.adapters must be a bottleneck width >= 1, got {width}.", "use e.g. 16, or 0 for none.")
    for p in backbone.parameters():
        p.requires_grad_(False)
    targets = []  # (parent, attribute, new module)
    for parent in backbone.modules():
        if isinstance(parent, Block):
            targets.append((parent, "mlp", Parallel(parent.mlp, MLPAdapter(parent.mlp[0].in_features, width))))
            continue
        for name, child in parent.named_children():
            if isinstance(child, (nn.Conv1d, nn.Conv2d)) and max(child.kernel_size) > 1:
                targets.append((parent, name, Parallel(child, ConvAdapter(child, width))))
    if not targets:
        raise ConfigError(f"backbone {getattr(backbone, 'spec', {}).get('name', type(backbone).__name__)!r} has no "
                          "place for adapters (transformer blocks or convolutions wider than 1).",
                          "train the whole backbone (train.adapters=0), or use a convolutional or transformer backbone.")
    for parent, name, module in targets:
        setattr(parent, name, module)
    for p in (p for m in backbone.modules() if isinstance(m, (MLPAdapter, ConvAdapter)) for p in m.parameters()):
        p.requires_grad_(True)
    backbone.train = types.MethodType(_keep_frozen_norms, backbone)
    backbone.train(backbone.training)
    if isinstance(getattr(backbone, "spec", None), dict):
        backbone.spec = {**backbone.spec, "adapters": width}  # an exported encoder rebuilds them on load
    return backbone
