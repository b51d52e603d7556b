"""Encoders for images (convnet, resnet, vit, timm, scatnet) and tables (mlp). Importing this package registers every backbone; build one with ``build_backbone``."""
from . import convnet, mlp, resnet, scattering, timm_backbone, vit  # noqa: F401  (imported for their @register side effect)
from .base import build_backbone

__all__ = ["build_backbone"]
