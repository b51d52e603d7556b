"""Any timm model as a backbone: ``build_backbone("timm", in_channels=3, model="convnext_atto")``.

timm is optional (``pip install 'selfsup[timm]'``; it needs torchvision) and imported only when
this backbone is built. Weights are never downloaded: pretraining starts from scratch, and an
encoder must rebuild offline from its JSON spec.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError, closest
from .base import backbone


def _import_timm():
    try:
        import timm
    except ImportError:
        raise ConfigError("timm is not installed", "pip install 'selfsup[timm]'") from None
    return timm


@backbone("timm", "image")
class TimmBackbone(nn.Module):
    """(B, C, H, W) -> (B, D): timm's pooled features (``num_classes=0`` drops the classifier).

    image_size is not passed to timm: choose a model whose input size fits (ResNets and ConvNeXts
    take any size); ``dim`` is the model's ``num_features``.
    """

    def __init__(self, in_channels: int = 3, image_size: int | None = None, model: str = "resnet18",
                 pretrained: bool = False):
        super().__init__()
        if pretrained:
            raise ConfigError("pretrained=True would download weights, which selfsup never does.",
                              "use pretrained=False (the default) and pretrain with selfsup.")
        timm = _import_timm()
        available = timm.list_models()
        if model not in available:
            raise ConfigError(f"unknown timm model {model!r}.{closest(model, available)}",
                              "see timm.list_models() for the names.")
        self.model = timm.create_model(model, pretrained=False, num_classes=0, in_chans=in_channels)
        self.dim = self.model.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
