"""The backbone contract.

A backbone is an ``nn.Module`` built as ``cls(in_channels=..., image_size=..., **kwargs)`` that maps
a float batch (B, C, H, W) to features (B, D) and exposes ``dim = D``. Token backbones (ViT) also
expose ``patch_size``, ``num_patches`` and ``forward_tokens(x, keep=None) -> (B, 1 + N', D)``: the
class token followed by the patch tokens, only those at the indices ``keep`` (B, N') when given.
Convolutional backbones (convnet, resnet) also expose ``forward_maps(x) -> list[Tensor]``: the feature
map (B, C_l, H_l, W_l) after each stage, shallowest first, the last being the map that ``forward``
globally average-pools, and ``map_dims``, the list of the C_l.

``build_backbone(name, **kwargs)`` builds a registered backbone; ``spec`` (name + kwargs) is what an
exported encoder stores in its JSON config so it can be rebuilt without the training code.
"""
from __future__ import annotations

from torch import nn

from .. import registry


def build_backbone(name: str, in_channels: int, image_size: int | None = None, **kwargs) -> nn.Module:
    cls = registry.get("backbone", name)
    registry.check_kwargs("backbone", name, kwargs)
    model = cls(in_channels=in_channels, image_size=image_size, **kwargs)
    model.spec = {"name": name, "in_channels": in_channels, "image_size": image_size, **kwargs}
    return model
